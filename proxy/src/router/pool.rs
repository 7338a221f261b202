//! The HTTP/1.1 connection pool of one endpoint: at most `maxSize` connections, a bounded FIFO queue of requests
//! waiting for one, paced connection setup, and idle connections closed after `idleTimeMs` (down to `minSize`).
//!
//! linkerd 1's `hostConnectionPool`, with HAProxy's per-server queue as the model for a burst: when every
//! connection is busy, a request waits (bounded by its deadline, and by `maxWaiters` others waiting) for the
//! first connection to come free instead of opening yet another one — so a spike of thousands of concurrent
//! callers reaches the app as at most `maxSize` connections, never as a connect stampede that overflows its
//! accept backlog. At most [`MAX_CONNECTING`] connections are being set up at once; requests beyond that wait
//! too, and take whichever comes first: a connection handed back or a turn to connect.
//!
//! A connection counts against `maxSize` from the moment its setup is granted until its I/O task ends; a
//! connection handed back goes straight to the longest waiter, else to the idle stack (LIFO, so the warmest
//! connections are reused and the coldest expire).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hyper::client::conn::http1;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::body::ReqBody;
use crate::config::PoolLimits;
use crate::metrics::{names, Registry};

/// Connections being set up at once per endpoint, at most: a burst opens connections a few at a time.
pub const MAX_CONNECTING: usize = 8;

/// A sender half of a pooled HTTP/1.1 connection.
pub type Sender = http1::SendRequest<ReqBody>;

/// The pool families: connections open and requests queued per endpoint, queue waits and refusals per router.
#[derive(Clone)]
pub struct PoolFamilies {
    connections: IntGaugeVec,
    waiters: IntGaugeVec,
    wait: HistogramVec,
    rejected: IntCounterVec,
}

impl PoolFamilies {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        let re = &["router", "endpoint"];
        Self {
            connections: r.int_gauge_vec(
                names::ENDPOINT_CONNECTIONS,
                "Upstream connections open (or being set up) per endpoint.",
                re,
            ),
            waiters: r.int_gauge_vec(
                names::ENDPOINT_POOL_WAITERS,
                "Requests waiting for an upstream connection of the endpoint (hostConnectionPool queue).",
                re,
            ),
            wait: r.latency_vec(
                names::ENDPOINT_POOL_WAIT,
                "How long requests that found every connection busy waited for one.",
                &["router"],
            ),
            rejected: r.int_counter_vec(
                names::ENDPOINT_POOL_REJECTED,
                "Requests refused at once because maxWaiters requests already waited for a connection.",
                &["router"],
            ),
        }
    }

    /// One endpoint's series.
    pub fn endpoint(&self, router: &str, endpoint: &str) -> PoolMetrics {
        PoolMetrics {
            connections: self.connections.with_label_values(&[router, endpoint]),
            waiters: self.waiters.with_label_values(&[router, endpoint]),
            wait: self.wait.with_label_values(&[router]),
            rejected: self.rejected.with_label_values(&[router]),
        }
    }

    /// Removes one endpoint's series.
    pub fn remove(&self, router: &str, endpoint: &str) {
        let _ = self.connections.remove_label_values(&[router, endpoint]);
        let _ = self.waiters.remove_label_values(&[router, endpoint]);
    }
}

/// One endpoint's pool series.
pub struct PoolMetrics {
    connections: IntGauge,
    waiters: IntGauge,
    wait: Histogram,
    rejected: IntCounter,
}

/// What a waiting request is given.
enum Grant {
    /// A connection handed back by the request before it.
    Conn(Sender),
    /// A turn to set up a new connection.
    Connect(ConnectPermit),
    /// Setting up a connection failed and none is open: waiting longer is pointless.
    Failed(String),
    /// The endpoint turned out to speak HTTP/2: use its shared connection.
    Upgraded,
}

/// What [`H1Pool::checkout`] found.
pub enum Checkout {
    /// An idle connection, ready for a request.
    Idle(Sender),
    /// No idle connection, but room for another: set it up with this permit.
    Connect(ConnectPermit),
    /// Every connection is busy: wait with [`Waiter::wait`].
    Wait(Waiter),
    /// Every connection is busy and `maxWaiters` requests already wait.
    Full,
}

/// What a waiting request ends up with.
pub enum Waited {
    Conn(Sender),
    Connect(ConnectPermit),
    Failed(String),
    Upgraded,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    /// Connections open or being set up (what `maxSize` bounds).
    open: usize,
    /// Of those, being set up.
    connecting: usize,
    waiters: VecDeque<oneshot::Sender<Grant>>,
    /// Whether a task is closing expired idle connections.
    reaping: bool,
    /// The endpoint is gone: connections handed back are closed, none is kept idle.
    shut: bool,
}

/// One endpoint's HTTP/1.1 connections.
pub struct H1Pool {
    limits: PoolLimits,
    idle_timeout: Duration,
    state: Mutex<State>,
    metrics: PoolMetrics,
}

impl H1Pool {
    /// An empty pool.
    pub fn new(limits: PoolLimits, idle_timeout: Duration, metrics: PoolMetrics) -> Arc<Self> {
        Arc::new(Self { limits, idle_timeout, state: Mutex::new(State::default()), metrics })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more connection open (or being set up).
    fn add_open(&self, state: &mut State) {
        state.open += 1;
        self.metrics.connections.inc();
        crate::memory::connection_opened();
    }

    /// Counts one connection fewer.
    fn sub_open(&self, state: &mut State) {
        state.open -= 1;
        self.metrics.connections.dec();
        crate::memory::connection_closed();
    }

    /// The endpoint is gone: closes the idle connections (`minSize` included) and every one handed back later.
    pub fn shut(&self) {
        let mut state = self.lock();
        state.shut = true;
        state.idle.clear();
    }

    /// An idle connection, a permit to connect, a place in the queue, or `Full`.
    pub fn checkout(self: &Arc<Self>) -> Checkout {
        let mut state = self.lock();
        // Expiry is the reaper's (it keeps `minSize`); here only connections the upstream closed are skipped.
        while let Some(entry) = state.idle.pop() {
            if entry.sender.is_ready() {
                return Checkout::Idle(entry.sender);
            }
        }
        if state.waiters.is_empty() {
            if let Some(permit) = self.try_permit(&mut state) {
                return Checkout::Connect(permit);
            }
        }
        // Refused only when every connection is in use: while there is room and only the setup pace holds
        // requests back, they wait for their turn to connect whatever `maxWaiters` says.
        if state.open >= self.limits.max_size && state.waiters.len() >= self.limits.max_waiters {
            // Requests that gave up (deadline, client gone) leave closed senders behind: they hold no place.
            state.waiters.retain(|w| !w.is_closed());
            if state.waiters.len() >= self.limits.max_waiters {
                self.metrics.rejected.inc();
                return Checkout::Full;
            }
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back(tx);
        self.metrics.waiters.inc();
        Checkout::Wait(Waiter { rx, since: Instant::now(), pool: self.clone() })
    }

    /// A permit to connect, if there is room for another connection and setup is not already at its pace limit.
    fn try_permit(self: &Arc<Self>, state: &mut State) -> Option<ConnectPermit> {
        if state.open >= self.limits.max_size || state.connecting >= MAX_CONNECTING {
            return None;
        }
        self.add_open(state);
        state.connecting += 1;
        Some(ConnectPermit { pool: Some(self.clone()) })
    }

    /// A permit outside the limits, for the one shared connection of an HTTP/2 endpoint (counted as open).
    pub fn extra_permit(self: &Arc<Self>) -> ConnectPermit {
        let mut state = self.lock();
        self.add_open(&mut state);
        state.connecting += 1;
        ConnectPermit { pool: Some(self.clone()) }
    }

    /// The endpoint now speaks HTTP/2: nobody needs to wait for an HTTP/1.1 connection.
    pub fn upgraded(&self) {
        let mut state = self.lock();
        for waiter in state.waiters.drain(..) {
            let _ = waiter.send(Grant::Upgraded);
        }
    }

    /// Hands `grant` to the longest waiter still waiting; gives it back if nobody is.
    fn hand_over(&self, state: &mut State, mut grant: Grant) -> Option<Grant> {
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(grant) {
                Ok(()) => return None,
                Err(back) => grant = back,
            }
        }
        Some(grant)
    }

    /// Lets the next waiter set up a connection if there is now room for one.
    fn admit_waiter(self: &Arc<Self>, state: &mut State) {
        while !state.waiters.is_empty() {
            let Some(permit) = self.try_permit(state) else { return };
            if let Some(Grant::Connect(mut permit)) = self.hand_over(state, Grant::Connect(permit)) {
                // Nobody took it: give the room back without re-entering the lock.
                permit.pool = None;
                self.sub_open(state);
                state.connecting -= 1;
                return;
            }
        }
    }

    /// A connection that can take another request: to the longest waiter, else to the idle stack.
    pub fn put_back(self: &Arc<Self>, sender: Sender) {
        let mut state = self.lock();
        let Some(Grant::Conn(sender)) = self.hand_over(&mut state, Grant::Conn(sender)) else { return };
        if state.shut {
            return;
        }
        state.idle.push(Idle { sender, since: Instant::now() });
        if !state.reaping {
            state.reaping = true;
            tokio::spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
    }

    /// Closes idle connections unused for the idle timeout, keeping `minSize` open; `false` once none is idle
    /// (or the endpoint is gone).
    fn reap_expired(&self) -> bool {
        let mut state = self.lock();
        if state.shut {
            state.reaping = false;
            return false;
        }
        let keep_open = self.limits.min_size;
        let mut closable = state.open.saturating_sub(keep_open);
        let timeout = self.idle_timeout;
        // Oldest first (the bottom of the LIFO stack); dropping a sender closes its idle connection.
        state.idle.retain(|entry| {
            if !entry.sender.is_ready() {
                // Already closed by the upstream; its room was given back when its I/O ended.
                return false;
            }
            if entry.since.elapsed() >= timeout && closable > 0 {
                closable -= 1;
                return false;
            }
            true
        });
        if state.idle.is_empty() {
            state.reaping = false;
        }
        state.reaping
    }

    /// A connection's I/O ended: its room goes to the next waiter.
    fn closed(self: &Arc<Self>) {
        let mut state = self.lock();
        self.sub_open(&mut state);
        self.admit_waiter(&mut state);
    }

    /// A setup finished. After a failure with no connection left open, every waiter is told at once — the
    /// endpoint is unreachable, and they may find another.
    fn connected(self: &Arc<Self>, setup: Setup<'_>) {
        let mut state = self.lock();
        state.connecting -= 1;
        if !matches!(setup, Setup::Up) {
            self.sub_open(&mut state);
        }
        if let Setup::Failed(why) = setup {
            if state.open == 0 {
                for waiter in state.waiters.drain(..) {
                    let _ = waiter.send(Grant::Failed(why.to_owned()));
                }
                return;
            }
        }
        self.admit_waiter(&mut state);
    }
}

/// How a connection setup ended.
enum Setup<'a> {
    Up,
    Failed(&'a str),
    /// Dropped mid-way: the request it was for gave up (deadline, client gone); no fault of the endpoint.
    Abandoned,
}

/// Closes expired idle connections every half idle timeout while any are idle.
async fn reap(pool: Weak<H1Pool>, idle_timeout: Duration) {
    let tick = (idle_timeout / 2).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        match pool.upgrade() {
            Some(pool) if pool.reap_expired() => {}
            _ => return,
        }
    }
}

/// A request's place in the queue.
pub struct Waiter {
    rx: oneshot::Receiver<Grant>,
    since: Instant,
    pool: Arc<H1Pool>,
}

impl Waiter {
    /// Waits for a connection or a turn to connect. Dropping the future gives up the place.
    pub async fn wait(mut self) -> Waited {
        match (&mut self.rx).await {
            Ok(Grant::Conn(sender)) => Waited::Conn(sender),
            Ok(Grant::Connect(permit)) => Waited::Connect(permit),
            Ok(Grant::Failed(why)) => Waited::Failed(why),
            Ok(Grant::Upgraded) => Waited::Upgraded,
            Err(_) => Waited::Failed("the endpoint's connection pool was closed".into()),
        }
    }
}

impl Drop for Waiter {
    /// Every wait is measured, also one that ended with its request (deadline, caller gone); the waiters gauge
    /// counts live waiters, so it falls as soon as a request stops waiting, however it stopped.
    fn drop(&mut self) {
        self.pool.metrics.wait.observe(self.since.elapsed().as_secs_f64());
        self.pool.metrics.waiters.dec();
        // A connection handed over just as the request gave up goes to the next one rather than closing.
        if let Ok(Grant::Conn(sender)) = self.rx.try_recv() {
            self.pool.put_back(sender);
        }
    }
}

/// The right to set up one connection: counted against `maxSize` and the setup pace until it is dropped or
/// turned into a [`ConnectionSlot`].
pub struct ConnectPermit {
    pool: Option<Arc<H1Pool>>,
}

impl ConnectPermit {
    /// The connection is up: it keeps its room until its I/O ends (drop the slot then).
    pub fn established(mut self) -> ConnectionSlot {
        let pool = self.pool.take();
        if let Some(pool) = &pool {
            pool.connected(Setup::Up);
        }
        ConnectionSlot { pool }
    }

    /// Setting up failed with `why`.
    pub fn failed(mut self, why: &str) {
        if let Some(pool) = self.pool.take() {
            pool.connected(Setup::Failed(why));
        }
    }
}

impl Drop for ConnectPermit {
    fn drop(&mut self) {
        // Dropped mid-setup (the request's deadline ran out, or its client went away).
        if let Some(pool) = self.pool.take() {
            pool.connected(Setup::Abandoned);
        }
    }
}

/// An open connection's room in the pool, held by its I/O task.
pub struct ConnectionSlot {
    pool: Option<Arc<H1Pool>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_size: usize, max_waiters: usize) -> (Arc<H1Pool>, PoolFamilies) {
        let families = PoolFamilies::register(&Registry::empty());
        let limits = PoolLimits { max_size, max_waiters, min_size: 0 };
        (H1Pool::new(limits, Duration::from_secs(10), families.endpoint("egress", "e")), families)
    }

    fn permit(c: Checkout) -> ConnectPermit {
        match c {
            Checkout::Connect(p) => p,
            _ => panic!("expected a permit to connect"),
        }
    }

    fn waiter(c: Checkout) -> Waiter {
        match c {
            Checkout::Wait(w) => w,
            _ => panic!("expected a place in the queue"),
        }
    }

    fn gauges(f: &PoolFamilies) -> (i64, i64) {
        (f.connections.with_label_values(&["egress", "e"]).get(), f.waiters.with_label_values(&["egress", "e"]).get())
    }

    #[tokio::test]
    async fn setup_is_paced_and_a_finished_one_admits_the_next_waiter() {
        let (pool, families) = pool(100, 100);
        let mut permits: Vec<_> = (0..MAX_CONNECTING).map(|_| permit(pool.checkout())).collect();
        let next = waiter(pool.checkout());
        assert_eq!(gauges(&families), (MAX_CONNECTING as i64, 1), "8 connecting, the 9th waits for its turn");
        let slot = permits.pop().unwrap().established();
        assert!(matches!(next.wait().await, Waited::Connect(_)), "a finished setup lets the next one connect");
        drop(slot);
        drop(permits);
        assert_eq!(gauges(&families), (0, 0), "every permit and slot gave its room back");
    }

    #[tokio::test]
    async fn a_closed_connection_or_an_abandoned_setup_gives_its_room_to_the_next_waiter() {
        let (pool, families) = pool(1, 10);
        let slot = permit(pool.checkout()).established();
        let first = waiter(pool.checkout());
        drop(slot);
        let Waited::Connect(abandoned) = first.wait().await else { panic!("the room went to the waiter") };
        let second = waiter(pool.checkout());
        drop(abandoned);
        assert!(matches!(second.wait().await, Waited::Connect(_)), "an abandoned setup is not a failure");
        assert_eq!(gauges(&families), (0, 0));
    }

    #[tokio::test]
    async fn a_failed_setup_with_nothing_open_fails_every_waiter_at_once() {
        let (pool, _) = pool(1, 10);
        let setup = permit(pool.checkout());
        let (a, b) = (waiter(pool.checkout()), waiter(pool.checkout()));
        setup.failed("connection refused");
        for w in [a, b] {
            assert!(matches!(w.wait().await, Waited::Failed(why) if why == "connection refused"));
        }
    }

    #[tokio::test]
    async fn the_queue_refuses_only_when_every_connection_is_busy_and_given_up_places_are_free() {
        let (pool, families) = pool(1, 1);
        let _slot = permit(pool.checkout()).established();
        let queued = waiter(pool.checkout());
        assert!(matches!(pool.checkout(), Checkout::Full), "one busy connection, one waiting: full");
        drop(queued);
        assert_eq!(gauges(&families).1, 0, "a request that gave up no longer counts as waiting");
        let _again = waiter(pool.checkout());

        // maxWaiters 0: no queue once every connection is busy, but requests held back only by the setup pace
        // still wait for their turn.
        let (cold, _) = self::pool(100, 0);
        let _setups: Vec<_> = (0..MAX_CONNECTING).map(|_| permit(cold.checkout())).collect();
        assert!(matches!(cold.checkout(), Checkout::Wait(_)));
    }
}
