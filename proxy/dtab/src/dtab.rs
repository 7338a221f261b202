//! Dtabs: ordered rewrite rules (`prefix => tree`) and the lookup step of delegation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::parse::{self, ParseError};
use crate::path::{Label, Path};
use crate::tree::NameTree;

/// One segment of a dentry prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrefixElem {
    /// Matches exactly this label.
    Label(Label),
    /// `*`: matches any one label.
    Any,
}

/// The left-hand side of a dentry: a path whose segments may be `*`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Prefix(Vec<PrefixElem>);

impl Prefix {
    /// A prefix made of `elems`, in order.
    pub fn new(elems: Vec<PrefixElem>) -> Prefix {
        Prefix(elems)
    }

    /// Parse a prefix such as `/http/1.1/*/*` (`/` matches every path).
    pub fn read(s: &str) -> Result<Prefix, ParseError> {
        parse::read_prefix(s)
    }

    /// The segments of this prefix.
    pub fn elems(&self) -> &[PrefixElem] {
        &self.0
    }

    /// Whether `path` is at least as long as the prefix and agrees with it segment by segment.
    pub fn matches(&self, path: &Path) -> bool {
        self.0.len() <= path.len()
            && self.0.iter().zip(path.labels()).all(|(elem, label)| match elem {
                PrefixElem::Any => true,
                PrefixElem::Label(l) => l == label,
            })
    }

    /// The number of segments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the prefix `/`, which matches every path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Path> for Prefix {
    fn from(path: Path) -> Prefix {
        Prefix(path.labels().iter().cloned().map(PrefixElem::Label).collect())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for elem in &self.0 {
            match elem {
                PrefixElem::Label(l) => write!(f, "/{l}")?,
                PrefixElem::Any => f.write_str("/*")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Prefix {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Prefix, ParseError> {
        Prefix::read(s)
    }
}

/// A delegation entry: paths matching `prefix` are rewritten to `dst` (plus the residual).
#[derive(Clone, Debug, PartialEq)]
pub struct Dentry {
    /// Which paths this entry rewrites.
    pub prefix: Prefix,
    /// What they are rewritten to; the unmatched rest of the path is appended to each leaf.
    pub dst: NameTree<Path>,
}

impl Dentry {
    /// A dentry rewriting `prefix` to `dst`.
    pub fn new(prefix: Prefix, dst: NameTree<Path>) -> Dentry {
        Dentry { prefix, dst }
    }

    /// Parse one dentry such as `/svc => /#/io.l5d.fs`.
    pub fn read(s: &str) -> Result<Dentry, ParseError> {
        parse::read_dentry(s)
    }
}

impl fmt::Display for Dentry {
    /// `/svc=>/#/io.l5d.fs`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.prefix, self.dst)
    }
}

impl FromStr for Dentry {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Dentry, ParseError> {
        Dentry::read(s)
    }
}

/// An ordered list of dentries; later entries take priority. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dtab(Arc<[Dentry]>);

impl Dtab {
    /// The dtab with no dentries (every lookup is neg).
    pub fn empty() -> Dtab {
        Dtab::default()
    }

    /// A dtab of `dentries`, in order.
    pub fn from_dentries(dentries: impl IntoIterator<Item = Dentry>) -> Dtab {
        Dtab(dentries.into_iter().collect())
    }

    /// Parse a dtab such as `/svc => /#/io.l5d.fs; /svc/a => /b;` (comments and newlines allowed).
    pub fn parse(s: &str) -> Result<Dtab, ParseError> {
        parse::read_dtab(s)
    }

    /// The dentries, in priority order lowest first.
    pub fn dentries(&self) -> &[Dentry] {
        &self.0
    }

    /// The number of dentries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no dentries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `self` followed by `other`, so `other`'s dentries are tried first.
    pub fn concat(&self, other: &Dtab) -> Dtab {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Dtab(self.0.iter().chain(other.0.iter()).cloned().collect())
    }

    /// Every dentry matching `path`, last first, each with its destination rewritten
    /// (the residual appended to every leaf).
    pub fn matches(&self, path: &Path) -> Vec<(&Dentry, NameTree<Path>)> {
        self.0
            .iter()
            .rev()
            .filter(|d| d.prefix.matches(path))
            .map(|d| {
                let residual = path.drop(d.prefix.len());
                (d, d.dst.map(&mut |leaf: &Path| leaf.concat(&residual)))
            })
            .collect()
    }

    /// One lookup step (docs/dtab.md, "Delegation" rule 1, "Lookup"): neg when no dentry matches, the rewritten
    /// destination when one does, `Alt(last match, …, first match)` when several do.
    pub fn lookup(&self, path: &Path) -> NameTree<Path> {
        let mut trees: Vec<NameTree<Path>> = self.matches(path).into_iter().map(|(_, t)| t).collect();
        match trees.len() {
            0 => NameTree::Neg,
            1 => trees.pop().unwrap_or(NameTree::Neg),
            _ => NameTree::Alt(trees),
        }
    }

    /// One dentry per line, each ending `;\n`: for humans (the admin page, `switchyard check`).
    pub fn pretty(&self) -> String {
        self.0.iter().map(|d| format!("{} => {};\n", d.prefix, d.dst)).collect()
    }
}

impl fmt::Display for Dtab {
    /// Canonical one-line form `/a=>/b;/c=>/d`, which parses back to an equal dtab.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Dtab {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Dtab, ParseError> {
        Dtab::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).expect("test path parses")
    }

    fn dtab(s: &str) -> Dtab {
        Dtab::parse(s).expect("test dtab parses")
    }

    fn tree(s: &str) -> NameTree<Path> {
        NameTree::read(s).expect("test tree parses")
    }

    #[test]
    fn prefix_matching() {
        let pre = Prefix::read("/http/1.1/*/*").expect("parses");
        assert!(pre.matches(&p("/http/1.1/GET/host")));
        assert!(pre.matches(&p("/http/1.1/GET/host/more")));
        assert!(!pre.matches(&p("/http/1.1/GET")));
        assert!(!pre.matches(&p("/http/2/GET/host")));
        assert!(Prefix::read("/").expect("parses").matches(&Path::empty()));
        assert!(Prefix::read("/").expect("parses").matches(&p("/x")));
        assert_eq!(pre.len(), 4);
        assert_eq!(pre.elems()[2], PrefixElem::Any);
        assert_eq!(pre.to_string(), "/http/1.1/*/*");
        assert_eq!(Prefix::from(p("/a/b")), Prefix::read("/a/b").expect("parses"));
    }

    #[test]
    fn lookup_no_match_is_neg() {
        assert_eq!(dtab("/svc=>/a").lookup(&p("/other")), NameTree::Neg);
        assert_eq!(Dtab::empty().lookup(&p("/svc")), NameTree::Neg);
    }

    #[test]
    fn lookup_appends_residual_to_every_leaf() {
        let d = dtab("/svc=>/a | 2 * /b & /c");
        assert_eq!(d.lookup(&p("/svc/x/y")), tree("/a/x/y | 2 * /b/x/y & /c/x/y"));
        assert_eq!(d.lookup(&p("/svc")), tree("/a | 2 * /b & /c"));
    }

    #[test]
    fn lookup_several_matches_alt_last_first() {
        let d = dtab("/=>/root; /svc=>/one; /svc/x=>/two; /other=>/no");
        assert_eq!(d.lookup(&p("/svc/x")), tree("/two | /one/x | /root/svc/x"));
    }

    #[test]
    fn concat_puts_other_last_so_it_wins() {
        let d = dtab("/svc=>/a").concat(&dtab("/svc=>/b"));
        assert_eq!(d.to_string(), "/svc=>/a;/svc=>/b");
        assert_eq!(d.lookup(&p("/svc")), tree("/b | /a"));
        assert_eq!(Dtab::empty().concat(&d), d);
        assert_eq!(d.concat(&Dtab::empty()), d);
    }

    #[test]
    fn display_and_pretty() {
        let d = dtab("/svc => /#/io.l5d.fs ;\n/http/*/* => /a | /b;");
        assert_eq!(d.to_string(), "/svc=>/#/io.l5d.fs;/http/*/*=>/a | /b");
        assert_eq!(d.pretty(), "/svc => /#/io.l5d.fs;\n/http/*/* => /a | /b;\n");
        assert_eq!(d.dentries()[0].to_string(), "/svc=>/#/io.l5d.fs");
        assert_eq!(Dtab::empty().to_string(), "");
        assert_eq!(Dtab::empty().pretty(), "");
        assert_eq!(dtab(&d.pretty()), d);
        assert_eq!(dtab(&d.to_string()), d);
    }
}
