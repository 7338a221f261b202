//! Name trees: the alternation/union structure a dtab rewrites a path into, and its printer.

use std::fmt;
use std::str::FromStr;

use crate::parse::{self, ParseError};
use crate::path::Path;

/// A tree of names: what a dentry's destination, a dtab lookup and a binding produce.
#[derive(Clone, Debug, PartialEq)]
pub enum NameTree<T> {
    /// `~`: no binding here; an alternation falls through to its next choice.
    Neg,
    /// `!`: binding failed; stops an alternation with failure.
    Fail,
    /// `$`: bound, but to no addresses.
    Empty,
    /// A single name.
    Leaf(T),
    /// `a | b`: the first child that is neither neg nor fail wins.
    Alt(Vec<NameTree<T>>),
    /// `0.9 * a & 0.1 * b`: traffic is split by weight over the branches that bind.
    Union(Vec<Weighted<T>>),
}

/// One branch of a [`NameTree::Union`].
#[derive(Clone, Debug, PartialEq)]
pub struct Weighted<T> {
    /// Relative share of traffic (non-negative; default 1).
    pub weight: f64,
    /// The branch itself.
    pub tree: NameTree<T>,
}

impl<T> NameTree<T> {
    /// The same tree shape with every leaf transformed by `f` (leaves visited left to right).
    pub fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> NameTree<U> {
        match self {
            NameTree::Neg => NameTree::Neg,
            NameTree::Fail => NameTree::Fail,
            NameTree::Empty => NameTree::Empty,
            NameTree::Leaf(t) => NameTree::Leaf(f(t)),
            NameTree::Alt(children) => NameTree::Alt(children.iter().map(|c| c.map(f)).collect()),
            NameTree::Union(branches) => {
                NameTree::Union(branches.iter().map(|w| Weighted { weight: w.weight, tree: w.tree.map(f) }).collect())
            }
        }
    }

    /// Every leaf value, left to right.
    pub fn leaves(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a T>) {
        match self {
            NameTree::Neg | NameTree::Fail | NameTree::Empty => {}
            NameTree::Leaf(t) => out.push(t),
            NameTree::Alt(children) => children.iter().for_each(|c| c.collect_leaves(out)),
            NameTree::Union(branches) => branches.iter().for_each(|w| w.tree.collect_leaves(out)),
        }
    }

    /// Evaluate alternations and unions per docs/dtab.md ("Delegation", rules 4 and 5),
    /// leaving a tree with no `Alt`, and `Union`s only of two or more surviving branches (original weights kept).
    ///
    /// Alternation: the first child that is neither neg nor fail wins; fail stops it with
    /// fail; all neg gives neg. Union: neg and fail branches are dropped; none left gives
    /// neg, one left gives that branch alone.
    pub fn simplify(self) -> NameTree<T> {
        match self {
            NameTree::Alt(children) => {
                for child in children {
                    match child.simplify() {
                        NameTree::Neg => continue,
                        other => return other,
                    }
                }
                NameTree::Neg
            }
            NameTree::Union(branches) => {
                let survivors = branches
                    .into_iter()
                    .filter_map(|w| match w.tree.simplify() {
                        NameTree::Neg | NameTree::Fail => None,
                        tree => Some(Weighted { weight: w.weight, tree }),
                    })
                    .collect();
                union_of_survivors(survivors)
            }
            other => other,
        }
    }
}

/// The union of already-bound branches that survived: neg if none, the branch alone if one.
pub(crate) fn union_of_survivors<T>(mut survivors: Vec<Weighted<T>>) -> NameTree<T> {
    if survivors.len() > 1 {
        return NameTree::Union(survivors);
    }
    match survivors.pop() {
        Some(only) => only.tree,
        None => NameTree::Neg,
    }
}

impl NameTree<Path> {
    /// Parse a name tree such as `/#/io.l5d.fs/a | 0.9 * /b & 0.1 * /c`.
    pub fn read(s: &str) -> Result<NameTree<Path>, ParseError> {
        parse::read_tree(s)
    }
}

impl FromStr for NameTree<Path> {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<NameTree<Path>, ParseError> {
        NameTree::read(s)
    }
}

/// Binding strength of the context a subtree is printed in; parens are added when the
/// subtree binds more loosely than its context requires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// Anything goes (top level, inside parens).
    Alt,
    /// An operand of `|`: an alternation needs parens.
    Union,
    /// An operand of `&` or `*`: alternations and unions need parens.
    Simple,
}

impl<T: fmt::Display> NameTree<T> {
    fn fmt_at(&self, f: &mut fmt::Formatter<'_>, level: Level) -> fmt::Result {
        match self {
            NameTree::Neg => f.write_str("~"),
            NameTree::Fail => f.write_str("!"),
            NameTree::Empty => f.write_str("$"),
            NameTree::Leaf(t) => write!(f, "{t}"),
            // Shapes the parser never produces print as their meaning.
            NameTree::Alt(children) if children.is_empty() => f.write_str("~"),
            NameTree::Union(branches) if branches.is_empty() => f.write_str("~"),
            NameTree::Alt(children) if children.len() == 1 => children[0].fmt_at(f, level),
            NameTree::Alt(children) => parenthesized(f, level > Level::Alt, |f| {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    child.fmt_at(f, Level::Union)?;
                }
                Ok(())
            }),
            NameTree::Union(branches) => parenthesized(f, level > Level::Union, |f| fmt_union(f, branches)),
        }
    }
}

/// Print union branches; a weight of 1 is left out unless it is the only branch (a lone
/// weighted branch must keep its weight, or it would read back as the bare tree).
fn fmt_union<T: fmt::Display>(f: &mut fmt::Formatter<'_>, branches: &[Weighted<T>]) -> fmt::Result {
    let lone = branches.len() == 1;
    for (i, branch) in branches.iter().enumerate() {
        if i > 0 {
            f.write_str(" & ")?;
        }
        if lone || branch.weight != 1.0 {
            write!(f, "{} * ", branch.weight)?;
        }
        branch.tree.fmt_at(f, Level::Simple)?;
    }
    Ok(())
}

fn parenthesized(
    f: &mut fmt::Formatter<'_>,
    parens: bool,
    body: impl FnOnce(&mut fmt::Formatter<'_>) -> fmt::Result,
) -> fmt::Result {
    if parens {
        f.write_str("(")?;
    }
    body(f)?;
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

impl<T: fmt::Display> fmt::Display for NameTree<T> {
    /// `~`, `!`, `$`, leaves, `a | b`, `0.9 * /a & 0.1 * /b`, with parens only where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_at(f, Level::Alt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(s: &str) -> NameTree<Path> {
        NameTree::Leaf(Path::read(s).expect("test path parses"))
    }

    fn w(weight: f64, tree: NameTree<Path>) -> Weighted<Path> {
        Weighted { weight, tree }
    }

    #[test]
    fn prints_atoms() {
        assert_eq!(NameTree::<Path>::Neg.to_string(), "~");
        assert_eq!(NameTree::<Path>::Fail.to_string(), "!");
        assert_eq!(NameTree::<Path>::Empty.to_string(), "$");
        assert_eq!(leaf("/a/b").to_string(), "/a/b");
        assert_eq!(leaf("/").to_string(), "/");
    }

    #[test]
    fn prints_canonical_operators() {
        let alt = NameTree::Alt(vec![leaf("/a"), leaf("/b"), NameTree::Neg]);
        assert_eq!(alt.to_string(), "/a | /b | ~");
        let union = NameTree::Union(vec![w(0.9, leaf("/a")), w(0.1, leaf("/b"))]);
        assert_eq!(union.to_string(), "0.9 * /a & 0.1 * /b");
        let default_weights = NameTree::Union(vec![w(1.0, leaf("/a")), w(3.0, leaf("/b"))]);
        assert_eq!(default_weights.to_string(), "/a & 3 * /b");
        let lone = NameTree::Union(vec![w(1.0, leaf("/a"))]);
        assert_eq!(lone.to_string(), "1 * /a");
    }

    #[test]
    fn prints_parens_only_where_needed() {
        let union = NameTree::Union(vec![w(1.0, leaf("/a")), w(1.0, leaf("/b"))]);
        let alt_of_union = NameTree::Alt(vec![union.clone(), leaf("/c")]);
        assert_eq!(alt_of_union.to_string(), "/a & /b | /c");
        let alt = NameTree::Alt(vec![leaf("/a"), leaf("/b")]);
        let union_of_alt = NameTree::Union(vec![w(0.5, alt.clone()), w(1.0, leaf("/c"))]);
        assert_eq!(union_of_alt.to_string(), "0.5 * (/a | /b) & /c");
        let nested_alt = NameTree::Alt(vec![leaf("/x"), alt]);
        assert_eq!(nested_alt.to_string(), "/x | (/a | /b)");
        let nested_union = NameTree::Union(vec![w(2.0, union), w(1.0, leaf("/c"))]);
        assert_eq!(nested_union.to_string(), "2 * (/a & /b) & /c");
    }

    #[test]
    fn prints_weights_shortest() {
        let union = NameTree::Union(vec![w(0.1 + 0.2, leaf("/a")), w(1e-7, leaf("/b"))]);
        assert_eq!(union.to_string(), "0.30000000000000004 * /a & 0.0000001 * /b");
    }

    #[test]
    fn map_and_leaves_visit_left_to_right() {
        let t = NameTree::Alt(vec![
            leaf("/a"),
            NameTree::Union(vec![w(1.0, leaf("/b")), w(2.0, NameTree::Fail)]),
            leaf("/c"),
        ]);
        let leaves: Vec<String> = t.leaves().iter().map(|p| p.to_string()).collect();
        assert_eq!(leaves, ["/a", "/b", "/c"]);
        let mut n = 0;
        let numbered = t.map(&mut |_| {
            n += 1;
            n
        });
        assert_eq!(numbered.to_string(), "1 | 2 & 2 * ! | 3");
    }

    #[test]
    fn simplify_alt_rules() {
        let t = NameTree::Alt(vec![NameTree::Neg, leaf("/a"), leaf("/b")]);
        assert_eq!(t.simplify(), leaf("/a"));
        let t = NameTree::Alt(vec![NameTree::Neg, NameTree::Fail, leaf("/b")]);
        assert_eq!(t.simplify(), NameTree::Fail);
        let t = NameTree::Alt(vec![NameTree::Empty, leaf("/b")]);
        assert_eq!(t.simplify(), NameTree::Empty);
        let t: NameTree<Path> = NameTree::Alt(vec![NameTree::Neg, NameTree::Neg]);
        assert_eq!(t.simplify(), NameTree::Neg);
    }

    #[test]
    fn simplify_union_rules() {
        let t = NameTree::Union(vec![w(9.0, leaf("/a")), w(1.0, NameTree::Neg)]);
        assert_eq!(t.simplify(), leaf("/a"));
        let t: NameTree<Path> = NameTree::Union(vec![w(9.0, NameTree::Fail), w(1.0, NameTree::Neg)]);
        assert_eq!(t.simplify(), NameTree::Neg);
        let t = NameTree::Union(vec![w(9.0, leaf("/a")), w(1.0, NameTree::Fail), w(2.0, NameTree::Empty)]);
        assert_eq!(t.simplify(), NameTree::Union(vec![w(9.0, leaf("/a")), w(2.0, NameTree::Empty)]));
    }
}
