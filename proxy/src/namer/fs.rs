//! `io.l5d.fs`: a watched directory with one file per service name — the embedded default registry.
//!
//! `/#/io.l5d.fs/<name>/<rest…>` binds to the endpoints listed in `<rootDir>/<name>`; `<rest>` is the residual.
//! Each line is `host:port` or `host port`, optionally followed by a weight (`127.0.3.1:4140 0.5`); blank lines
//! and `#` comments are skipped, and a bad line is logged and skipped rather than poisoning the whole file.
//! A missing file is Neg (so `|` falls through); a file with no addresses binds to an empty set (503).
//! Dot-files are ignored, so writers can create `.name.tmp` and rename it into place atomically.
//!
//! The directory is re-scanned every [`POLL_INTERVAL`] on the blocking pool: polling a handful of small files
//! is cheaper and more portable than inotify, and it survives the directory being deleted and recreated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use switchyard_dtab::{Label, NameTree, Path};

use super::{inet::parse_host, BoundName, Endpoint, EndpointSet, EndpointWatch, Namer, NamerAnswer};

/// How often the directory is re-read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Files larger than this are not registry files; they are skipped with a warning.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The fs namer: a snapshot of the directory, refreshed by [`FsNamer::spawn_watch`].
pub struct FsNamer {
    prefix: Path,
    root: PathBuf,
    names: ArcSwap<HashMap<Label, Arc<EndpointWatch>>>,
    generation: Arc<AtomicU64>,
}

impl FsNamer {
    /// A namer over `root`, scanned once now so it can answer before its watch task runs.
    pub fn new(prefix: Path, root: PathBuf, generation: Arc<AtomicU64>) -> Arc<Self> {
        let namer = Arc::new(Self { prefix, root, names: ArcSwap::default(), generation });
        namer.apply(scan_dir(&namer.root));
        namer
    }

    /// Starts the polling task; it ends when the namer is dropped.
    pub fn spawn_watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(namer) = weak.upgrade() else { return };
                let root = namer.root.clone();
                match tokio::task::spawn_blocking(move || scan_dir(&root)).await {
                    Ok(scan) => namer.apply(scan),
                    Err(e) => tracing::warn!(error = %e, "fs namer scan task failed"),
                }
            }
        });
    }

    /// Folds a directory scan into the live state; bumps the generation if a name appeared or vanished.
    fn apply(&self, scan: Option<HashMap<Label, EndpointSet>>) {
        // An unreadable directory keeps the last known state: better stale routes than none.
        let Some(scan) = scan else { return };
        let current = self.names.load();
        let mut next = HashMap::with_capacity(scan.len());
        let mut existence_changed = scan.len() != current.len();
        for (name, set) in scan {
            let watch = match current.get(&name) {
                Some(w) => {
                    if w.store(set) {
                        tracing::info!(name = %name, root = %self.root.display(), "fs namer: endpoints changed");
                    }
                    w.clone()
                }
                None => {
                    existence_changed = true;
                    tracing::info!(name = %name, root = %self.root.display(), "fs namer: name appeared");
                    EndpointWatch::new(set)
                }
            };
            next.insert(name, watch);
        }
        if existence_changed {
            for gone in current.keys().filter(|k| !next.contains_key(*k)) {
                tracing::info!(name = %gone, root = %self.root.display(), "fs namer: name removed");
            }
            self.names.store(Arc::new(next));
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Namer for FsNamer {
    fn prefix(&self) -> &Path {
        &self.prefix
    }

    fn kind(&self) -> &'static str {
        "io.l5d.fs"
    }

    fn lookup(&self, id_prefix: &Path, rest: &Path) -> NamerAnswer {
        // The directory is always fully known (scanned at start-up), so there is never a pending answer.
        let Some(name) = rest.labels().first() else { return NamerAnswer::Ready(NameTree::Neg) };
        NamerAnswer::Ready(match self.names.load().get(name) {
            Some(watch) => NameTree::Leaf(BoundName {
                id: id_prefix.append(name.clone()),
                residual: rest.drop(1),
                endpoints: watch.clone(),
                host: None,
            }),
            None => NameTree::Neg,
        })
    }

    fn state(&self) -> serde_json::Value {
        let names = self.names.load();
        let mut entries: Vec<_> = names.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let map: serde_json::Map<String, serde_json::Value> = entries
            .into_iter()
            .map(|(name, w)| {
                let addrs: Vec<String> = w.load().endpoints.iter().map(|e| e.addr.to_string()).collect();
                (name.to_string(), serde_json::json!(addrs))
            })
            .collect();
        serde_json::json!({ "kind": "io.l5d.fs", "rootDir": self.root.display().to_string(), "names": map })
    }
}

/// Reads every registry file in `root`; `None` if the directory itself cannot be read.
fn scan_dir(root: &FsPath) -> Option<HashMap<Label, EndpointSet>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(root = %root.display(), error = %e, "fs namer: cannot read directory");
            return None;
        }
    };
    let mut out = HashMap::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() <= MAX_FILE_BYTES => {}
            Ok(m) if m.is_file() => {
                tracing::warn!(file = %path.display(), "fs namer: file too large, skipped");
                continue;
            }
            _ => continue,
        }
        let (Ok(text), Some(label)) = (std::fs::read_to_string(&path), Label::new(name)) else { continue };
        out.insert(label, parse_registry_file(&path, &text));
    }
    Some(out)
}

/// Parses one registry file; bad lines are logged with their line number and skipped.
pub fn parse_registry_file(path: &FsPath, text: &str) -> EndpointSet {
    let mut endpoints = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(ep) => endpoints.push(ep),
            Err(why) => tracing::warn!(file = %path.display(), line = i + 1, "fs namer: {why}: {line:?}"),
        }
    }
    EndpointSet { endpoints }
}

fn parse_line(line: &str) -> Result<Endpoint, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr, rest) = match fields.as_slice() {
        [hp, rest @ ..] if hp.contains(':') && !hp.starts_with('[') && hp.matches(':').count() == 1 => {
            let (h, p) = hp.split_once(':').unwrap_or((hp, ""));
            (addr_of(h, p)?, rest)
        }
        [hp, rest @ ..] if hp.starts_with('[') => {
            let sa: SocketAddr = hp.parse().map_err(|_| "expected [ipv6]:port".to_string())?;
            (sa, rest)
        }
        [h, p, rest @ ..] => (addr_of(h, p)?, rest),
        _ => return Err("expected host:port".into()),
    };
    let weight = match rest {
        [] => 1.0,
        [w] => {
            let w = w.strip_prefix("weight=").unwrap_or(w);
            w.parse::<f64>().ok().filter(|w| w.is_finite() && *w >= 0.0).ok_or("bad weight")?
        }
        _ => return Err("unexpected fields after the weight".into()),
    };
    Ok(Endpoint { addr, weight })
}

fn addr_of(host: &str, port: &str) -> Result<SocketAddr, String> {
    let ip = parse_host(host).ok_or_else(|| format!("not an IP address: {host}"))?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("bad port: {port}"))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(text: &str) -> Vec<(String, f64)> {
        parse_registry_file(FsPath::new("t"), text)
            .endpoints
            .into_iter()
            .map(|e| (e.addr.to_string(), e.weight))
            .collect()
    }

    #[test]
    fn parses_both_line_shapes_weights_and_comments() {
        let text =
            "# forex-rate\n127.0.3.1:4140\n127.0.3.2 4140 0.5\n\n[::1]:80 weight=2\nbogus line here x\n127.0.3.3:0\n";
        assert_eq!(
            eps(text),
            vec![("127.0.3.1:4140".into(), 1.0), ("127.0.3.2:4140".into(), 0.5), ("[::1]:80".into(), 2.0)]
        );
    }

    #[test]
    fn names_appear_change_and_vanish() {
        let dir = std::env::temp_dir().join(format!("sy-fs-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let generation = Arc::new(AtomicU64::new(0));
        let namer = FsNamer::new(Path::read("/io.l5d.fs").unwrap(), dir.clone(), generation.clone());
        let prefix = Path::read("/#/io.l5d.fs").unwrap();
        let rest = Path::read("/forex-rate/extra").unwrap();
        let tree = |n: &FsNamer| match n.lookup(&prefix, &rest) {
            NamerAnswer::Ready(t) => t,
            NamerAnswer::Pending(_) => panic!("the fs namer never pends"),
        };
        assert_eq!(tree(&namer), NameTree::Neg);

        std::fs::write(dir.join("forex-rate"), "127.0.3.1:4140\n").unwrap();
        std::fs::write(dir.join(".forex-rate.tmp"), "ignored").unwrap();
        namer.apply(scan_dir(&dir));
        assert_eq!(generation.load(Ordering::Acquire), 1);
        let NameTree::Leaf(bound) = tree(&namer) else { panic!("expected bound") };
        assert_eq!(bound.id.to_string(), "/#/io.l5d.fs/forex-rate");
        assert_eq!(bound.residual.to_string(), "/extra");
        let v = bound.endpoints.version();

        std::fs::write(dir.join("forex-rate"), "127.0.3.1:4140\n127.0.3.2:4140\n").unwrap();
        namer.apply(scan_dir(&dir));
        assert_eq!(generation.load(Ordering::Acquire), 1, "address change must not force a re-bind");
        assert!(bound.endpoints.version() > v);
        assert_eq!(bound.endpoints.load().endpoints.len(), 2);

        std::fs::remove_file(dir.join("forex-rate")).unwrap();
        namer.apply(scan_dir(&dir));
        assert_eq!(generation.load(Ordering::Acquire), 2);
        assert_eq!(tree(&namer), NameTree::Neg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
