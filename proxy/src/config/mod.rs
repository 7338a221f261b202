//! The sidecar's configuration: linkerd-1-shaped YAML, loaded and checked up front.
//!
//! [`load`] parses the text into a spanned YAML tree ([`yaml`]), then turns that tree into
//! the typed [`Config`] ([`validate`]), collecting *every* problem with its line and column
//! instead of stopping at the first, so `switchyard check` can point at all of them at once.
//! linkerd keys switchyard does not implement, and keys nobody knows, are warnings: a
//! linkerd user's file should run as written.

pub mod policy;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Serialize, Serializer};
use switchyard_dtab::{Dtab, Path};

pub use policy::{
    Backoff, Classifier, ClientParams, ClientPolicy, FailureAccrual, Hedging, LoadBalancer, Override, PoolParams,
    Retries, RetryBudget, ServiceParams, ServicePolicy,
};

/// The whole sidecar configuration: one admin server, the namers, and the routers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Where the admin API listens.
    pub admin: AdminConfig,
    /// Namers that dtabs reach through `/#/<prefix>`.
    pub namers: Vec<NamerConfig>,
    /// The routers (normally `ingress` and `egress`); at least one.
    pub routers: Vec<RouterConfig>,
}

/// The admin server (ping, metrics, dtab read/write).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminConfig {
    /// Address to bind; default 127.0.0.1 so the admin API is not exposed by accident.
    pub ip: IpAddr,
    /// Port to bind; default 9990 as in linkerd.
    pub port: u16,
    /// Bearer token required for admin writes (dtab changes), from `token`, `tokenFile` or `tokenEnv`. Required
    /// when admin listens beyond loopback; `None` allows writes from loopback freely.
    #[serde(serialize_with = "redacted")]
    pub token: Option<String>,
    /// Serve admin over TLS (linkerd's `admin.tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsConfig>,
    /// Host names (besides IP literals, `localhost` and this machine's name) the admin answers to: anything else
    /// is refused, so a web page cannot reach the admin API through DNS rebinding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Deadlines and the connection cap of the admin listener.
    #[serde(flatten)]
    pub connections: ConnectionLimits,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9990,
            token: None,
            tls: None,
            hosts: Vec::new(),
            connections: ConnectionLimits { max_connections: 128, ..ConnectionLimits::default() },
        }
    }
}

/// What a listener allows one connection (switchyard keys on `servers` entries and `admin`): how long it may
/// take to say something, how long it may sit idle, and how many connections may be open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionLimits {
    /// A new connection's first request head (TLS handshake and HTTP/2 preface included) must arrive within this
    /// (`headerTimeoutMs`, default 10 s); else the connection is closed. Later request heads on a kept-alive
    /// connection have the idle time.
    pub header_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first) —
    /// `idleTimeoutMs`, default 60 s.
    pub idle_timeout_ms: u64,
    /// A request body that sends nothing for this long is cut off and answered 408 (`bodyIdleTimeoutMs`,
    /// default 10 s).
    pub body_idle_timeout_ms: u64,
    /// Connections open at once (`maxConnections`, default 10,000; admin 128); more wait in the kernel's accept
    /// backlog until one closes.
    pub max_connections: usize,
    /// HTTP/2 keep-alive: a PING after this much silence, and the connection closed if its ACK does not come
    /// within the same time again (`h2KeepAliveMs`, default 20 s).
    #[serde(rename = "h2KeepAliveMs")]
    pub h2_keep_alive_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_idle_timeout_ms: 10_000,
            max_connections: 10_000,
            h2_keep_alive_ms: 20_000,
        }
    }
}

/// How much an error answer the proxy writes itself says (`errorDetail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorDetail {
    /// The whole reason, addresses included: for callers inside the mesh and operators.
    Full,
    /// Only the kind of failure and the request id, never an internal address or name: for the edge.
    Generic,
}

/// A TLS protocol version (`protocols: [TLSv1.3, TLSv1.2]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// A server's TLS (linkerd 1's server `tls` keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTlsConfig {
    /// The certificate (chain) this server presents, PEM.
    pub cert_path: PathBuf,
    /// Its private key: PEM PKCS#8, SEC1 or PKCS#1.
    pub key_path: PathBuf,
    /// More chain certificates to present after the leaf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_certs_path: Option<PathBuf>,
    /// The CA client certificates must chain to; with it, clients may present one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert_path: Option<PathBuf>,
    /// Refuse clients without a certificate from `caCertPath` (mutual TLS).
    pub require_client_auth: bool,
    /// TLS versions to offer; both 1.3 and 1.2 when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<TlsVersion>,
}

/// A client certificate (linkerd 1's client `tls.clientAuth`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_certs_path: Option<PathBuf>,
}

/// TLS to upstreams (linkerd 1's client `tls` keys).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsConfig {
    /// The name the server's certificate must carry; may use the variables its `configs` prefix captures
    /// (`{service}`). Required unless `disableValidation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// CA certificates to trust, one PEM file each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_certs: Vec<PathBuf>,
    /// A PEM bundle of CA certificates to trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_certs_bundle: Option<PathBuf>,
    /// Accept any server certificate (testing only: `switchyard check` warns).
    pub disable_validation: bool,
    /// The certificate to present to servers that ask (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthConfig>,
    /// TLS versions to offer; both 1.3 and 1.2 when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<TlsVersion>,
}

/// Who may call a server (ours, beyond linkerd 1): caller identities from verified client certificates.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationConfig {
    /// Identities allowed to send requests: SPIFFE IDs (`spiffe://mesh.local/svc/forex-web`), DNS names from the
    /// certificate, or `*` for any certificate the CA signed. Others get 403.
    pub allow: Vec<String>,
    /// Identities whose `l5d-dtab` / `l5d-ctx-*` headers are honoured (with `clearContext: false`); default: the
    /// same as `allow`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_context: Option<Vec<String>>,
}

/// A namer: resolves `/#/<prefix>/…` names to endpoints.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum NamerConfig {
    /// `kind: io.l5d.fs`: one file per service in a watched directory.
    #[serde(rename = "io.l5d.fs")]
    Fs(FsNamerConfig),
    /// `kind: io.l5d.consul`: services from a Consul agent, watched with blocking queries.
    #[serde(rename = "io.l5d.consul")]
    Consul(ConsulNamerConfig),
}

/// Settings of the Consul namer, with linkerd 1's option names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsulNamerConfig {
    /// Prefix under `/#`; default `/io.l5d.consul`.
    #[serde(serialize_with = "as_display")]
    pub prefix: Path,
    /// The agent's host; default `localhost`.
    pub host: String,
    /// The agent's HTTP port; default 8500.
    pub port: u16,
    /// ACL token sent as `X-Consul-Token`.
    #[serde(serialize_with = "redacted")]
    pub token: Option<String>,
    /// HTTPS to the agent (linkerd's client `tls` keys; `commonName` defaults to `host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<ClientTlsConfig>>,
    /// Names are `/<dc>/<tag>/<service>` instead of `/<dc>/<service>` (default false).
    pub include_tag: bool,
    /// Ask the health endpoint and keep only instances whose checks are in `healthStatuses` (default false).
    pub use_health_check: bool,
    /// Health states that count as up with `useHealthCheck`; default `[passing]`.
    pub health_statuses: Vec<String>,
    /// Send `Host: <service>.service.<dc>.consul` upstream (default false; see docs/consul.md).
    pub set_host: bool,
    /// `default`, `stale` or `consistent`.
    pub consistency_mode: crate::consul::ConsistencyMode,
    /// Answer "no such service" at once while Consul has never answered, instead of waiting (default false).
    pub fail_fast: bool,
    /// Use the service's address over its node's address when both are set (default true).
    pub prefer_service_address: bool,
    /// Load-balancer weights of instances carrying a tag.
    pub weights: Vec<TagWeight>,
}

/// `weights: [{tag: canary, weight: 0.1}]`: instances with `tag` get `weight` (others 1).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagWeight {
    /// The Consul service tag.
    pub tag: String,
    /// A non-negative weight.
    pub weight: f64,
}

/// Where a router reads its dtab from when many sidecars share it (`dtabStore:`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum DtabStoreConfig {
    /// `kind: io.l5d.consul`: a Consul KV key, watched with blocking queries, written with check-and-set.
    #[serde(rename = "io.l5d.consul", rename_all = "camelCase")]
    Consul {
        /// The agent's host; default `localhost`.
        host: String,
        /// The agent's HTTP port; default 8500.
        port: u16,
        /// ACL token sent as `X-Consul-Token`.
        #[serde(serialize_with = "redacted")]
        token: Option<String>,
        /// HTTPS to the agent.
        #[serde(skip_serializing_if = "Option::is_none")]
        tls: Option<Box<ClientTlsConfig>>,
        /// The KV key; default `switchyard/dtabs/<router label>`.
        key: String,
        /// `default`, `stale` or `consistent`.
        consistency_mode: crate::consul::ConsistencyMode,
    },
    /// `kind: io.l5d.fs`: a file holding the dtab text, polled, replaced atomically on writes.
    #[serde(rename = "io.l5d.fs")]
    File {
        /// The file (`path`, required).
        path: PathBuf,
    },
}

/// Settings of the file-system namer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsNamerConfig {
    /// Prefix under `/#`; default `/io.l5d.fs`, so dtabs say `/#/io.l5d.fs/<service>`.
    #[serde(serialize_with = "as_display")]
    pub prefix: Path,
    /// The watched directory (`rootDir`, required).
    pub root_dir: PathBuf,
}

/// The protocol a router speaks on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (`protocol: http`).
    Http,
    /// HTTP/2 over cleartext (`protocol: h2`).
    H2,
}

impl Protocol {
    /// The name used in config files, also a router's default label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::H2 => "h2",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One router: servers that accept requests, how requests are named, and the dtab.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterConfig {
    /// `protocol: http | h2`, required.
    pub protocol: Protocol,
    /// Unique name (admin URLs, metrics); defaults to the protocol name.
    pub label: String,
    /// Identifiers tried in order until one names the request.
    #[serde(rename = "identifier")]
    pub identifiers: Vec<IdentifierConfig>,
    /// Prefix of the names identifiers produce; `/svc` (or `/http` with `baseDtab`).
    #[serde(serialize_with = "as_display")]
    pub dst_prefix: Path,
    /// The router's delegation table; empty by default.
    #[serde(serialize_with = "as_display")]
    pub dtab: Dtab,
    /// The file used pre-0.9 `baseDtab`, which also changed the identifier and prefix defaults.
    pub legacy_base_dtab: bool,
    /// Where the router listens; at least one.
    pub servers: Vec<ServerConfig>,
    /// Policy for connections to concrete endpoints.
    pub client: ClientConfig,
    /// Policy per logical service (a request across all its attempts).
    pub service: ServiceConfig,
    /// A shared store the dtab is read from (and `PUT /dtab/<label>` writes to); `dtab` is then only the
    /// fallback used until the store first answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtab_store: Option<DtabStoreConfig>,
    /// How long a request waits for namers still fetching a name (`bindingTimeoutMs`, default 10 s).
    pub binding_timeout_ms: u64,
    /// Largest request head accepted (`maxHeadersKB`); larger → 431. Default 64 KiB.
    #[serde(rename = "maxHeadersKB")]
    pub max_headers_kb: u64,
    /// Largest request body accepted (`maxRequestKB`); larger → 413. Unlimited by default (bodies stream).
    #[serde(rename = "maxRequestKB", skip_serializing_if = "Option::is_none")]
    pub max_request_kb: Option<u64>,
    /// Append one line per request to this file (`httpAccessLog`); off by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_access_log: Option<PathBuf>,
    /// A request that already passed through this many switchyard proxies (its `Via`) is refused with 508: a
    /// routing loop (`maxHops`, default 16).
    pub max_hops: usize,
}

/// A listening socket of a router.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// Address to bind; default 127.0.0.1.
    pub ip: IpAddr,
    /// Port to bind; default 4140.
    pub port: u16,
    /// Ignore `l5d-dtab` / `l5d-ctx-*` from clients (default true): an untrusted client
    /// must not be able to reroute traffic.
    pub clear_context: bool,
    /// Requests served at once on this server (`maxConcurrentRequests`); more → 503. Unlimited by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<usize>,
    /// Terminate TLS (mutual TLS with `requireClientAuth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsConfig>,
    /// Which verified caller identities may send requests (needs mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationConfig>,
    /// Deadlines and the connection cap.
    #[serde(flatten)]
    pub connections: ConnectionLimits,
    /// What error answers say (`errorDetail`). Default: `full` on loopback or with mutual TLS (callers are the
    /// local app or mesh members), `generic` on any other address.
    pub error_detail: ErrorDetail,
}

impl ServerConfig {
    /// The `errorDetail` a server gets when its config says nothing.
    pub fn default_error_detail(ip: IpAddr, mtls: bool) -> ErrorDetail {
        if ip.is_loopback() || mtls {
            ErrorDetail::Full
        } else {
            ErrorDetail::Generic
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 4140,
            clear_context: true,
            max_concurrent_requests: None,
            tls: None,
            authorization: None,
            connections: ConnectionLimits::default(),
            error_detail: ErrorDetail::Full,
        }
    }
}

/// How a router turns a request into a name under its `dstPrefix`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum IdentifierConfig {
    /// `io.l5d.header.token`: the header's value as one segment (`/svc/<host>`).
    #[serde(rename = "io.l5d.header.token")]
    HeaderToken {
        /// Header to read; default `Host`.
        #[serde(serialize_with = "header_name")]
        header: http::HeaderName,
    },
    /// `io.l5d.methodAndHost`: `/<prefix>/1.1/<METHOD>/<host>[/<uri>]`.
    #[serde(rename = "io.l5d.methodAndHost")]
    MethodAndHost {
        /// Append the request path to the name (`httpUriInDst`).
        #[serde(rename = "httpUriInDst")]
        http_uri_in_dst: bool,
    },
    /// `io.l5d.path`: the first `segments` segments of the request path.
    #[serde(rename = "io.l5d.path")]
    Path {
        /// How many segments name the service; at least 1.
        segments: usize,
        /// Strip those segments from the forwarded request.
        consume: bool,
    },
    /// `io.l5d.header`: the header's value read as a whole path.
    #[serde(rename = "io.l5d.header")]
    Header {
        /// Header to read; default `l5d-name`.
        #[serde(serialize_with = "header_name")]
        header: http::HeaderName,
    },
}

/// Policy for talking to concrete endpoints.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// TCP connect timeout (`connectTimeoutMs`), default 1000.
    pub connect_timeout_ms: u64,
    /// Timeout of one attempt (`requestAttemptTimeoutMs`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_attempt_timeout_ms: Option<u64>,
    /// `hostConnectionPool`: how many connections per endpoint, how many requests may queue for one, and when
    /// idle ones close.
    #[serde(rename = "hostConnectionPool")]
    pub pool: ConnectionPool,
    /// How endpoints are picked (`loadBalancer`); peak-EWMA power of two choices by default.
    pub load_balancer: LoadBalancer,
    /// When endpoints are taken out of rotation (`failureAccrual`); 5 consecutive failures by default.
    pub failure_accrual: FailureAccrual,
    /// Offer HTTP/2 by ALPN on TLS connections of an HTTP/1.1 router (`h2Upgrade`, default true): a peer that
    /// accepts it — another switchyard — carries the requests as streams over one connection.
    pub h2_upgrade: bool,
    /// TLS to every upstream (unless a `configs` entry says otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsConfig>,
    /// `kind: io.l5d.static` entries: overrides for clients whose bound name matches a prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<Override<ClientParams>>,
}

/// `hostConnectionPool` (linkerd 1's keys and meanings, with defaults that queue a burst rather than fail it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    /// Idle connections are closed after this (`idleTimeMs`), default 10 s.
    pub idle_time_ms: u64,
    #[serde(flatten)]
    pub limits: PoolLimits,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        Self { idle_time_ms: 10_000, limits: PoolLimits::default() }
    }
}

/// The per-endpoint limits of `hostConnectionPool` (a `configs:` entry may override them per client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolLimits {
    /// HTTP/1.1 connections per endpoint at most (`maxSize`), default 256; a request finding all busy waits.
    pub max_size: usize,
    /// Requests waiting for a connection per endpoint at most (`maxWaiters`), default 10,000; more get 503.
    pub max_waiters: usize,
    /// Connections kept open when idle (`minSize`), default 0.
    pub min_size: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self { max_size: 256, max_waiters: 10_000, min_size: 0 }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout_ms: 1000,
            request_attempt_timeout_ms: None,
            pool: ConnectionPool::default(),
            load_balancer: LoadBalancer::default(),
            failure_accrual: FailureAccrual::default(),
            h2_upgrade: true,
            tls: None,
            configs: Vec::new(),
        }
    }
}

/// Policy for a logical service.
#[derive(Clone, Debug, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Deadline for a request including retries (`totalTimeoutMs`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_timeout_ms: Option<u64>,
    /// Which responses are failures and which may be retried (`responseClassifier`).
    #[serde(rename = "responseClassifier")]
    pub classifier: Classifier,
    /// Retry budget and backoff (`retries`).
    pub retries: Retries,
    /// Hedged requests (`hedging`); off by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedging: Option<Hedging>,
    /// `kind: io.l5d.static` entries: overrides for logical names matching a prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<Override<ServiceParams>>,
}

/// One problem (or warning) in a config file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// 1-based line; 0 when the problem has no position (the file could not be read).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Where in the config, e.g. `routers[1].servers[0].port`; empty for the whole file.
    pub key: String,
    /// What is wrong, saying what was expected and what was found.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// A valid config and the warnings (ignored keys) found on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// Keys that were accepted but ignored, in file order.
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates config text.
///
/// # Errors
/// Every problem found (syntax, types, values, clashes), in file order. Warnings about
/// ignored keys are only returned with a valid config, in [`Loaded::warnings`].
pub fn load(text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let root = yaml::parse(text).map_err(|error| vec![error])?;
    validate::config(text, root)
}

/// Reads and [`load`]s a config file.
///
/// # Errors
/// As [`load`]; an unreadable file is a single diagnostic at 0:0.
pub fn load_file(path: &std::path::Path) -> Result<Loaded, Vec<Diagnostic>> {
    match std::fs::read_to_string(path) {
        Ok(text) => load(&text),
        Err(error) => Err(vec![Diagnostic {
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read {}: {error}", path.display()),
        }]),
    }
}

/// A commented example config: a sidecar with ingress and egress routers.
#[must_use]
pub fn example() -> &'static str {
    EXAMPLE
}

const EXAMPLE: &str = r"# switchyard sidecar config (linkerd 1 shape).
admin:
  ip: 127.0.0.1        # admin API: metrics, dtab read/write
  port: 9990
  # token: s3cret      # if set, dtab writes need `Authorization: Bearer s3cret`

namers:
- kind: io.l5d.fs      # one file per service, each line `host:port`
  rootDir: disco       # dtabs reach it as /#/io.l5d.fs/<service>

routers:
# Traffic into this service: everything goes to the local app.
- protocol: http
  label: ingress
  dtab: |
    /svc => /$/inet/127.0.0.1/8080;
  servers:
  - ip: 0.0.0.0
    port: 4140
    clearContext: true # ignore l5d-dtab from outside the mesh

# Traffic this service sends to its peers: `Host: forex-rate` names /svc/forex-rate.
- protocol: http
  label: egress
  identifier:
    kind: io.l5d.header.token
    header: Host
  dtab: |
    /svc => /#/io.l5d.fs;
  servers:
  - port: 4141
    clearContext: false # our own app may send l5d-dtab overrides
  client:
    connectTimeoutMs: 500
    requestAttemptTimeoutMs: 2000
    hostConnectionPool:
      idleTimeMs: 10000
  service:
    totalTimeoutMs: 5000
";

/// Serialises a value as its canonical text (paths and dtabs).
fn as_display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Never lets a secret reach the effective-config endpoint or logs.
#[allow(clippy::ref_option)] // serde's `serialize_with` hands over `&Option<_>`.
fn redacted<S: Serializer>(token: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

fn header_name<S: Serializer>(name: &http::HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}
