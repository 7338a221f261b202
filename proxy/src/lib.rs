//! switchyard: a linkerd-1-style HTTP sidecar proxy with dtab routing.
//!
//! # Layout
//! - [`config`]: the linkerd-shaped YAML config, validated up front with line and column.
//! - [`namer`]: namers (`/$/inet`, `io.l5d.fs`, `io.l5d.consul`) that turn concrete names into live endpoint sets.
//! - [`router`]: the request path as named stages — identify → context → table/bind → body → attempt (balance →
//!   endpoint → judge → retry) — with health (failure accrual, peak EWMA), correlation, access logs, and the one
//!   rescue point (`router::error`). `docs/architecture.md` draws it.
//! - [`consul`]: the small Consul HTTP client (blocking queries) behind the Consul namer and dtab store.
//! - [`dtab_store`]: mesh-wide dtabs shared through Consul KV or a watched file.
//! - [`dtabctl`]: the `switchyard dtab` command-line client of the admin API.
//! - [`tls`]: rustls on both sides of a hop, certificate reloading, peer identities; [`identityctl`]: the
//!   `switchyard identity` commands (a mesh CA, service certificates with SPIFFE IDs).
//! - [`server`]: downstream HTTP/1.1 + h2c listeners with graceful drain.
//! - [`admin`]: the admin server (ping, ready, metrics, config, dtab read/write, delegator).
//! - [`metrics`]: the Prometheus registry and family names; components register their own families.
//! - [`app`]: wiring a config into a running sidecar; [`telemetry`]: logging and signals.
//!
//! The dtab engine itself lives in the pure `switchyard-dtab` crate.

pub mod admin;
pub mod app;
pub mod config;
pub mod consul;
pub mod dtab_store;
pub mod dtabctl;
#[doc(hidden)]
pub mod fuzzing;
pub mod identityctl;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod namer;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod tls;

/// FNV-1a, 64-bit: a hash that is stable across Rust versions and runs (unlike `DefaultHasher`), for dtab version
/// tags and noticing that a registry file changed.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
