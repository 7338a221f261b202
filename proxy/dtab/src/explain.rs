//! Delegation explained step by step (like linkerd's `DelegateTree`), for the admin "delegator".

use std::fmt;

use crate::bind::{namer_answer, BindError, Depth, Namers};
use crate::dtab::{Dentry, Dtab};
use crate::path::Path;
use crate::tree::NameTree;

/// How a path resolves. Every node carries the `path` it is about and the `dentry` that
/// produced it (`None` at the root and for namer answers reached without a rewrite).
///
/// Unlike [`crate::bind()`], every alternative is shown, not only the winning one.
#[derive(Clone, Debug, PartialEq)]
pub enum Explain<B> {
    /// Nothing binds here.
    Neg { path: Path, dentry: Option<Dentry> },
    /// Binding fails here (`!` or `/$/fail`).
    Fail { path: Path, dentry: Option<Dentry> },
    /// Bound to no addresses (`$` or `/$/nil`).
    Empty { path: Path, dentry: Option<Dentry> },
    /// Delegation was abandoned here, e.g. the depth limit was exceeded.
    Error { path: Path, message: String },
    /// `path` was rewritten by one dentry; `next` explains the result.
    Delegate { path: Path, dentry: Option<Dentry>, next: Box<Explain<B>> },
    /// A namer bound `path`.
    Bound { path: Path, dentry: Option<Dentry>, bound: B },
    /// Alternatives, tried in order: several matching dentries (each child names its own) or a `|`.
    Alt { path: Path, dentry: Option<Dentry>, alts: Vec<Explain<B>> },
    /// Weighted branches of a `&`.
    Union { path: Path, dentry: Option<Dentry>, branches: Vec<(f64, Explain<B>)> },
}

impl<B> Explain<B> {
    /// The path this node is about.
    pub fn path(&self) -> &Path {
        match self {
            Explain::Neg { path, .. }
            | Explain::Fail { path, .. }
            | Explain::Empty { path, .. }
            | Explain::Error { path, .. }
            | Explain::Delegate { path, .. }
            | Explain::Bound { path, .. }
            | Explain::Alt { path, .. }
            | Explain::Union { path, .. } => path,
        }
    }

    /// The dentry that produced this node, if any.
    pub fn dentry(&self) -> Option<&Dentry> {
        match self {
            Explain::Error { .. } => None,
            Explain::Neg { dentry, .. }
            | Explain::Fail { dentry, .. }
            | Explain::Empty { dentry, .. }
            | Explain::Delegate { dentry, .. }
            | Explain::Bound { dentry, .. }
            | Explain::Alt { dentry, .. }
            | Explain::Union { dentry, .. } => dentry.as_ref(),
        }
    }
}

/// Most tree nodes one explanation visits. Smaller than [`crate::MAX_WORK`] because every
/// alternative is explored and each node carries its dentry; more than this is unreadable anyway.
pub const MAX_EXPLAIN_WORK: usize = 2_000;

/// Explain how `path` delegates under `dtab`, consulting `namers` exactly as [`crate::bind()`] does.
/// Never fails: loops and oversized expansions show up as [`Explain::Error`] nodes.
pub fn explain<N: Namers>(dtab: &Dtab, path: &Path, namers: &N) -> Explain<N::Bound> {
    Explainer { dtab, namers, work: 0 }.path(path, None, Depth::default())
}

struct Explainer<'a, N> {
    dtab: &'a Dtab,
    namers: &'a N,
    /// Tree nodes visited so far, checked against [`MAX_EXPLAIN_WORK`].
    work: usize,
}

impl<'a, N: Namers> Explainer<'a, N> {
    /// Count one node; `Some(error node)` once the budget is spent.
    fn over_budget(&mut self, path: &Path) -> Option<Explain<N::Bound>> {
        self.work += 1;
        (self.work > MAX_EXPLAIN_WORK).then(|| Explain::Error {
            path: path.clone(),
            message: BindError::TooLarge { limit: MAX_EXPLAIN_WORK }.to_string(),
        })
    }

    /// Explain one path reached through `dentry` at `depth`.
    fn path(&mut self, path: &Path, dentry: Option<Dentry>, depth: Depth) -> Explain<N::Bound> {
        if let Some(error) = self.over_budget(path) {
            return error;
        }
        let dtab: &'a Dtab = self.dtab;
        let mut matches = dtab.matches(path);
        // Same rule as binding: a lookup that yields neg goes to the namers.
        let rewritten = match matches.as_slice() {
            [] => false,
            [(_, only)] => *only != NameTree::Neg,
            _ => true,
        };
        if !rewritten {
            return answer(namer_answer(self.namers, path), path, dentry);
        }
        let depth = match depth.rewrite(path) {
            Ok(depth) => depth,
            Err(e) => return Explain::Error { path: path.clone(), message: e.to_string() },
        };
        if matches.len() == 1 {
            if let Some((by, tree)) = matches.pop() {
                let next = Box::new(self.tree(&tree, path, by, depth));
                return Explain::Delegate { path: path.clone(), dentry, next };
            }
        }
        let alts = matches.iter().map(|(by, tree)| self.tree(tree, path, by, depth)).collect();
        Explain::Alt { path: path.clone(), dentry, alts }
    }

    /// Explain the tree that dentry `by` rewrote `path` into.
    fn tree(&mut self, tree: &NameTree<Path>, path: &Path, by: &Dentry, depth: Depth) -> Explain<N::Bound> {
        if let Some(error) = self.over_budget(path) {
            return error;
        }
        let depth = match depth.descend() {
            Ok(depth) => depth,
            Err(e) => return Explain::Error { path: path.clone(), message: e.to_string() },
        };
        let (path, dentry) = (path.clone(), Some(by.clone()));
        match tree {
            NameTree::Neg => Explain::Neg { path, dentry },
            NameTree::Fail => Explain::Fail { path, dentry },
            NameTree::Empty => Explain::Empty { path, dentry },
            NameTree::Leaf(leaf) => self.path(leaf, dentry, depth),
            NameTree::Alt(children) => {
                let alts = children.iter().map(|c| self.tree(c, &path, by, depth)).collect();
                Explain::Alt { path, dentry, alts }
            }
            NameTree::Union(branches) => {
                let branches = branches.iter().map(|w| (w.weight, self.tree(&w.tree, &path, by, depth))).collect();
                Explain::Union { path, dentry, branches }
            }
        }
    }
}

/// A namer's (already simplified) answer for `path`, as explanation nodes.
fn answer<B>(tree: NameTree<B>, path: &Path, dentry: Option<Dentry>) -> Explain<B> {
    let path = path.clone();
    match tree {
        NameTree::Neg => Explain::Neg { path, dentry },
        NameTree::Fail => Explain::Fail { path, dentry },
        NameTree::Empty => Explain::Empty { path, dentry },
        NameTree::Leaf(bound) => Explain::Bound { path, dentry, bound },
        NameTree::Alt(children) => {
            let alts = children.into_iter().map(|c| answer(c, &path, dentry.clone())).collect();
            Explain::Alt { path, dentry, alts }
        }
        NameTree::Union(branches) => {
            let branches = branches.into_iter().map(|w| (w.weight, answer(w.tree, &path, dentry.clone()))).collect();
            Explain::Union { path, dentry, branches }
        }
    }
}

impl<B: fmt::Display> Explain<B> {
    fn write(&self, f: &mut fmt::Formatter<'_>, indent: usize, weight: Option<f64>) -> fmt::Result {
        write!(f, "{:width$}", "", width = indent * 2)?;
        if let Some(w) = weight {
            write!(f, "{w} * ")?;
        }
        write!(f, "{}", self.path())?;
        if let Some(d) = self.dentry() {
            write!(f, " (via {d})")?;
        }
        match self {
            Explain::Neg { .. } => writeln!(f, ": neg"),
            Explain::Fail { .. } => writeln!(f, ": fail"),
            Explain::Empty { .. } => writeln!(f, ": empty"),
            Explain::Error { message, .. } => writeln!(f, ": error: {message}"),
            Explain::Bound { bound, .. } => writeln!(f, ": bound to {bound}"),
            Explain::Delegate { next, .. } => {
                writeln!(f)?;
                next.write(f, indent + 1, None)
            }
            Explain::Alt { alts, .. } => {
                writeln!(f, ": first of")?;
                alts.iter().try_for_each(|a| a.write(f, indent + 1, None))
            }
            Explain::Union { branches, .. } => {
                writeln!(f, ": split")?;
                branches.iter().try_for_each(|(w, b)| b.write(f, indent + 1, Some(*w)))
            }
        }
    }
}

impl<B: fmt::Display> fmt::Display for Explain<B> {
    /// An indented outline, one node per line, e.g. `/svc/a (via /svc=>/#/fs): bound to …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::NamerLookup;

    /// Binds `/#/fs/a` (with any residual) to "a"; owns all of `/#/fs`.
    struct Fs;

    impl Namers for Fs {
        type Bound = &'static str;
        fn lookup(&self, path: &Path) -> NamerLookup<&'static str> {
            if path.take(3) == Path::read("/#/fs/a").expect("parses") {
                NamerLookup::Tree(NameTree::Leaf("a"))
            } else if path.take(2) == Path::read("/#/fs").expect("parses") {
                NamerLookup::Tree(NameTree::Neg)
            } else {
                NamerLookup::NotMine
            }
        }
    }

    fn run(dtab: &str, path: &str) -> Explain<&'static str> {
        let dtab = Dtab::parse(dtab).expect("test dtab parses");
        explain(&dtab, &Path::read(path).expect("test path parses"), &Fs)
    }

    fn p(s: &str) -> Path {
        Path::read(s).expect("test path parses")
    }

    fn d(s: &str) -> Option<Dentry> {
        Some(Dentry::read(s).expect("test dentry parses"))
    }

    #[test]
    fn single_rewrite_then_namer() {
        let e = run("/svc=>/#/fs", "/svc/a");
        let bound = Explain::Bound { path: p("/#/fs/a"), dentry: d("/svc=>/#/fs"), bound: "a" };
        assert_eq!(e, Explain::Delegate { path: p("/svc/a"), dentry: None, next: Box::new(bound) });
    }

    #[test]
    fn several_dentries_show_every_alternative_last_first() {
        let e = run("/svc=>/#/fs; /svc=>/#/fs/b", "/svc/a");
        let alts = vec![
            Explain::Neg { path: p("/#/fs/b/a"), dentry: d("/svc=>/#/fs/b") },
            Explain::Bound { path: p("/#/fs/a"), dentry: d("/svc=>/#/fs"), bound: "a" },
        ];
        assert_eq!(e, Explain::Alt { path: p("/svc/a"), dentry: None, alts });
    }

    #[test]
    fn unions_and_builtins() {
        let e = run("/s=>0.5 * /$/nil & /$/fail", "/s");
        let branches = vec![
            (0.5, Explain::Empty { path: p("/$/nil"), dentry: d("/s=>0.5 * /$/nil & /$/fail") }),
            (1.0, Explain::Fail { path: p("/$/fail"), dentry: d("/s=>0.5 * /$/nil & /$/fail") }),
        ];
        let union = Explain::Union { path: p("/s"), dentry: d("/s=>0.5 * /$/nil & /$/fail"), branches };
        assert_eq!(e, Explain::Delegate { path: p("/s"), dentry: None, next: Box::new(union) });
    }

    #[test]
    fn unknown_path_is_neg_at_the_root() {
        assert_eq!(run("", "/nowhere"), Explain::Neg { path: p("/nowhere"), dentry: None });
    }

    #[test]
    fn loops_end_in_an_error_node() {
        let mut node = run("/a=>/b;/b=>/a", "/a");
        let mut steps = 0;
        while let Explain::Delegate { next, .. } = node {
            node = *next;
            steps += 1;
        }
        assert_eq!(steps, crate::MAX_DEPTH);
        match node {
            Explain::Error { message, .. } => {
                assert!(message.contains("more than 100 times"), "{message}")
            }
            other => panic!("expected an error node, got {other:?}"),
        }
    }

    #[test]
    fn exponential_dtabs_are_cut_off() {
        let dtab: String = (0..40).map(|i| format!("/p{i}=>/p{} & /p{};", i + 1, i + 1)).collect();
        let text = run(&dtab, "/p0").to_string();
        assert!(text.contains(&BindError::TooLarge { limit: MAX_EXPLAIN_WORK }.to_string()));
    }

    #[test]
    fn deep_nesting_is_cut_off_before_the_stack_overflows() {
        let worker = std::thread::Builder::new().stack_size(1 << 20).spawn(|| {
            let e = explain(&crate::bind::tests::deepest_dtab(), &p("/p0"), &Fs);
            (e.to_string(), e)
        });
        let (text, tree) = worker.expect("thread starts").join().expect("no stack overflow");
        let limit = crate::MAX_NESTING_DEPTH;
        assert!(text.contains(&BindError::TooLarge { limit }.to_string()), "{text}");
        drop(tree);
    }

    #[test]
    fn displays_as_an_outline() {
        let text = run("/svc=>/#/fs/x | /#/fs; /svc=>2 * /#/fs & /$/nil", "/svc/a").to_string();
        let expected = "\
/svc/a: first of
  /svc/a (via /svc=>2 * /#/fs & /$/nil): split
    2 * /#/fs/a (via /svc=>2 * /#/fs & /$/nil): bound to a
    1 * /$/nil/a (via /svc=>2 * /#/fs & /$/nil): empty
  /svc/a (via /svc=>/#/fs/x | /#/fs): first of
    /#/fs/x/a (via /svc=>/#/fs/x | /#/fs): neg
    /#/fs/a (via /svc=>/#/fs/x | /#/fs): bound to a
";
        assert_eq!(text, expected);
    }
}
