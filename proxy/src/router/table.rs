//! A router's routing table: the dtab in force as an immutable snapshot with its binding cache, and its one
//! writer.
//!
//! [`RoutingTable`] is swapped whole (arc-swap) when the dtab changes; a request holds the `Arc` it loaded, so it
//! finishes on the table it started with. Each table caches, per logical name, the binding with its balancers
//! resolved; a cached binding is re-made when the namers' generation moves (a name appeared or vanished), which is
//! how `|` fallback follows the registry live. Readers never lock: the cache is a copy-on-write map.
//!
//! [`DtabTable::write`] is the only way a dtab changes, whoever asks (the admin API, a shared dtab store), and
//! [`check_if_match`] is the only place `If-Match` is compared — for local writes and writes through a store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use switchyard_dtab::{Dtab, Path};

use super::bind::{binds_something, Binder, Binding, MAX_CACHED_NAMES};
use crate::metrics::{names, Registry};

/// The dtab families: generation per router and update attempts by result.
#[derive(Clone)]
pub struct TableFamilies {
    generation: prometheus::IntGaugeVec,
    updates: IntCounterVec,
}

impl TableFamilies {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        Self {
            generation: r.int_gauge_vec(
                names::DTAB_GENERATION,
                "Generation of the router's dtab; bumps on every accepted change.",
                &["router"],
            ),
            updates: r.int_counter_vec(names::DTAB_UPDATES, "Dtab update attempts by result.", &["router", "result"]),
        }
    }
}

/// An immutable routing snapshot: the dtab, its generation and version tag, and its binding cache.
pub struct RoutingTable {
    pub dtab: Dtab,
    pub generation: u64,
    pub etag: String,
    cache: ArcSwap<HashMap<Path, Arc<Binding>>>,
}

impl std::fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoutingTable(generation {}, {})", self.generation, self.etag)
    }
}

impl RoutingTable {
    /// A table for `dtab` at `generation`.
    pub fn new(dtab: Dtab, generation: u64) -> Self {
        let etag = etag_of(&dtab);
        Self { dtab, generation, etag, cache: ArcSwap::default() }
    }

    /// The binding for `path`, from the cache when it is still current.
    pub async fn binding(
        &self,
        path: &Path,
        binder: &Binder,
        caller_deadline: Option<tokio::time::Instant>,
    ) -> Arc<Binding> {
        let generation = binder.namer_generation();
        let cache = self.cache.load();
        if let Some(b) = cache.get(path).filter(|b| b.namer_generation == generation) {
            return b.clone();
        }
        let cacheable = cache.contains_key(path) || cache.len() < MAX_CACHED_NAMES;
        drop(cache);
        let label = if cacheable { path.to_string() } else { "overflow".to_string() };
        let binding = Arc::new(binder.resolve(&self.dtab, path, &label, caller_deadline).await);
        // Names that bind to nothing are cached too (so a repeated unknown name costs no re-binding), but they fill
        // at most half the cache: a flood of made-up names cannot keep real ones out.
        let negatives_full = || {
            !binds_something(&binding.tree)
                && self.cache.load().values().filter(|b| !binds_something(&b.tree)).count() >= MAX_CACHED_NAMES / 2
        };
        if cacheable && !binding.incomplete && !negatives_full() {
            // Copy-on-write: rare (first request for a name, or after a registry change), and readers never lock.
            self.cache.rcu(|old| {
                let mut next = HashMap::clone(old);
                next.insert(path.clone(), binding.clone());
                next
            });
        }
        binding
    }
}

/// A strong ETag for a dtab: a hash of its canonical text, so equal dtabs have equal tags across restarts.
pub fn etag_of(dtab: &Dtab) -> String {
    format!("\"{:016x}\"", crate::fnv1a(dtab.to_string().as_bytes()))
}

/// Why a dtab write was refused.
#[derive(Debug, PartialEq)]
pub enum DtabWriteError {
    /// `If-Match` named a version that is no longer current (or the shared store changed since it was read).
    Stale { current: String },
    /// The router's shared dtab store could not be read or written; nothing changed.
    Unavailable(String),
}

/// The `If-Match` rule: absent or `*` matches anything, otherwise it must name `current`'s version.
pub fn check_if_match(current: &RoutingTable, if_match: Option<&str>) -> Result<(), DtabWriteError> {
    match if_match.map(str::trim) {
        None | Some("*") => Ok(()),
        Some(tag) if tag == current.etag => Ok(()),
        Some(_) => Err(DtabWriteError::Stale { current: current.etag.clone() }),
    }
}

/// The routing table in force and its one writer.
pub struct DtabTable {
    router: Arc<str>,
    current: ArcSwap<RoutingTable>,
    /// Serialises writers so If-Match is a true compare-and-swap; readers never take it.
    write_lock: Mutex<()>,
    generation: IntGauge,
    ok: IntCounter,
    conflict: IntCounter,
    invalid: IntCounter,
}

impl DtabTable {
    /// A table holding `dtab` at generation 1.
    pub fn new(router: Arc<str>, dtab: Dtab, families: &TableFamilies) -> Self {
        let generation = families.generation.with_label_values(&[&router]);
        generation.set(1);
        let updates = |result: &str| families.updates.with_label_values(&[&router, result]);
        Self {
            current: ArcSwap::from_pointee(RoutingTable::new(dtab, 1)),
            write_lock: Mutex::new(()),
            generation,
            ok: updates("ok"),
            conflict: updates("conflict"),
            invalid: updates("invalid"),
            router,
        }
    }

    /// The table in force.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Replaces the dtab atomically when `if_match` allows (else nothing changes); returns the new table.
    pub fn write(&self, dtab: Dtab, if_match: Option<&str>) -> Result<Arc<RoutingTable>, DtabWriteError> {
        let _writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        if let Err(e) = check_if_match(&current, if_match) {
            self.conflict.inc();
            return Err(e);
        }
        let next = Arc::new(RoutingTable::new(dtab, current.generation + 1));
        self.current.store(next.clone());
        self.generation.set(next.generation as i64);
        self.ok.inc();
        tracing::info!(router = %self.router, generation = next.generation, dtab = %next.dtab, "dtab replaced");
        Ok(next)
    }

    /// Counts a write refused by a check-and-set against a shared store.
    pub fn record_conflict(&self) {
        self.conflict.inc();
    }

    /// Counts a rejected (malformed) dtab.
    pub fn record_invalid(&self) {
        self.invalid.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (DtabTable, Registry) {
        let r = Registry::empty();
        let t = DtabTable::new(
            "egress".into(),
            Dtab::parse("/svc=>/$/inet/127.0.0.1/1").unwrap(),
            &TableFamilies::register(&r),
        );
        (t, r)
    }

    #[test]
    fn if_match_is_a_compare_and_swap() {
        let (t, r) = table();
        let first = t.current();
        let next = Dtab::parse("/svc=>/$/inet/127.0.0.1/2").unwrap();
        let stale = t.write(next.clone(), Some("\"0000\"")).unwrap_err();
        assert_eq!(stale, DtabWriteError::Stale { current: first.etag.clone() });
        assert_eq!(t.current().generation, 1, "a refused write changes nothing");
        let second = t.write(next, Some(&first.etag)).unwrap();
        assert_eq!(second.generation, 2);
        assert!(t.write(Dtab::empty(), Some(&first.etag)).is_err(), "the old version no longer matches");
        assert!(t.write(Dtab::empty(), Some(" * ")).is_ok());
        let text = r.render();
        assert!(text.contains("switchyard_dtab_generation{router=\"egress\"} 3"), "{text}");
        assert!(text.contains("result=\"conflict\",router=\"egress\"} 2"), "{text}");
    }

    #[test]
    fn equal_dtabs_have_equal_etags() {
        let a = Dtab::parse("/svc => /#/io.l5d.fs ;").unwrap();
        let b = Dtab::parse("/svc=>/#/io.l5d.fs").unwrap();
        assert_eq!(etag_of(&a), etag_of(&b));
        assert_ne!(etag_of(&a), etag_of(&Dtab::empty()));
    }
}
