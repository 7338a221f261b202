//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer): each feeds arbitrary bytes to one parser
//! or request-path function and asserts what must hold whatever the input — no panic, round trips that agree,
//! hygiene that cannot be talked out of. Not an API; `fuzz/README.md` says how to run them.

use http::{HeaderName, HeaderValue, Method, Request};
use switchyard_dtab::{bind, explain, Dtab, NameTree, NamerLookup, Namers, Path};

use crate::router::context::RequestContext;
use crate::router::identify::{identify, Identifier};
use crate::router::{access_log, headers, trace};

/// A namer table for the dtab fuzzer: `/#/neg/…` is Neg, `/#/fail/…` Fail, any other `/#/…` binds to itself.
struct Table;

impl Namers for Table {
    type Bound = String;

    fn lookup(&self, path: &Path) -> NamerLookup<String> {
        let labels = path.labels();
        if labels.first().map(|l| l.as_bytes()) != Some(b"#") {
            return NamerLookup::NotMine;
        }
        NamerLookup::Tree(match labels.get(1).map(|l| l.as_bytes()) {
            Some(b"neg") => NameTree::Neg,
            Some(b"fail") => NameTree::Fail,
            _ => NameTree::Leaf(path.to_string()),
        })
    }
}

/// The dtab engine: `<path>\n<dtab>`. Parsing round-trips through its text; binding and explaining terminate.
pub fn dtab(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path_text, dtab_text) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(dtab) = Dtab::parse(dtab_text) {
        let again = Dtab::parse(&dtab.to_string()).expect("a parsed dtab's text parses");
        assert_eq!(again, dtab, "a dtab's text means the same dtab");
        if let Ok(path) = Path::read(path_text) {
            assert_eq!(Path::read(&path.to_string()).ok(), Some(path.clone()), "a path's text means the same path");
            let _ = bind(&dtab, &path, &Table);
            let _ = explain(&dtab, &path, &Table);
        }
    }
}

/// The config loader: any text gives a config or diagnostics with real positions, never a panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match crate::config::load(&text) {
        Ok(loaded) => {
            let _ = serde_json::to_string(&loaded.config).expect("a loaded config serialises");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused config says why");
            assert!(errors.iter().all(|e| e.line >= 1 && e.column >= 1), "every diagnostic has a position");
        }
    }
}

/// The request-path functions that read client headers: `METHOD TARGET` on the first line, `name: value` after.
pub fn request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return };
    let Ok(mut req) = Request::builder().method(method).uri(target).body(()) else { return };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value.trim())) {
            req.headers_mut().append(name, value);
        }
    }
    let prefix = Path::read("/svc").expect("valid prefix");
    let ids = [
        Identifier::HeaderToken(http::header::HOST),
        Identifier::MethodAndHost { uri_in_dst: true },
        Identifier::MethodAndHost { uri_in_dst: false },
        Identifier::PathSegments { segments: 2, consume: true },
        Identifier::HeaderPath(HeaderName::from_static("l5d-name")),
    ];
    for id in &ids {
        if let Ok(found) = identify(std::slice::from_ref(id), &prefix, &req) {
            assert!(found.path.starts_with(&prefix), "a name is built under the prefix");
        }
    }
    let _ = headers::check_host(&req);
    let _ = headers::own_hops(req.headers());
    let escaped = access_log::escape(&req.uri().to_string()).into_owned();
    assert!(!escaped.contains(['"', ' ', '\n']), "a logged field cannot break out: {escaped:?}");

    let host = req.headers().get(http::header::HOST).cloned();
    let mut stripped = req.headers().clone();
    headers::strip_hop_by_hop(&mut stripped, false);
    assert_eq!(stripped.get(http::header::HOST), host.as_ref(), "Host is never stripped");

    let corr = trace::correlate(&mut stripped);
    assert!(corr.reqid.len() <= 64 && !corr.reqid.is_empty(), "request ids are bounded");
    let mut untrusted = stripped.clone();
    if RequestContext::read(&mut untrusted, false).is_ok() {
        assert!(untrusted.keys().all(|k| !k.as_str().starts_with("l5d-ctx-")), "untrusted context never passes");
    }
    let _ = RequestContext::read(&mut stripped, true);
    for h2 in [false, true] {
        let mut r = req.clone();
        headers::set_target_for(&mut r, h2);
    }
}

/// The namers' parsers: `io.l5d.fs` registry files and Consul catalog and health answers.
pub fn namers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let set = crate::namer::fs::parse_registry_file(std::path::Path::new("fuzz"), &text);
    assert!(set.endpoints.iter().all(|e| e.weight.is_finite() && e.weight >= 0.0), "weights are sane");
    for health in [false, true] {
        let _ = crate::namer::consul::parse_body_for_fuzzing(data, health);
    }
}
