//! docs/dtab.md as executable examples: every row of its "Examples" table, then each rule by name.

use std::collections::{HashMap, HashSet};

use switchyard_dtab::{
    bind, explain, BindError, Dtab, Explain, NameTree, NamerLookup, Namers, Path, Weighted, MAX_DEPTH,
};

/// A fake mesh: `io.l5d.fs` service names, Consul datacenters with their services, and
/// `/$/inet/<host>/<port>` literal addresses. Bound names are strings like
/// `fs:forex-rate`, `consul:dc2:forex-rate` or `inet:127.1:8080`, plus `+<residual>`.
#[derive(Default)]
struct Mesh {
    fs: HashSet<&'static str>,
    consul: HashMap<&'static str, HashSet<&'static str>>,
}

impl Mesh {
    fn fs(names: &[&'static str]) -> Mesh {
        Mesh { fs: names.iter().copied().collect(), ..Mesh::default() }
    }

    fn consul(dcs: &[(&'static str, &[&'static str])]) -> Mesh {
        let consul = dcs.iter().map(|(dc, names)| (*dc, names.iter().copied().collect())).collect();
        Mesh { consul, ..Mesh::default() }
    }
}

fn text(path: &Path) -> Vec<&str> {
    path.labels().iter().map(|l| l.as_str().unwrap_or("?")).collect()
}

/// `kind:id` plus `+/residual` when there is one.
fn bound(kind: &str, id: &[&str], residual: &[&str]) -> NamerLookup<String> {
    let mut name = format!("{kind}:{}", id.join(":"));
    if !residual.is_empty() {
        name = format!("{name}+/{}", residual.join("/"));
    }
    NamerLookup::Tree(NameTree::Leaf(name))
}

impl Namers for Mesh {
    type Bound = String;

    fn lookup(&self, path: &Path) -> NamerLookup<String> {
        match text(path).as_slice() {
            ["#", "io.l5d.fs", name, rest @ ..] if self.fs.contains(name) => bound("fs", &[name], rest),
            ["#", "io.l5d.consul", dc, name, rest @ ..]
                if self.consul.get(dc).is_some_and(|names| names.contains(name)) =>
            {
                bound("consul", &[dc, name], rest)
            }
            ["#", "io.l5d.fs" | "io.l5d.consul", ..] => NamerLookup::Tree(NameTree::Neg),
            ["$", "inet", host, port, rest @ ..] => bound("inet", &[host, port], rest),
            _ => NamerLookup::NotMine,
        }
    }
}

fn p(s: &str) -> Path {
    Path::read(s).expect("test path parses")
}

fn run(dtab: &str, path: &str, mesh: &Mesh) -> Result<NameTree<String>, BindError> {
    bind(&Dtab::parse(dtab).expect("test dtab parses"), &p(path), mesh)
}

fn leaf(s: &str) -> Result<NameTree<String>, BindError> {
    Ok(NameTree::Leaf(s.to_owned()))
}

fn weighted(weight: f64, name: &str) -> Weighted<String> {
    Weighted { weight, tree: NameTree::Leaf(name.to_owned()) }
}

// ---- The example table (setup: forex-rate has instances; forex-rate-v2 does not exist) ----

#[test]
fn table_row_1_prefix_to_namer() {
    let r = run("/svc=>/#/io.l5d.fs;", "/svc/forex-rate", &Mesh::fs(&["forex-rate"]));
    assert_eq!(r, leaf("fs:forex-rate"));
}

#[test]
fn table_row_2_later_dentry_first_neg_falls_through() {
    let dtab = "/svc=>/#/io.l5d.consul/dc1; /svc=>/#/io.l5d.consul/dc2;";
    let both = Mesh::consul(&[("dc1", &["forex-rate"]), ("dc2", &["forex-rate"])]);
    assert_eq!(run(dtab, "/svc/forex-rate", &both), leaf("consul:dc2:forex-rate"));
    let dc1_only = Mesh::consul(&[("dc1", &["forex-rate"]), ("dc2", &[])]);
    assert_eq!(run(dtab, "/svc/forex-rate", &dc1_only), leaf("consul:dc1:forex-rate"));
}

#[test]
fn table_row_3_alternation_moves_to_v2_once_it_registers() {
    let dtab = "/svc/forex-rate=>/#/io.l5d.fs/forex-rate-v2 | /#/io.l5d.fs/forex-rate;";
    let before = Mesh::fs(&["forex-rate"]);
    assert_eq!(run(dtab, "/svc/forex-rate", &before), leaf("fs:forex-rate"));
    let after = Mesh::fs(&["forex-rate", "forex-rate-v2"]);
    assert_eq!(run(dtab, "/svc/forex-rate", &after), leaf("fs:forex-rate-v2"));
}

#[test]
fn table_row_4_union_is_all_forex_rate_until_v2_exists() {
    let dtab = "/svc/forex-rate=>9*/#/io.l5d.fs/forex-rate & 1*/#/io.l5d.fs/forex-rate-v2;";
    let before = Mesh::fs(&["forex-rate"]);
    assert_eq!(run(dtab, "/svc/forex-rate", &before), leaf("fs:forex-rate"));
    let after = Mesh::fs(&["forex-rate", "forex-rate-v2"]);
    let split = NameTree::Union(vec![weighted(9.0, "fs:forex-rate"), weighted(1.0, "fs:forex-rate-v2")]);
    assert_eq!(run(dtab, "/svc/forex-rate", &after), Ok(split));
}

#[test]
fn table_row_5_pre_1_0_method_and_host_to_inet() {
    let dtab = "/http/1.1/*/* => /local; /local => /$/inet/127.1/8080;";
    let r = run(dtab, "/http/1.1/GET/anything", &Mesh::default());
    assert_eq!(r, leaf("inet:127.1:8080"));
}

// ---- The rules, one test each ----

#[test]
fn precedence_union_binds_tighter_than_alternation() {
    let tree = NameTree::read("/a & /b | /c").expect("parses");
    let explicit = NameTree::read("(/a & /b) | /c").expect("parses");
    assert_eq!(tree, explicit);
    assert!(matches!(&tree, NameTree::Alt(alts) if matches!(alts[0], NameTree::Union(_))));
    // Weights bind tighter than `&`.
    let weighted = NameTree::read("2 * /a & /b").expect("parses");
    assert_eq!(weighted.to_string(), "2 * /a & /b");
}

#[test]
fn alternation_first_non_neg_wins_and_all_neg_is_neg() {
    let mesh = Mesh::fs(&["b", "c"]);
    assert_eq!(run("/s=>/#/io.l5d.fs/a | /#/io.l5d.fs/b | /#/io.l5d.fs/c", "/s", &mesh), leaf("fs:b"));
    assert_eq!(run("/s=>/#/io.l5d.fs/x | ~ | /nowhere", "/s", &mesh), Ok(NameTree::Neg));
}

#[test]
fn union_drops_neg_and_fail_and_keeps_original_weights() {
    let mesh = Mesh::fs(&["a", "b"]);
    let dtab = "/s=>0.5*/#/io.l5d.fs/a & 0.3*/#/io.l5d.fs/b & 0.2*/#/io.l5d.fs/gone & 7*!";
    let split = NameTree::Union(vec![weighted(0.5, "fs:a"), weighted(0.3, "fs:b")]);
    assert_eq!(run(dtab, "/s", &mesh), Ok(split));
    assert_eq!(run("/s=>/#/io.l5d.fs/gone & !", "/s", &mesh), Ok(NameTree::Neg));
}

#[test]
fn fail_stops_the_whole_alternation() {
    let mesh = Mesh::fs(&["a"]);
    assert_eq!(run("/s=>~ | ! | /#/io.l5d.fs/a", "/s", &mesh), Ok(NameTree::Fail));
    assert_eq!(run("/s=>/$/fail | /#/io.l5d.fs/a", "/s", &mesh), Ok(NameTree::Fail));
    // A failing later dentry is tried first and stops the earlier one too.
    assert_eq!(run("/s=>/#/io.l5d.fs/a; /s=>!", "/s", &mesh), Ok(NameTree::Fail));
}

#[test]
fn neg_falls_through_to_the_next_choice() {
    let mesh = Mesh::fs(&["a"]);
    assert_eq!(run("/s=>~ | /#/io.l5d.fs/a", "/s", &mesh), leaf("fs:a"));
    assert_eq!(run("/s=>/#/io.l5d.fs/a; /s=>/unbound", "/s", &mesh), leaf("fs:a"));
    assert_eq!(run("/s=>/#/io.l5d.fs/a", "/other", &mesh), Ok(NameTree::Neg));
}

#[test]
fn empty_counts_as_success() {
    let mesh = Mesh::fs(&["a"]);
    assert_eq!(run("/s=>$ | /#/io.l5d.fs/a", "/s", &mesh), Ok(NameTree::Empty));
    assert_eq!(run("/s=>/$/nil | /#/io.l5d.fs/a", "/s", &mesh), Ok(NameTree::Empty));
    let split = NameTree::Union(vec![weighted(1.0, "fs:a"), Weighted { weight: 1.0, tree: NameTree::Empty }]);
    assert_eq!(run("/s=>/#/io.l5d.fs/a & $", "/s", &mesh), Ok(split));
}

#[test]
fn residual_is_appended_to_every_leaf_and_reaches_the_namer() {
    let mesh = Mesh::fs(&["a"]);
    assert_eq!(run("/svc=>/#/io.l5d.fs", "/svc/a/x/y", &mesh), leaf("fs:a+/x/y"));
    let dtab = Dtab::parse("/svc=>/one | 2 * /two & /three").expect("parses");
    let looked_up = dtab.lookup(&p("/svc/r"));
    assert_eq!(looked_up, NameTree::read("/one/r | 2 * /two/r & /three/r").expect("parses"));
}

#[test]
fn wildcard_matches_exactly_one_segment() {
    let dtab = "/http/1.1/*/*=>/#/io.l5d.fs";
    let mesh = Mesh::fs(&["x"]);
    assert_eq!(run(dtab, "/http/1.1/GET/host/x", &mesh), leaf("fs:x"));
    assert_eq!(run(dtab, "/http/1.1/GET", &mesh), Ok(NameTree::Neg));
    assert!(Dtab::parse("/http/1.1/GET*=>/a").is_err());
}

#[test]
fn root_prefix_matches_every_path() {
    let mesh = Mesh::fs(&["svc"]);
    assert_eq!(run("/=>$", "/svc/z", &mesh), Ok(NameTree::Empty));
    assert_eq!(run("/=>$", "/", &mesh), Ok(NameTree::Empty));
    // Its result is looked up again and matches `/` again, so a rewrite to a path loops.
    let r = run("/=>/#/io.l5d.fs", "/svc/z", &mesh);
    assert!(matches!(r, Err(BindError::DepthExceeded { .. })), "{r:?}");
}

#[test]
fn position_not_specificity_decides_priority() {
    let mesh = Mesh::fs(&["specific", "general"]);
    let dtab = "/svc/forex-rate=>/#/io.l5d.fs/specific; /svc=>/#/io.l5d.fs/general";
    assert_eq!(run(dtab, "/svc/forex-rate", &mesh), leaf("fs:general+/forex-rate"));
}

#[test]
fn dtab_is_consulted_before_namers() {
    let mesh = Mesh::fs(&["a", "b"]);
    assert_eq!(run("/#/io.l5d.fs/a=>/#/io.l5d.fs/b", "/#/io.l5d.fs/a", &mesh), leaf("fs:b"));
}

#[test]
fn depth_limit_stops_loops_with_an_error() {
    let r = run("/a=>/b; /b=>/a;", "/a", &Mesh::default());
    assert!(matches!(r, Err(BindError::DepthExceeded { limit: MAX_DEPTH, .. })), "{r:?}");
    let e = explain(&Dtab::parse("/a=>/b; /b=>/a;").expect("parses"), &p("/a"), &Mesh::default());
    assert!(e.to_string().contains(": error: "), "{e}");
}

#[test]
fn request_overrides_concatenate_and_win() {
    let router = Dtab::parse("/svc=>/#/io.l5d.fs").expect("parses");
    let header = Dtab::parse("/svc/forex-rate=>/#/io.l5d.fs/forex-rate-v2").expect("parses");
    let mesh = Mesh::fs(&["forex-rate", "forex-rate-v2"]);
    let r = bind(&router.concat(&header), &p("/svc/forex-rate"), &mesh);
    assert_eq!(r, leaf("fs:forex-rate-v2"));
}

#[test]
fn explain_shows_the_row_2_fallback() {
    let dtab = Dtab::parse("/svc=>/#/io.l5d.consul/dc1; /svc=>/#/io.l5d.consul/dc2;").expect("parses");
    let mesh = Mesh::consul(&[("dc1", &["forex-rate"]), ("dc2", &[])]);
    match explain(&dtab, &p("/svc/forex-rate"), &mesh) {
        Explain::Alt { alts, .. } => {
            assert!(matches!(&alts[0], Explain::Neg { path, .. } if *path == p("/#/io.l5d.consul/dc2/forex-rate")));
            assert!(matches!(&alts[1], Explain::Bound { bound, .. } if bound == "consul:dc1:forex-rate"));
        }
        other => panic!("expected two alternatives, got {other:?}"),
    }
}

#[test]
fn a_linkerd_style_multiline_dtab_parses() {
    let src = "\
        # from a linkerd 1 config\n\
        /srv        => /#/io.l5d.consul/dc1 ;\n\
        /host       => /srv ;\n\
        /svc        => /host ;\n\
        /host/forex => /srv/forex-rate | /$/inet/127.1/9999 ; # fallback\n";
    let dtab = Dtab::parse(src).expect("parses");
    assert_eq!(dtab.len(), 4);
    let mesh = Mesh::consul(&[("dc1", &["forex-rate"])]);
    assert_eq!(bind(&dtab, &p("/svc/forex"), &mesh), leaf("consul:dc1:forex-rate"));
    assert_eq!(Dtab::parse(&dtab.to_string()), Ok(dtab));
}
