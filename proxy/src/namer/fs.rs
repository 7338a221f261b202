//! `io.l5d.fs`: a watched directory with one file per service name — the embedded default registry.
//!
//! `/#/io.l5d.fs/<name>/<rest…>` binds to the endpoints listed in `<rootDir>/<name>`; `<rest>` is the residual.
//! Each line is `host:port` or `host port`, optionally followed by a weight (`127.0.3.1:4140 0.5`); blank lines
//! and `#` comments are skipped, and a bad line is logged and skipped rather than poisoning the whole file.
//! A missing file is Neg (so `|` falls through); a file with no addresses binds to an empty set (503).
//! Dot-files are ignored, so writers can create `.name.tmp` and rename it into place atomically.
//! A file is re-parsed (and its bad lines warned about) only when its content changes; a file that cannot be read
//! (permissions, not UTF-8, a symlink leading out of `rootDir`) is warned about once and keeps the name's last
//! known endpoints.
//!
//! The directory is re-scanned every [`POLL_INTERVAL`] on the blocking pool: polling a handful of small files
//! is cheaper and more portable than inotify, and it survives the directory being deleted and recreated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// What the last scan saw of each file (so unchanged files are not re-parsed or re-warned about).
    last_scan: Mutex<Scan>,
}

/// What a scan saw of one file: a fingerprint of its content (or of the problem reading it) and its endpoints
/// (`None`: unreadable and never read before).
#[derive(Clone)]
struct FileState {
    fingerprint: u64,
    set: Option<EndpointSet>,
}

type Scan = HashMap<Label, FileState>;

impl FsNamer {
    /// A namer over `root`, scanned once now so it can answer before its watch task runs.
    pub fn new(prefix: Path, root: PathBuf, generation: Arc<AtomicU64>) -> Arc<Self> {
        let namer = Arc::new(Self { prefix, root, names: ArcSwap::default(), generation, last_scan: Mutex::default() });
        namer.rescan();
        namer
    }

    /// Scans the directory now (on this thread) and applies what changed.
    fn rescan(&self) {
        let previous = self.last_scan.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.apply(scan_dir(&self.root, &previous));
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
                let previous = namer.last_scan.lock().unwrap_or_else(|e| e.into_inner()).clone();
                match tokio::task::spawn_blocking(move || scan_dir(&root, &previous)).await {
                    Ok(scan) => namer.apply(scan),
                    Err(e) => tracing::warn!(error = %e, "fs namer scan task failed"),
                }
            }
        });
    }

    /// Folds a directory scan into the live state; bumps the generation if a name appeared or vanished.
    fn apply(&self, scan: Option<Scan>) {
        // An unreadable directory keeps the last known state: better stale routes than none.
        let Some(scan) = scan else { return };
        let sets: Vec<(Label, EndpointSet)> =
            scan.iter().filter_map(|(name, f)| Some((name.clone(), f.set.clone()?))).collect();
        *self.last_scan.lock().unwrap_or_else(|e| e.into_inner()) = scan;
        let current = self.names.load();
        let mut next = HashMap::with_capacity(sets.len());
        let mut existence_changed = sets.len() != current.len();
        for (name, set) in sets {
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
        NamerAnswer::Ready(self.peek(id_prefix, rest))
    }

    fn peek(&self, id_prefix: &Path, rest: &Path) -> NameTree<BoundName> {
        let Some(name) = rest.labels().first() else { return NameTree::Neg };
        match self.names.load().get(name) {
            Some(watch) => NameTree::Leaf(BoundName {
                id: id_prefix.append(name.clone()),
                residual: rest.drop(1),
                endpoints: watch.clone(),
                host: None,
            }),
            None => NameTree::Neg,
        }
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

/// Reads every registry file in `root`; `None` if the directory itself cannot be read. Files whose content is
/// unchanged since `previous` are not parsed again; problems are logged once per change.
fn scan_dir(root: &FsPath, previous: &Scan) -> Option<Scan> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(root = %root.display(), error = %e, "fs namer: cannot read directory");
            return None;
        }
    };
    let canonical_root = std::fs::canonicalize(root).ok()?;
    let mut out = HashMap::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else { continue };
        let Some(label) = Label::new(name).filter(|_| !name.starts_with('.')) else { continue };
        let path = entry.path();
        let state = match read_registry_file(&canonical_root, &path) {
            Ok(None) => continue,
            Ok(Some(bytes)) => {
                let fingerprint = crate::fnv1a(&bytes);
                match previous.get(&label) {
                    Some(prev) if prev.fingerprint == fingerprint => prev.clone(),
                    _ => match String::from_utf8(bytes) {
                        Ok(text) => FileState { fingerprint, set: Some(parse_registry_file(&path, &text)) },
                        Err(_) => problem(&path, previous.get(&label), "not UTF-8 text".into()),
                    },
                }
            }
            Err(why) => problem(&path, previous.get(&label), why),
        };
        out.insert(label, state);
    }
    Some(out)
}

/// A file that cannot be used: warned about once (per distinct problem), keeping the name's last known endpoints.
fn problem(path: &FsPath, previous: Option<&FileState>, why: String) -> FileState {
    let fingerprint = crate::fnv1a(why.as_bytes()) ^ 0x5bd1_e995;
    match previous {
        Some(prev) if prev.fingerprint == fingerprint => prev.clone(),
        _ => {
            let kept = previous.and_then(|p| p.set.clone());
            let what = if kept.is_some() { "keeping its last known endpoints" } else { "name left out" };
            tracing::warn!(file = %path.display(), "fs namer: cannot use file: {why}; {what}");
            FileState { fingerprint, set: kept }
        }
    }
}

/// The bytes of one registry file; `Ok(None)` for what is not a registry file (a directory); `Err` why a file
/// cannot be used — unreadable, too large, or a symlink leading out of `rootDir`.
fn read_registry_file(canonical_root: &FsPath, path: &FsPath) -> Result<Option<Vec<u8>>, String> {
    let link = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if link.file_type().is_symlink() {
        let target = std::fs::canonicalize(path).map_err(|e| format!("broken symlink: {e}"))?;
        if !target.starts_with(canonical_root) {
            return Err(format!("a symlink to {} (outside rootDir) is not followed", target.display()));
        }
    }
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {} KiB", MAX_FILE_BYTES / 1024));
    }
    std::fs::read(path).map(Some).map_err(|e| e.to_string())
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
        namer.rescan();
        assert_eq!(generation.load(Ordering::Acquire), 1);
        let NameTree::Leaf(bound) = tree(&namer) else { panic!("expected bound") };
        assert_eq!(bound.id.to_string(), "/#/io.l5d.fs/forex-rate");
        assert_eq!(bound.residual.to_string(), "/extra");
        let v = bound.endpoints.version();

        std::fs::write(dir.join("forex-rate"), "127.0.3.1:4140\n127.0.3.2:4140\n").unwrap();
        namer.rescan();
        assert_eq!(generation.load(Ordering::Acquire), 1, "address change must not force a re-bind");
        assert!(bound.endpoints.version() > v);
        assert_eq!(bound.endpoints.load().endpoints.len(), 2);

        std::fs::remove_file(dir.join("forex-rate")).unwrap();
        namer.rescan();
        assert_eq!(generation.load(Ordering::Acquire), 2);
        assert_eq!(tree(&namer), NameTree::Neg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_files_keep_the_last_endpoints_and_symlinks_stay_inside_root_dir() {
        let base = std::env::temp_dir().join(format!("sy-fs-link-{}-{}", std::process::id(), fastrand::u64(..)));
        let (dir, outside) = (base.join("root"), base.join("secret"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&outside, "10.9.9.9:22\n").unwrap();
        std::fs::write(dir.join("inside-target"), "127.0.0.1:80\n").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
        std::os::unix::fs::symlink(dir.join("inside-target"), dir.join("alias")).unwrap();
        std::fs::write(dir.join("forex-rate"), "127.0.3.1:4140\n").unwrap();
        let namer = FsNamer::new(Path::read("/io.l5d.fs").unwrap(), dir.clone(), Arc::new(AtomicU64::new(0)));
        let names = namer.names.load();
        assert!(!names.contains_key(&Label::new("escape").unwrap()), "a symlink out of rootDir is not followed");
        assert!(names.contains_key(&Label::new("alias").unwrap()), "a symlink inside rootDir is");

        // Not UTF-8: the name keeps what it had, and the scan after that changes nothing (warned once).
        std::fs::write(dir.join("forex-rate"), [0xff, 0xfe, b'\n']).unwrap();
        namer.rescan();
        let fr = Label::new("forex-rate").unwrap();
        let eps = namer.names.load().get(&fr).map(|w| w.load().endpoints.len());
        assert_eq!(eps, Some(1), "the last known endpoints stay");
        let seen = namer.last_scan.lock().unwrap().get(&fr).map(|f| f.fingerprint);
        namer.rescan();
        assert_eq!(namer.last_scan.lock().unwrap().get(&fr).map(|f| f.fingerprint), seen);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
