//! Binding: recursive delegation of a path through a dtab down to what the namers answer.

use std::fmt;

use crate::dtab::Dtab;
use crate::path::Path;
use crate::tree::{union_of_survivors, NameTree, Weighted};

/// What a namer says about a path it owns (or that it does not own it).
#[derive(Clone, Debug, PartialEq)]
pub enum NamerLookup<B> {
    /// No configured namer owns this path; the engine treats it as neg.
    NotMine,
    /// The namer's current answer (may itself be neg, e.g. a service with no instances).
    Tree(NameTree<B>),
}

/// The namers a binding consults for paths the dtab does not rewrite.
pub trait Namers {
    /// A bound name (e.g. a service id plus residual that the proxy turns into endpoints).
    type Bound: Clone;
    /// Called for paths the dtab did not rewrite. Must answer for /$/… and /#/… paths it knows; NotMine otherwise
    /// (the engine then treats the path as Neg). The engine itself handles /$/fail (Fail) and /$/nil (Empty)
    /// before calling this.
    fn lookup(&self, path: &Path) -> NamerLookup<Self::Bound>;
}

/// Why a binding was abandoned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindError {
    /// More than `limit` rewrites in a row: almost always a dtab loop such as `/a=>/b;/b=>/a`.
    DepthExceeded {
        /// The path that would have been rewritten once too often.
        path: Path,
        /// The rewrite limit ([`MAX_DEPTH`]).
        limit: usize,
    },
    /// The binding visited more than [`MAX_WORK`] tree nodes (a dtab whose expansion
    /// explodes), or descended more than [`MAX_NESTING_DEPTH`] tree levels.
    TooLarge {
        /// The limit that was hit ([`MAX_WORK`] or [`MAX_NESTING_DEPTH`]).
        limit: usize,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::DepthExceeded { path, limit } => {
                write!(f, "dtab rewrote the name more than {limit} times (a loop?) at {path}")
            }
            BindError::TooLarge { limit } => {
                write!(f, "the name's tree is too large to bind (limit {limit})")
            }
        }
    }
}

impl std::error::Error for BindError {}

/// Most rewrites one binding may perform along any chain (as in Finagle).
pub const MAX_DEPTH: usize = 100;

/// Most tree nodes one binding may visit, so an exponential dtab cannot stall the proxy.
pub const MAX_WORK: usize = 10_000;

/// Most tree levels (across all rewrites) one binding may descend, so that deeply nested
/// destinations chained by many rewrites cannot overflow the stack: the recursion is
/// about this many frames deep at worst. Exceeding it is reported as [`BindError::TooLarge`].
pub const MAX_NESTING_DEPTH: usize = 250;

/// How deep a binding has gone: rewrites along this chain (limited by [`MAX_DEPTH`]) and
/// tree levels descended in total (limited by [`MAX_NESTING_DEPTH`]).
#[derive(Clone, Copy, Default)]
pub(crate) struct Depth {
    pub(crate) rewrites: usize,
    levels: usize,
}

impl Depth {
    /// One level further down, or the error once that is too deep.
    pub(crate) fn descend(self) -> Result<Depth, BindError> {
        match self.levels {
            l if l >= MAX_NESTING_DEPTH => Err(BindError::TooLarge { limit: MAX_NESTING_DEPTH }),
            l => Ok(Depth { rewrites: self.rewrites, levels: l + 1 }),
        }
    }

    /// After one more rewrite, or the error once there have been [`MAX_DEPTH`] of them.
    pub(crate) fn rewrite(self, path: &Path) -> Result<Depth, BindError> {
        match self.rewrites {
            r if r >= MAX_DEPTH => Err(BindError::DepthExceeded { path: path.clone(), limit: MAX_DEPTH }),
            r => Ok(Depth { rewrites: r + 1, levels: self.levels }),
        }
    }
}

/// Bind `path` under `dtab`: recursive lookup until namers answer, then simplified per docs/dtab.md
/// ("Delegation", rules 4 & 5)
/// (Alt: first child that is neither Neg nor Fail wins, Fail stops the alternation with Fail, Empty is success,
/// all Neg → Neg. Union: bind every branch, drop Neg and Fail ones, none → Neg, one → that branch alone,
/// otherwise Union of survivors with their original weights).
///
/// The result contains no `Alt`. Alternatives after the winning one are not looked up at all.
pub fn bind<N: Namers>(dtab: &Dtab, path: &Path, namers: &N) -> Result<NameTree<N::Bound>, BindError> {
    Binder { dtab, namers, work: 0 }.path(path, Depth::default())
}

/// Answer for a path the dtab does not rewrite: the built-in `/$/fail` and `/$/nil`
/// (residual ignored), else the namers, else neg.
pub(crate) fn namer_answer<N: Namers>(namers: &N, path: &Path) -> NameTree<N::Bound> {
    match builtin(path) {
        Some(Builtin::Fail) => NameTree::Fail,
        Some(Builtin::Nil) => NameTree::Empty,
        None => match namers.lookup(path) {
            NamerLookup::NotMine => NameTree::Neg,
            NamerLookup::Tree(tree) => tree.simplify(),
        },
    }
}

enum Builtin {
    Fail,
    Nil,
}

fn builtin(path: &Path) -> Option<Builtin> {
    let labels = path.labels();
    if labels.first().map(|l| l.as_bytes()) != Some(b"$") {
        return None;
    }
    match labels.get(1).map(|l| l.as_bytes()) {
        Some(b"fail") => Some(Builtin::Fail),
        Some(b"nil") => Some(Builtin::Nil),
        _ => None,
    }
}

struct Binder<'a, N> {
    dtab: &'a Dtab,
    namers: &'a N,
    /// Tree nodes visited so far, checked against [`MAX_WORK`].
    work: usize,
}

impl<N: Namers> Binder<'_, N> {
    fn tick(&mut self) -> Result<(), BindError> {
        self.work += 1;
        if self.work > MAX_WORK {
            return Err(BindError::TooLarge { limit: MAX_WORK });
        }
        Ok(())
    }

    /// Bind one path reached at `depth`.
    fn path(&mut self, path: &Path, depth: Depth) -> Result<NameTree<N::Bound>, BindError> {
        self.tick()?;
        match self.dtab.lookup(path) {
            NameTree::Neg => Ok(namer_answer(self.namers, path)),
            rewritten => self.tree(&rewritten, depth.rewrite(path)?),
        }
    }

    /// Bind every leaf of `tree` and evaluate it; the result contains no `Alt`.
    fn tree(&mut self, tree: &NameTree<Path>, depth: Depth) -> Result<NameTree<N::Bound>, BindError> {
        self.tick()?;
        let depth = depth.descend()?;
        match tree {
            NameTree::Neg => Ok(NameTree::Neg),
            NameTree::Fail => Ok(NameTree::Fail),
            NameTree::Empty => Ok(NameTree::Empty),
            NameTree::Leaf(path) => self.path(path, depth),
            NameTree::Alt(children) => {
                for child in children {
                    match self.tree(child, depth)? {
                        NameTree::Neg => continue,
                        decided => return Ok(decided),
                    }
                }
                Ok(NameTree::Neg)
            }
            NameTree::Union(branches) => {
                let mut survivors = Vec::with_capacity(branches.len());
                for branch in branches {
                    match self.tree(&branch.tree, depth)? {
                        NameTree::Neg | NameTree::Fail => {}
                        tree => survivors.push(Weighted { weight: branch.weight, tree }),
                    }
                }
                Ok(union_of_survivors(survivors))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Knows `/#/fs/<name>` for the names it holds; binds to "<name>" plus any residual.
    struct Fs(HashSet<&'static str>);

    impl Namers for Fs {
        type Bound = String;
        fn lookup(&self, path: &Path) -> NamerLookup<String> {
            let owned = path.take(2) == Path::read("/#/fs").expect("parses");
            let name = path.labels().get(2).and_then(|l| l.as_str());
            match (owned, name) {
                (true, Some(n)) if self.0.contains(n) => {
                    let rest = path.drop(3);
                    let bound = if rest.is_empty() { n.to_owned() } else { format!("{n}{rest}") };
                    NamerLookup::Tree(NameTree::Leaf(bound))
                }
                (true, _) => NamerLookup::Tree(NameTree::Neg),
                (false, _) => NamerLookup::NotMine,
            }
        }
    }

    fn fs(names: &[&'static str]) -> Fs {
        Fs(names.iter().copied().collect())
    }

    fn run(dtab: &str, path: &str, namers: &Fs) -> Result<NameTree<String>, BindError> {
        let dtab = Dtab::parse(dtab).expect("test dtab parses");
        bind(&dtab, &Path::read(path).expect("test path parses"), namers)
    }

    fn leaf(s: &str) -> NameTree<String> {
        NameTree::Leaf(s.to_owned())
    }

    #[test]
    fn rewrites_until_a_namer_answers() {
        let r = run("/svc=>/#/fs", "/svc/a/x", &fs(&["a"]));
        assert_eq!(r, Ok(leaf("a/x")));
    }

    #[test]
    fn unrewritten_unknown_paths_are_neg() {
        assert_eq!(run("/svc=>/#/fs", "/other", &fs(&[])), Ok(NameTree::Neg));
        assert_eq!(run("", "/#/fs/a", &fs(&["a"])), Ok(leaf("a")));
    }

    #[test]
    fn builtins_fail_and_nil_with_residual() {
        assert_eq!(run("/s=>/$/fail", "/s/x", &fs(&[])), Ok(NameTree::Fail));
        assert_eq!(run("/s=>/$/nil", "/s/x", &fs(&[])), Ok(NameTree::Empty));
        assert_eq!(run("", "/$/nil", &fs(&[])), Ok(NameTree::Empty));
        assert_eq!(run("", "/$/other", &fs(&[])), Ok(NameTree::Neg));
    }

    #[test]
    fn dtab_can_intercept_namer_paths() {
        let r = run("/#/fs/a=>/#/fs/b", "/#/fs/a", &fs(&["a", "b"]));
        assert_eq!(r, Ok(leaf("b")));
    }

    #[test]
    fn a_dentry_to_neg_falls_back_to_the_namers() {
        // Lookup yields neg, which is "nothing rewrote this path" (Finagle's rule).
        assert_eq!(run("/#/fs/a=>~", "/#/fs/a", &fs(&["a"])), Ok(leaf("a")));
    }

    #[test]
    fn exactly_max_depth_rewrites_are_allowed() {
        let chain = |n: usize| (0..n).map(|i| format!("/p{i}=>/p{};", i + 1)).collect::<String>();
        let ok = format!("{}/p{}=>/#/fs/a", chain(MAX_DEPTH - 1), MAX_DEPTH - 1);
        assert_eq!(run(&ok, "/p0", &fs(&["a"])), Ok(leaf("a")));
        let too_long = format!("{}/p{MAX_DEPTH}=>/#/fs/a", chain(MAX_DEPTH));
        let path = Path::read(&format!("/p{MAX_DEPTH}")).expect("parses");
        assert_eq!(run(&too_long, "/p0", &fs(&["a"])), Err(BindError::DepthExceeded { path, limit: MAX_DEPTH }));
    }

    #[test]
    fn loops_hit_the_depth_limit() {
        let r = run("/a=>/b;/b=>/a", "/a", &fs(&[]));
        assert!(matches!(r, Err(BindError::DepthExceeded { limit: MAX_DEPTH, .. })), "{r:?}");
    }

    #[test]
    fn exponential_dtabs_hit_the_work_limit() {
        let dtab: String = (0..40).map(|i| format!("/p{i}=>/p{} & /p{};", i + 1, i + 1)).collect();
        assert_eq!(run(&dtab, "/p0", &fs(&[])), Err(BindError::TooLarge { limit: MAX_WORK }));
    }

    /// 100 rewrites, each into a destination nested as deep as the parser allows.
    pub(crate) fn deepest_dtab() -> Dtab {
        let mut src = String::new();
        for i in 0..MAX_DEPTH {
            let mut tree = format!("/p{}", i + 1);
            for _ in 0..crate::parse::MAX_NESTING {
                tree = format!("(/x | {tree})");
            }
            src.push_str(&format!("/p{i}=>{tree};"));
        }
        Dtab::parse(&src).expect("generated dtab parses")
    }

    #[test]
    fn deep_nesting_is_cut_off_before_the_stack_overflows() {
        // 1 MiB: half of what a tokio worker thread gets, in an unoptimised build.
        let worker = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| bind(&deepest_dtab(), &Path::read("/p0").expect("parses"), &fs(&[])));
        let result = worker.expect("thread starts").join().expect("no stack overflow");
        assert_eq!(result, Err(BindError::TooLarge { limit: MAX_NESTING_DEPTH }));
    }

    #[test]
    fn alternation_stops_before_later_loops() {
        let r = run("/s=>/#/fs/a | /loop; /loop=>/loop", "/s", &fs(&["a"]));
        assert_eq!(r, Ok(leaf("a")));
    }

    #[test]
    fn errors_display() {
        let e = BindError::DepthExceeded { path: Path::read("/a").expect("parses"), limit: 100 };
        assert_eq!(e.to_string(), "dtab rewrote the name more than 100 times (a loop?) at /a");
        assert_eq!(BindError::TooLarge { limit: 7 }.to_string(), "the name's tree is too large to bind (limit 7)");
    }

    #[test]
    fn namer_trees_are_simplified() {
        struct Weird;
        impl Namers for Weird {
            type Bound = String;
            fn lookup(&self, _: &Path) -> NamerLookup<String> {
                NamerLookup::Tree(NameTree::Alt(vec![NameTree::Neg, NameTree::Leaf("x".to_owned())]))
            }
        }
        let r = bind(&Dtab::empty(), &Path::read("/#/w").expect("parses"), &Weird);
        assert_eq!(r, Ok(leaf("x")));
    }
}
