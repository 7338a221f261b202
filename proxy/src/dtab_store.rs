//! Mesh-wide dtabs: a router whose dtab lives in a shared store (a Consul KV key or a file) that every sidecar
//! watches, so one write reroutes the whole mesh.
//!
//! The store is the source of truth; the router's configured `dtab` is only the fallback until the store first
//! answers (or while the key does not exist). Every good version the watch sees goes through the router's one
//! dtab writer ([`DtabTable::write`]); a version equal to the dtab in force changes nothing (no generation bump). A
//! malformed dtab in the store is refused locally: the last good dtab stays, and the error is counted in
//! `switchyard_dtab_store_errors_total`, logged, and shown by the admin API.
//!
//! `PUT /dtab/<label>` on a store-backed router writes through (`Router::write_dtab` sends it here): `If-Match`
//! (the router's current ETag, checked by the table's one If-Match rule) becomes a
//! check-and-set against the store version that dtab came from — Consul KV `?cas=<ModifyIndex>`, or for a file
//! a compare-and-rename under a lock file — so two operators cannot silently overwrite each other.

use std::hash::{Hash, Hasher};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::IntCounterVec;
use serde::Deserialize;
use switchyard_dtab::Dtab;

use crate::config::DtabStoreConfig;
use crate::consul::{base64_decode, encode_component, ConsulClient, Watcher};
use crate::metrics::{names, Registry};
use crate::router::table::{check_if_match, DtabTable, DtabWriteError, RoutingTable};

/// How often a file store is re-read.
pub const FILE_POLL: Duration = Duration::from_millis(250);

/// The store's version of the dtab (what check-and-set compares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// Not read yet.
    Unknown,
    /// The key or file does not exist.
    Missing,
    /// Consul KV `ModifyIndex`, or a hash of the file's bytes.
    At(u64),
}

enum Backend {
    // Boxed: the client is large next to a path.
    Consul { client: Box<ConsulClient>, key: String },
    File { path: PathBuf },
}

struct StoreState {
    /// The latest version seen in the store, good or not: what a write must replace.
    seen: Version,
    last_good: Option<Instant>,
    last_error: Option<String>,
}

/// A router's shared dtab store and its watch.
pub struct DtabStore {
    /// The router's label (metrics, logs).
    label: Arc<str>,
    /// The router's table: what the store's dtab is written into.
    table: Arc<DtabTable>,
    backend: Backend,
    state: Mutex<StoreState>,
    errors: IntCounterVec,
    answered: tokio::sync::watch::Sender<bool>,
    /// Serialises this sidecar's writers (the store's own check-and-set guards against other sidecars).
    writing: tokio::sync::Mutex<()>,
}

/// The family every store of a sidecar counts its errors in.
pub fn error_metric(r: &Registry) -> IntCounterVec {
    r.int_counter_vec(
        names::DTAB_STORE_ERRORS,
        "Dtab store problems by reason (invalid dtab, unavailable store).",
        &["router", "reason"],
    )
}

impl DtabStore {
    /// Starts watching the store for router `label`, whose dtab lives in `table`.
    pub fn start(label: Arc<str>, table: Arc<DtabTable>, config: &DtabStoreConfig, errors: IntCounterVec) -> Arc<Self> {
        let backend = match config {
            DtabStoreConfig::Consul { host, port, token, tls, key, consistency_mode } => Backend::Consul {
                client: Box::new(ConsulClient::new(host, *port, token.clone(), *consistency_mode, tls.as_deref())),
                key: key.clone(),
            },
            DtabStoreConfig::File { path } => Backend::File { path: path.clone() },
        };
        let store = Arc::new(Self {
            label,
            table,
            backend,
            state: Mutex::new(StoreState { seen: Version::Unknown, last_good: None, last_error: None }),
            errors,
            answered: tokio::sync::watch::channel(false).0,
            writing: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&store);
        match &store.backend {
            Backend::Consul { .. } => tokio::spawn(watch_consul(weak)),
            Backend::File { .. } => tokio::spawn(watch_file(weak)),
        };
        store
    }

    /// The router label this store serves.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Waits (at most `limit`) for the store's first answer, so a starting sidecar serves the mesh-wide dtab.
    pub async fn first_answer(&self, limit: Duration) {
        let mut rx = self.answered.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|a| *a)).await;
    }

    /// The last problem with the store, if it is not resolved yet.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// What the admin API shows about the store.
    pub fn state_json(&self) -> serde_json::Value {
        let st = self.lock();
        let (kind, location) = match &self.backend {
            Backend::Consul { client, key } => ("io.l5d.consul", format!("{}/v1/kv/{key}", client.base())),
            Backend::File { path } => ("io.l5d.fs", path.display().to_string()),
        };
        let version = match st.seen {
            Version::Unknown => serde_json::Value::Null,
            Version::Missing => serde_json::json!("missing"),
            Version::At(v) => serde_json::json!(v),
        };
        serde_json::json!({
            "kind": kind,
            "location": location,
            "version": version,
            // 0 while the backend answers; during an outage, the age of the last good answer.
            "stalenessSeconds": match (&st.last_error, st.last_good) {
                (None, Some(_)) => Some(0.0),
                (_, t) => t.map(|t| t.elapsed().as_secs_f64()),
            },
            "error": st.last_error,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds in what the store holds now: `None` = no such key/file (the dtab in force stays).
    fn offer(&self, text: Option<&str>, version: Version) {
        let changed = {
            let mut st = self.lock();
            let changed = st.seen != version;
            st.seen = version;
            st.last_good = Some(Instant::now());
            changed
        };
        if let Some(text) = text {
            match Dtab::parse(text) {
                Ok(dtab) => {
                    if dtab != self.table.current().dtab {
                        tracing::info!(router = %self.label, "dtab store: new dtab");
                        let _ = self.table.write(dtab, None);
                    }
                    self.lock().last_error = None;
                }
                Err(e) if changed => {
                    let message = format!("malformed dtab in the store (kept the last good one): {e}");
                    tracing::warn!(router = %self.label, "{message}");
                    self.errors.with_label_values(&[&self.label, "invalid"]).inc();
                    self.table.record_invalid();
                    self.lock().last_error = Some(message);
                }
                Err(_) => {}
            }
        } else {
            self.lock().last_error = None;
        }
        self.answered.send_replace(true);
    }

    fn failed(&self, error: &str) {
        self.errors.with_label_values(&[&self.label, "unavailable"]).inc();
        let mut st = self.lock();
        if st.last_error.as_deref() != Some(error) {
            tracing::warn!(router = %self.label, error, "dtab store unavailable; keeping the dtab in force");
        }
        st.last_error = Some(error.to_string());
    }

    /// Writes `dtab` through to the store (check-and-set when `if_match` is given) and applies it here.
    pub async fn write(&self, dtab: Dtab, if_match: Option<&str>) -> Result<Arc<RoutingTable>, DtabWriteError> {
        let _writer = self.writing.lock().await;
        let current = self.table.current();
        if let Err(stale) = check_if_match(&current, if_match) {
            self.table.record_conflict();
            return Err(stale);
        }
        let if_match = if_match.map(str::trim).filter(|t| *t != "*");
        let seen = self.lock().seen;
        let text = dtab.pretty();
        let written = match &self.backend {
            Backend::Consul { client, key } => self.write_consul(client, key, &text, if_match.map(|_| seen)).await,
            Backend::File { path } => {
                let (path, text2) = (path.clone(), text.clone());
                let expect = if_match.map(|_| seen);
                tokio::task::spawn_blocking(move || write_file(&path, &text2, expect))
                    .await
                    .unwrap_or_else(|e| Err(DtabWriteError::Unavailable(e.to_string())))
            }
        };
        match written {
            Ok(version) => self.offer(Some(&text), version),
            Err(DtabWriteError::Stale { .. }) => {
                self.table.record_conflict();
                return Err(DtabWriteError::Stale { current: current.etag.clone() });
            }
            Err(e) => return Err(e),
        }
        Ok(self.table.current())
    }

    async fn write_consul(
        &self,
        client: &ConsulClient,
        key: &str,
        text: &str,
        expect: Option<Version>,
    ) -> Result<Version, DtabWriteError> {
        let key_path = kv_path(key);
        let cas = match expect {
            None => String::new(),
            Some(Version::At(index)) => format!("?cas={index}"),
            Some(Version::Missing) => "?cas=0".to_string(),
            Some(Version::Unknown) => {
                return Err(DtabWriteError::Unavailable("the store has not been read yet; retry".into()))
            }
        };
        let unavailable = |e: String| DtabWriteError::Unavailable(format!("consul KV {key}: {e}"));
        let answer = client
            .put(&format!("{key_path}{cas}"), Bytes::from(text.to_string()))
            .await
            .map_err(|e| unavailable(e.0))?;
        if !answer.status.is_success() {
            return Err(unavailable(format!("{} {}", answer.status, String::from_utf8_lossy(&answer.body).trim())));
        }
        if answer.body.as_ref() != b"true" {
            return Err(DtabWriteError::Stale { current: String::new() });
        }
        // Learn the new ModifyIndex so the next check-and-set compares against our own write.
        match client.get(&key_path, None).await.map(|a| read_kv(&a)) {
            Ok(Ok((Some(_), version))) => Ok(version),
            _ => Ok(Version::Unknown),
        }
    }
}

fn kv_path(key: &str) -> String {
    let encoded: Vec<String> = key.split('/').map(|seg| encode_component(seg.as_bytes())).collect();
    format!("/v1/kv/{}", encoded.join("/"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    #[serde(default)]
    value: Option<String>,
    modify_index: u64,
}

/// A KV answer: the value's text (`None` for a missing key) and its version.
fn read_kv(answer: &crate::consul::Answer) -> Result<(Option<String>, Version), String> {
    if answer.status == http::StatusCode::NOT_FOUND {
        return Ok((None, Version::Missing));
    }
    if !answer.status.is_success() {
        return Err(format!("consul answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body).trim()));
    }
    let pairs: Vec<KvPair> = serde_json::from_slice(&answer.body).map_err(|e| format!("unreadable KV answer: {e}"))?;
    let pair = pairs.into_iter().next().ok_or("empty KV answer")?;
    let bytes = base64_decode(pair.value.as_deref().unwrap_or("")).ok_or("KV value is not base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "KV value is not UTF-8")?;
    Ok((Some(text), Version::At(pair.modify_index)))
}

async fn watch_consul(store: std::sync::Weak<DtabStore>) {
    let mut watcher = Watcher::default();
    loop {
        let Some(s) = store.upgrade() else { return };
        let Backend::Consul { client, key } = &s.backend else {
            return;
        };
        let result = client.get(&kv_path(key), Some((watcher.index(), crate::consul::DEFAULT_WAIT))).await;
        let delay = match result.map_err(|e| e.0).and_then(|a| read_kv(&a).map(|kv| (a.index, kv))) {
            Ok((consul_index, (text, version))) => {
                s.offer(text.as_deref(), version);
                watcher.answered(consul_index).1
            }
            Err(e) => {
                s.failed(&e);
                Some(watcher.failed())
            }
        };
        drop(s);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }
}

async fn watch_file(store: std::sync::Weak<DtabStore>) {
    loop {
        let Some(s) = store.upgrade() else { return };
        let Backend::File { path } = &s.backend else {
            return;
        };
        let path = path.clone();
        match tokio::task::spawn_blocking(move || read_file(&path)).await {
            Ok(Ok((text, version))) => {
                if s.lock().seen != version || !*s.answered.borrow() {
                    s.offer(text.as_deref(), version);
                }
            }
            Ok(Err(e)) => s.failed(&e),
            Err(e) => s.failed(&e.to_string()),
        }
        drop(s);
        tokio::time::sleep(FILE_POLL).await;
    }
}

fn hash_of(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn read_file(path: &FsPath) -> Result<(Option<String>, Version), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let v = Version::At(hash_of(&text));
            Ok((Some(text), v))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, Version::Missing)),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Compare-and-rename under `<file>.lock`: replaces the file only if it still holds version `expect`.
fn write_file(path: &FsPath, text: &str, expect: Option<Version>) -> Result<Version, DtabWriteError> {
    let unavailable = |e: std::io::Error| DtabWriteError::Unavailable(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
    }
    let lock = path.with_extension("lock");
    let _lock = FileLock::acquire(&lock).map_err(unavailable)?;
    if let Some(expect) = expect {
        let (_, now) = read_file(path).map_err(DtabWriteError::Unavailable)?;
        if now != expect {
            return Err(DtabWriteError::Stale { current: String::new() });
        }
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("dtab");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(unavailable)?;
    std::fs::rename(&tmp, path).map_err(unavailable)?;
    Ok(Version::At(hash_of(text)))
}

/// An exclusive lock file, removed on drop; a lock older than [`FileLock::STALE`] is a crashed writer's.
struct FileLock(PathBuf);

impl FileLock {
    const STALE: Duration = Duration::from_secs(5);

    fn acquire(path: &FsPath) -> std::io::Result<Self> {
        for _ in 0..200 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => return Ok(Self(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > Self::STALE) {
                        let _ = std::fs::remove_file(path);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "dtab store lock is held"))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_compare_and_rename_refuses_a_stale_version() {
        let dir = std::env::temp_dir().join(format!("sy-store-{}-{}", std::process::id(), fastrand::u64(..)));
        let file = dir.join("egress");
        let v1 = write_file(&file, "/svc => /#/io.l5d.fs;", Some(Version::Missing)).unwrap();
        assert_eq!(read_file(&file).unwrap().1, v1);
        assert_eq!(
            write_file(&file, "/a => /b;", Some(Version::Missing)),
            Err(DtabWriteError::Stale { current: String::new() })
        );
        let v2 = write_file(&file, "/a => /b;", Some(v1)).unwrap();
        assert_ne!(v1, v2);
        assert_eq!(write_file(&file, "/c => /d;", Some(v1)), Err(DtabWriteError::Stale { current: String::new() }));
        assert!(!file.with_extension("lock").exists(), "the lock is released");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kv_answers_decode() {
        let answer = |status: u16, body: &str| crate::consul::Answer {
            status: http::StatusCode::from_u16(status).unwrap(),
            index: Some(5),
            body: Bytes::from(body.to_string()),
        };
        let ok = answer(200, r#"[{"Key":"k","Value":"L3N2YyA9PiAvIy9pby5sNWQuZnM7","ModifyIndex":42}]"#);
        assert_eq!(read_kv(&ok).unwrap(), (Some("/svc => /#/io.l5d.fs;".into()), Version::At(42)));
        assert_eq!(read_kv(&answer(404, "")).unwrap(), (None, Version::Missing));
        assert!(read_kv(&answer(500, "no leader")).is_err());
        assert_eq!(kv_path("switchyard/dtabs/egress"), "/v1/kv/switchyard/dtabs/egress");
    }
}
