//! Every metric family the routers of one sidecar count in: each stage's own, registered once against the
//! sidecar's registry and shared by all its routers.

use prometheus::IntCounterVec;

use super::bind::BindFamilies;
use super::endpoint::EndpointFamilies;
use super::table::TableFamilies;
use crate::metrics::{names, Registry};
use crate::tls::TlsMetrics;

/// Every family the routers of one sidecar count in, registered once and shared by all its routers.
#[derive(Clone)]
pub struct Families {
    pub(super) table: TableFamilies,
    pub(super) bind: BindFamilies,
    pub(super) endpoint: EndpointFamilies,
    pub(super) proxy_errors: IntCounterVec,
    pub(super) store_errors: IntCounterVec,
    pub(super) denied: IntCounterVec,
    pub(super) context_dropped: IntCounterVec,
    pub(super) tls: TlsMetrics,
}

impl Families {
    /// Registers the families of every stage.
    pub fn register(r: &Registry) -> Self {
        Self {
            table: TableFamilies::register(r),
            bind: BindFamilies::register(r),
            endpoint: EndpointFamilies::register(r),
            proxy_errors: r.int_counter_vec(
                names::PROXY_ERRORS,
                "Requests answered by the proxy itself, by reason.",
                &["router", "reason"],
            ),
            store_errors: crate::dtab_store::error_metric(r),
            denied: r.int_counter_vec(
                names::AUTHZ_DENIED,
                "Requests refused 403 because the caller's identity is not in the server's authorization.allow.",
                &["router", "caller"],
            ),
            context_dropped: r.int_counter_vec(
                names::CONTEXT_DROPPED,
                "Requests whose l5d-dtab / l5d-ctx-* headers were dropped: the sender is not trusted to send them.",
                &["router"],
            ),
            tls: TlsMetrics::register(r),
        }
    }

    /// The TLS families (servers count refused handshakes in them).
    pub fn tls(&self) -> &TlsMetrics {
        &self.tls
    }
}
