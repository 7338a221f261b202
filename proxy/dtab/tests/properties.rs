//! Property tests: printing round-trips through parsing, parsing never panics, and
//! binding/explaining terminate without panicking on any dtab, loops included.

use proptest::prelude::*;

use switchyard_dtab::{
    bind, explain, BindError, Dentry, Dtab, Label, NameTree, NamerLookup, Namers, Path, Prefix, PrefixElem, Weighted,
};

/// Label bytes: mostly label characters, often bytes that must be escaped.
fn label() -> impl Strategy<Value = Label> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"abcXYZ019_:.#$%-".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 1..5).prop_filter_map("labels are non-empty", Label::new)
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(label(), 0..4).prop_map(Path::from_labels)
}

fn prefix() -> impl Strategy<Value = Prefix> {
    let elem = prop_oneof![3 => label().prop_map(PrefixElem::Label), 1 => Just(PrefixElem::Any)];
    prop::collection::vec(elem, 0..4).prop_map(Prefix::new)
}

/// Weights as the parser can produce them: finite and non-negative.
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![Just(1.0), (0u32..100).prop_map(f64::from), 0.0f64..1000.0, 1e-12f64..1e-6, 1e15f64..1e25,]
}

/// Trees in the shapes the parser produces: `Alt` and multi-branch `Union` with at least two
/// children, and a one-branch `Union` only with an explicit weight.
fn tree_of(leaf: impl Strategy<Value = Path> + 'static, depth: u32) -> impl Strategy<Value = NameTree<Path>> {
    let atom = prop_oneof![
        1 => Just(NameTree::Neg),
        1 => Just(NameTree::Fail),
        1 => Just(NameTree::Empty),
        6 => leaf.prop_map(NameTree::Leaf),
    ];
    atom.prop_recursive(depth, 6 * depth, 3, |inner| {
        let branch = (weight(), inner.clone()).prop_map(|(weight, tree)| Weighted { weight, tree });
        prop_oneof![
            prop::collection::vec(inner, 2..4).prop_map(NameTree::Alt),
            prop::collection::vec(branch, 1..4).prop_map(NameTree::Union),
        ]
    })
}

fn dtab_of(
    prefix: impl Strategy<Value = Prefix>,
    leaf: impl Strategy<Value = Path> + 'static,
    depth: u32,
) -> impl Strategy<Value = Dtab> {
    let dentry = (prefix, tree_of(leaf, depth)).prop_map(|(prefix, dst)| Dentry::new(prefix, dst));
    prop::collection::vec(dentry, 0..6).prop_map(Dtab::from_dentries)
}

/// Paths over a tiny alphabet so that generated dtabs match, chain and loop often.
fn small_path() -> impl Strategy<Value = Path> {
    let word = prop::sample::select(vec!["a", "b", "c", "#", "$", "fs", "nil", "fail", "x"]);
    prop::collection::vec(word, 0..4).prop_map(|w| Path::from_strs(&w).unwrap_or_default())
}

fn small_prefix() -> impl Strategy<Value = Prefix> {
    let elem = prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "#"])
            .prop_filter_map("non-empty", |s| Label::new(s).map(PrefixElem::Label)),
        1 => Just(PrefixElem::Any),
    ];
    prop::collection::vec(elem, 0..3).prop_map(Prefix::new)
}

/// Owns `/#/fs/...`: binds names starting with `a`, neg for the rest.
struct Fs;

impl Namers for Fs {
    type Bound = Path;
    fn lookup(&self, path: &Path) -> NamerLookup<Path> {
        let owned = Path::from_strs(&["#", "fs"]).is_some_and(|fs| path.starts_with(&fs));
        match (owned, path.labels().get(2)) {
            (true, Some(name)) if name.as_bytes().starts_with(b"a") => NamerLookup::Tree(NameTree::Leaf(path.clone())),
            (true, _) => NamerLookup::Tree(NameTree::Neg),
            (false, _) => NamerLookup::NotMine,
        }
    }
}

fn has_alt<T>(tree: &NameTree<T>) -> bool {
    match tree {
        NameTree::Alt(_) => true,
        NameTree::Union(branches) => branches.iter().any(|w| has_alt(&w.tree)),
        _ => false,
    }
}

/// Parse errors must point inside the input, at a character boundary, with sane positions.
fn check_error(src: &str, e: &switchyard_dtab::ParseError) {
    assert!(e.offset <= src.len() && src.is_char_boundary(e.offset), "{e:?}");
    assert!(e.line >= 1 && e.column >= 1, "{e:?}");
    assert!(!e.message.is_empty());
}

proptest! {
    #[test]
    fn dtab_display_then_parse_is_identity(dtab in dtab_of(prefix(), path(), 4)) {
        let printed = dtab.to_string();
        prop_assert_eq!(Dtab::parse(&printed), Ok(dtab.clone()), "printed: {}", printed);
        prop_assert_eq!(Dtab::parse(&dtab.pretty()), Ok(dtab));
    }

    #[test]
    fn tree_display_then_read_is_identity(tree in tree_of(path(), 4)) {
        let printed = tree.to_string();
        prop_assert_eq!(NameTree::read(&printed), Ok(tree), "printed: {}", printed);
    }

    #[test]
    fn path_display_then_read_is_identity(path in path()) {
        let printed = path.to_string();
        prop_assert_eq!(Path::read(&printed), Ok(path), "printed: {}", printed);
        prop_assert!(printed.is_ascii());
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(src in ".{0,64}") {
        for result in [
            Dtab::parse(&src).err(),
            NameTree::read(&src).err(),
            Path::read(&src).err(),
            Prefix::read(&src).err(),
        ].into_iter().flatten() {
            check_error(&src, &result);
        }
    }

    #[test]
    fn parsing_dtab_like_text_never_panics(src in r"[/ab*=>;|&~!$()#.0-9\\x \n]{0,64}") {
        match Dtab::parse(&src) {
            // Whatever parses prints back to the same dtab.
            Ok(dtab) => prop_assert_eq!(Dtab::parse(&dtab.to_string()), Ok(dtab)),
            Err(e) => check_error(&src, &e),
        }
    }

}

proptest! {
    // Many generated dtabs loop or explode, so each case may run binding to its limits.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bind_and_explain_terminate_without_panicking(
        dtab in dtab_of(small_prefix(), small_path(), 3),
        path in small_path(),
    ) {
        let bound = bind(&dtab, &path, &Fs);
        let explained = explain(&dtab, &path, &Fs);
        prop_assert_eq!(explained.path(), &path);
        match bound {
            Ok(tree) => {
                prop_assert!(!has_alt(&tree), "bound tree still has an alternation: {}", tree);
                // Printing runaway explanations takes megabytes; the terminating ones suffice.
                prop_assert!(explained.to_string().starts_with(&path.to_string()));
            }
            Err(BindError::DepthExceeded { .. } | BindError::TooLarge { .. }) => {}
        }
    }
}
