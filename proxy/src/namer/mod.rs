//! Namers: turn the concrete names a dtab produces (`/$/inet/…`, `/#/<prefix>/…`) into live endpoint sets.
//!
//! The dtab engine is pure; it asks [`NamerSet`] (through `switchyard_dtab::Namers`) what a path binds to *now*.
//! Each namer keeps its answers in memory, refreshed by its own background watch, so a lookup never does I/O.
//! Two kinds of change are distinguished, because they cost differently:
//! - a name's *existence* changes (a service appears or vanishes): the namer bumps the shared
//!   [`NamerSet::generation`], and routers re-bind cached names on their next request;
//! - a bound name's *addresses* change (an instance joins or leaves): only its [`EndpointWatch`] is updated, and the
//!   balancer picks the new set up on the next request, without re-binding.

pub mod consul;
pub mod fs;
pub mod inet;

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use switchyard_dtab::{bind, BindError, Dtab, Label, NameTree, NamerLookup, Namers, Path};

/// One address a bound name resolves to, with its load-balancer weight (1.0 unless the registry says otherwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: f64,
}

/// An immutable set of endpoints, replaced whole when the namer sees a change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointSet {
    pub endpoints: Vec<Endpoint>,
}

/// A live endpoint set: readers `load()` without locking; the owning namer `store()`s a new set.
#[derive(Debug, Default)]
pub struct EndpointWatch {
    current: ArcSwap<EndpointSet>,
    /// Bumped on every store, so a balancer can tell cheaply whether it must rebuild its endpoint list.
    version: AtomicU64,
}

impl EndpointWatch {
    /// A watch holding `set`.
    pub fn new(set: EndpointSet) -> Arc<Self> {
        Arc::new(Self { current: ArcSwap::from_pointee(set), version: AtomicU64::new(1) })
    }

    /// The current set.
    pub fn load(&self) -> Arc<EndpointSet> {
        self.current.load_full()
    }

    /// Version of the current set; changes whenever the set is replaced.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Replaces the set if it differs; returns whether it changed.
    pub fn store(&self, set: EndpointSet) -> bool {
        if **self.current.load() == set {
            return false;
        }
        self.current.store(Arc::new(set));
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }
}

/// A name a namer has bound: its identity (the concrete path that names it, used as the client's name in
/// metrics and `l5d-dst-client`), the unconsumed rest of the path, and its live endpoints.
#[derive(Clone)]
pub struct BoundName {
    pub id: Path,
    pub residual: Path,
    pub endpoints: Arc<EndpointWatch>,
    /// A `Host` to send instead of the caller's (the Consul namer's `setHost`); `None` keeps it.
    pub host: Option<Arc<str>>,
}

impl fmt::Debug for BoundName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        if !self.residual.is_empty() {
            write!(f, " (residual {})", self.residual)?;
        }
        Ok(())
    }
}

impl PartialEq for BoundName {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.residual == other.residual
    }
}

/// Resolves when a namer has its first answer for a name it was asked about.
pub type Ready = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A namer's answer for one name.
pub enum NamerAnswer {
    /// What the name binds to now.
    Ready(NameTree<BoundName>),
    /// The namer has just started watching the name and has no answer yet; the future resolves when it does.
    /// The router waits (bounded by its binding timeout) and binds again. When the first answer turns out to be
    /// bound, the namer must bump the generation, like any neg → bound transition.
    Pending(Ready),
}

/// A configured namer, addressed in dtabs as `/#/<prefix>/…`.
pub trait Namer: Send + Sync + 'static {
    /// The prefix it serves under `/#`, e.g. `/io.l5d.fs`.
    fn prefix(&self) -> &Path;
    /// Its kind, e.g. `io.l5d.fs`, for the admin API.
    fn kind(&self) -> &'static str;
    /// What `rest` (the path after `/#/<prefix>`) binds to now. `id_prefix` is `/#/<prefix>`.
    /// Must not block: answer from memory, and start a watch (returning `Pending`) for names not seen before.
    fn lookup(&self, id_prefix: &Path, rest: &Path) -> NamerAnswer;
    /// What `rest` binds to as far as the namer knows *now*, for explaining (the delegator): never starts a
    /// watch, never caches or touches anything. Names it has no answer for are Neg.
    fn peek(&self, id_prefix: &Path, rest: &Path) -> NameTree<BoundName>;
    /// A JSON summary of what the namer currently knows, for the admin API.
    fn state(&self) -> serde_json::Value;
}

/// The namers of one sidecar, shared by all its routers.
pub struct NamerSet {
    namers: Vec<(Path, Arc<dyn Namer>)>,
    generation: Arc<AtomicU64>,
    inet: inet::InetNamer,
}

impl NamerSet {
    /// A set over `namers`, all of which bump `generation` when a name appears or disappears.
    pub fn new(namers: Vec<Arc<dyn Namer>>, generation: Arc<AtomicU64>) -> Self {
        let hash = Label::new("#").expect("non-empty label");
        let mut namers: Vec<(Path, Arc<dyn Namer>)> = namers
            .into_iter()
            .map(|n| (Path::from_labels(std::iter::once(hash.clone())).concat(n.prefix()), n))
            .collect();
        // Longest prefix first, so `/#/io.l5d.fs/x` beats `/#/io.l5d.fs` when both are configured.
        namers.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Self { namers, generation, inet: inet::InetNamer::default() }
    }

    /// A counter bumped whenever any name's existence changes; bindings made at an older generation are stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The shared generation counter (given to namers so they can bump it).
    pub fn generation_handle(&self) -> Arc<AtomicU64> {
        self.generation.clone()
    }

    /// The configured namers with their `/#/…` prefixes.
    pub fn namers(&self) -> impl Iterator<Item = (&Path, &Arc<dyn Namer>)> {
        self.namers.iter().map(|(p, n)| (p, n))
    }
}

impl NamerSet {
    /// What an explanation sees: the namers' current answers, with no side effects.
    pub fn explaining(&self) -> Explaining<'_> {
        Explaining(self)
    }

    fn answer(&self, path: &Path) -> Option<NamerAnswer> {
        let labels = path.labels();
        match labels.first().map(|l| l.as_bytes()) {
            Some(b"$") if labels.get(1).map(|l| l.as_bytes()) == Some(b"inet") => {
                Some(NamerAnswer::Ready(self.inet.lookup(path)))
            }
            Some(b"#") => self
                .namers
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix))
                .map(|(prefix, namer)| namer.lookup(prefix, &path.drop(prefix.len()))),
            _ => None,
        }
    }

    /// Binds `path` under `dtab` with the namers' current answers. Names whose namer has no answer yet count as
    /// Neg in the tree and are returned as futures to wait for before binding again.
    pub fn bind(&self, dtab: &Dtab, path: &Path) -> (Result<NameTree<BoundName>, BindError>, Vec<Ready>) {
        let collecting = Collecting { set: self, pending: RefCell::new(Vec::new()) };
        let tree = bind(dtab, path, &collecting);
        (tree, collecting.pending.into_inner())
    }
}

/// The namers as the delegator sees them: what they know right now, through [`Namer::peek`] — explaining a path
/// never starts a watch or interns an address, so a flood of made-up paths costs nothing that lasts.
pub struct Explaining<'a>(&'a NamerSet);

impl Namers for Explaining<'_> {
    type Bound = BoundName;

    fn lookup(&self, path: &Path) -> NamerLookup<BoundName> {
        let labels = path.labels();
        match labels.first().map(|l| l.as_bytes()) {
            Some(b"$") if labels.get(1).map(|l| l.as_bytes()) == Some(b"inet") => {
                NamerLookup::Tree(inet::InetNamer::peek(path))
            }
            Some(b"#") => match self.0.namers.iter().find(|(prefix, _)| path.starts_with(prefix)) {
                Some((prefix, namer)) => NamerLookup::Tree(namer.peek(prefix, &path.drop(prefix.len()))),
                None => NamerLookup::NotMine,
            },
            _ => NamerLookup::NotMine,
        }
    }
}

/// One binding's view of the namers: pending answers are collected so the caller can wait for them.
struct Collecting<'a> {
    set: &'a NamerSet,
    pending: RefCell<Vec<Ready>>,
}

impl Namers for Collecting<'_> {
    type Bound = BoundName;

    fn lookup(&self, path: &Path) -> NamerLookup<BoundName> {
        match self.set.answer(path) {
            Some(NamerAnswer::Ready(tree)) => NamerLookup::Tree(tree),
            Some(NamerAnswer::Pending(ready)) => {
                self.pending.borrow_mut().push(ready);
                NamerLookup::Tree(NameTree::Neg)
            }
            None => NamerLookup::NotMine,
        }
    }
}
