//! Integration tests for the three forex services: each app through
//! `oneshot`, peers as real servers on 127.0.0.1:0, and all three end to end.

mod converter;
mod end_to_end;
mod metrics;
mod rate;
mod support;
mod web;
