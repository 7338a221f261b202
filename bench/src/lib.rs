//! Load harness behind `make bench`: a trivial upstream server and an HTTP/1.1 load
//! generator that reports latency percentiles without coordinated omission. Its `consul` command runs the
//! Consul API double from `switchyard-test-support`.
//!
//! # Layout
//! - [`args`]: command-line parsing into typed commands (no argument-parser crate).
//! - [`histogram`]: a log-bucketed (HDR-style) latency histogram.
//! - [`load`]: keep-alive connections driven flat-out or at a fixed, open-loop rate.
//! - [`upstream`]: the `200 ok` server the proxies under test forward to.

pub mod args;
pub mod histogram;
pub mod load;
pub mod upstream;
