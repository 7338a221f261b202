//! The proxy's in-process integration tests, linked once: whole sidecars on port 0 with fake upstreams and the
//! Consul API double (`switchyard-test-support`). Each module is one area; `support` is the shared harness.

mod admin;
mod admin_ui;
mod consul;
mod correlation;
mod lifecycle;
mod pool;
mod resilience;
mod routing;
mod support;
mod tls;
