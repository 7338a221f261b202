//! The three sample services of the switchyard mesh.
//!
//! # Layout
//!
//! - [`common`]: settings, logging, graceful shutdown, the JSON error, the peer
//!   client, money (ISO 4217 minor units) and a small `Date`.
//! - [`rate`]: forex-rate, ECB euro reference rates from the embedded history.
//! - [`converter`]: forex-converter, converts an amount by asking forex-rate.
//! - [`web`]: forex-web, the HTML form, asking forex-converter.
//!
//! Each service module has `app(state) -> axum::Router`; the binaries in
//! `src/bin/` only parse settings and serve it.

pub mod common;
pub mod converter;
pub mod rate;
pub mod web;
