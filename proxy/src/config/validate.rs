//! Turns the spanned YAML tree into a typed [`Config`], collecting every problem on the way.
//!
//! Each reader returns a usable value even after reporting an error (the default, or a
//! fallback), so one bad value never hides the next; the config is only handed out when
//! no error was found. Cross-checks (unique labels, one server per ip:port) run as the
//! routers are read, which keeps the reports in file order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use http::HeaderName;
use switchyard_dtab::{Dtab, ParseError, Path, Prefix};

use super::yaml::{self, Kind, Node, Pos};

mod consul;
mod tls;
use super::policy::{
    Backoff, Classifier, ClientParams, FailureAccrual, Hedging, LoadBalancer, Override, Retries, RetryBudget,
    ServiceParams,
};
use super::{
    AdminConfig, ClientConfig, Config, ConnectionLimits, ConnectionPool, Diagnostic, ErrorDetail, FsNamerConfig,
    IdentifierConfig, Loaded, NamerConfig, PoolLimits, Protocol, RouterConfig, ServerConfig, ServiceConfig,
};

const NAMER_KINDS: &[&str] = &["io.l5d.fs", "io.l5d.consul"];
const IDENTIFIER_KINDS: &[&str] = &["io.l5d.header.token", "io.l5d.methodAndHost", "io.l5d.path", "io.l5d.header"];
const CLIENT_KINDS: &[&str] = &["io.l5d.global", "io.l5d.static"];
const LB_KINDS: &[&str] = &["ewma", "p2c", "roundRobin"];
const ACCRUAL_KINDS: &[&str] = &["io.l5d.consecutiveFailures", "io.l5d.successRate", "none"];
const BACKOFF_KINDS: &[&str] = &["jittered", "constant"];
const PROTOCOLS: &[&str] = &["http", "h2"];

// Keys switchyard understands, per map, and the linkerd 1 keys it accepts but ignores
// (the latter get a gentler warning than typos, which list the keys that would work).
const TOP: &[&str] = &["admin", "namers", "routers"];
const TOP_LINKERD: &[&str] = &["telemetry", "usage"];
const ADMIN: &[&str] = &[
    "ip",
    "port",
    "token",
    "tokenFile",
    "tokenEnv",
    "tls",
    "hosts",
    "headerTimeoutMs",
    "idleTimeoutMs",
    "bodyIdleTimeoutMs",
    "maxConnections",
    "h2KeepAliveMs",
];
const ADMIN_LINKERD: &[&str] = &["httpInterfaceWhitelist", "socketOptions", "shutdownGraceMs", "workerThreads"];
const FS_NAMER: &[&str] = &["kind", "prefix", "rootDir"];
const NAMER_LINKERD: &[&str] = &["experimental", "transformers"];
const ROUTER: &[&str] = &[
    "protocol",
    "label",
    "identifier",
    "dstPrefix",
    "dtab",
    "baseDtab",
    "servers",
    "client",
    "service",
    "dtabStore",
    "bindingTimeoutMs",
    "maxHeadersKB",
    "maxRequestKB",
    "httpAccessLog",
    "maxHops",
];
const ROUTER_LINKERD: &[&str] = &[
    "interpreter",
    "bindingCache",
    "responseClassifier",
    "originator",
    "timeoutMs",
    "announcers",
    "maxInitialLineKB",
    "maxResponseKB",
    "maxChunkKB",
    "streamingEnabled",
    "addForwardedHeader",
    "tracePropagator",
    "loggers",
    "httpAccessLogRollPolicy",
    "httpAccessLogAppend",
    "httpAccessLogRotateCount",
    "compressionLevel",
    "socketOptions",
];
const SERVER: &[&str] = &[
    "ip",
    "port",
    "clearContext",
    "maxConcurrentRequests",
    "tls",
    "authorization",
    "headerTimeoutMs",
    "idleTimeoutMs",
    "bodyIdleTimeoutMs",
    "maxConnections",
    "h2KeepAliveMs",
    "errorDetail",
];
const ERROR_DETAILS: &[&str] = &["full", "generic"];
const SERVER_LINKERD: &[&str] = &[
    "announce",
    "socketOptions",
    "timeoutMs",
    "initialStreamWindowBytes",
    "maxFrameBytes",
    "maxHeaderListBytes",
    "maxConcurrentStreamsPerConnection",
    "windowUpdateRatio",
];
const CLIENT: &[&str] = &[
    "kind",
    "connectTimeoutMs",
    "h2Upgrade",
    "requestAttemptTimeoutMs",
    "hostConnectionPool",
    "loadBalancer",
    "failureAccrual",
    "tls",
    "configs",
];
const CLIENT_OVERRIDE: &[&str] =
    &["prefix", "requestAttemptTimeoutMs", "hostConnectionPool", "loadBalancer", "failureAccrual", "tls"];
const CLIENT_LINKERD: &[&str] = &["socketOptions", "clientSession"];
const POOL: &[&str] = &["idleTimeMs", "maxSize", "maxWaiters", "minSize"];
const POOL_OVERRIDE: &[&str] = &["maxSize", "maxWaiters", "minSize"];
const SERVICE: &[&str] = &["kind", "totalTimeoutMs", "responseClassifier", "retries", "hedging", "configs"];
const SERVICE_OVERRIDE: &[&str] = &["prefix", "totalTimeoutMs", "responseClassifier", "retries", "hedging"];
const SERVICE_LINKERD: &[&str] = &[];
const NONE: &[&str] = &[];

const PORT: &str = "a port number 0-65535 (0: any free port)";
const IP: &str = "an IP address";
const BOOL: &str = "true or false";
const LABEL: &str = "a router label of letters, digits, `-`, `_` and `.`";
const MS: &str = "a positive number of milliseconds";

/// Validates the document (`None` for an empty file) and builds the config.
pub(crate) fn config(text: &str, root: Option<Node>) -> Result<Loaded, Vec<Diagnostic>> {
    let root =
        root.unwrap_or_else(|| Node { pos: Pos { line: 1, column: 1, index: 0 }, end: 0, kind: Kind::Map(Vec::new()) });
    let mut check = Checker {
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
        labels: Vec::new(),
        prefixes: Vec::new(),
        bindings: Vec::new(),
    };
    let config = check.root(&root);
    let by_position = |d: &Diagnostic| (d.line, d.column);
    check.errors.sort_by_key(by_position);
    check.warnings.sort_by_key(by_position);
    if check.errors.is_empty() {
        Ok(Loaded { config, warnings: check.warnings })
    } else {
        Err(check.errors)
    }
}

/// Collects diagnostics and what cross-checks need while the tree is read.
struct Checker<'t> {
    text: &'t str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Router labels seen so far, with the key that set them.
    labels: Vec<(String, String)>,
    /// Namer prefixes seen so far, with the namer that has each.
    prefixes: Vec<(String, String)>,
    /// Sockets bound so far (admin first, then servers), with the key that bound them.
    bindings: Vec<(SocketAddr, String)>,
}

/// A map being read: keys are taken as they are understood; the rest become warnings.
struct Fields<'n> {
    path: String,
    pos: Pos,
    entries: Vec<Entry<'n>>,
}

struct Entry<'n> {
    key: &'n str,
    key_pos: Pos,
    value: &'n Node,
    used: bool,
}

impl<'n> Fields<'n> {
    fn empty(path: &str, pos: Pos) -> Fields<'n> {
        Fields { path: path.to_string(), pos, entries: Vec::new() }
    }

    /// The value under `key`, marking it understood. Duplicates were reported already.
    fn take(&mut self, key: &str) -> Option<&'n Node> {
        let mut found = None;
        for entry in self.entries.iter_mut().filter(|e| e.key == key) {
            entry.used = true;
            found = found.or(Some(entry.value));
        }
        found
    }

    /// The value under `key`, with a null value read as absent.
    fn take_present(&mut self, key: &str) -> Option<&'n Node> {
        self.take(key).filter(|node| !node.is_null())
    }

    fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.key_pos)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, key: &str, message: String) {
        let (line, column, key) = (pos.line, pos.column, key.to_string());
        self.errors.push(Diagnostic { line, column, key, message });
    }

    fn warn(&mut self, pos: Pos, key: &str, message: String) {
        let (line, column, key) = (pos.line, pos.column, key.to_string());
        self.warnings.push(Diagnostic { line, column, key, message });
    }

    /// Opens a map for reading, reporting a non-map, non-string keys and duplicate keys.
    fn fields<'n>(&mut self, node: &'n Node, path: &str) -> Fields<'n> {
        let mut fields = Fields::empty(path, node.pos);
        let entries = match &node.kind {
            Kind::Map(entries) => entries,
            _ if node.is_null() => return fields,
            _ => {
                self.error(node.pos, path, format!("expected a map, found {}", node.describe()));
                return fields;
            }
        };
        for (key, value) in entries {
            let Some(name) = key.text() else {
                self.error(key.pos, path, format!("expected a key name, found {}", key.describe()));
                continue;
            };
            if let Some(first) = fields.key_pos(name) {
                let message = format!("duplicate key `{name}` (first set at {}:{})", first.line, first.column);
                self.error(key.pos, &join(path, name), message);
            }
            fields.entries.push(Entry { key: name, key_pos: key.pos, value, used: false });
        }
        fields
    }

    /// Warns about every key nobody took: linkerd's own keys kindly, others as likely typos.
    fn finish(&mut self, fields: &Fields<'_>, known: &[&str], linkerd: &[&str]) {
        for entry in fields.entries.iter().filter(|e| !e.used) {
            let key = join(&fields.path, entry.key);
            let message = if linkerd.contains(&entry.key) {
                format!("`{}` is a linkerd option switchyard does not implement; ignored", entry.key)
            } else {
                format!("unknown key `{}` ignored (known here: {})", entry.key, known.join(", "))
            };
            self.warn(entry.key_pos, &key, message);
        }
    }

    /// Reads a scalar with `parse`, reporting `expected` and what was found when it fails.
    fn value<T>(&mut self, node: &Node, key: &str, expected: &str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let parsed = node.text().and_then(parse);
        if parsed.is_none() {
            self.error(node.pos, key, format!("expected {expected}, found {}", node.describe()));
        }
        parsed
    }

    /// An optional key: `None` when absent or on error (the error is recorded).
    fn optional<T>(
        &mut self,
        fields: &mut Fields<'_>,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let node = fields.take(key)?;
        self.value(node, fields.child(key).as_str(), expected, parse)
    }

    /// An optional key with a default: `None` only when the value is bad (error recorded).
    fn optional_or<T>(
        &mut self,
        fields: &mut Fields<'_>,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
        default: T,
    ) -> Option<T> {
        match fields.take(key) {
            Some(node) => self.value(node, fields.child(key).as_str(), expected, parse),
            None => Some(default),
        }
    }

    /// A required key: reports its absence at the enclosing map.
    fn required<'n>(&mut self, fields: &mut Fields<'n>, key: &str) -> Option<&'n Node> {
        let node = fields.take_present(key);
        if node.is_none() {
            self.error(fields.pos, &fields.child(key), format!("missing required key `{key}`"));
        }
        node
    }

    /// One of a closed set of names, listing the set when the value is not in it.
    fn one_of<'a>(&mut self, node: &Node, key: &str, what: &str, known: &[&'a str]) -> Option<&'a str> {
        let text = node.text();
        let found = known.iter().copied().find(|k| Some(*k) == text);
        if found.is_none() {
            let message = format!("unknown {what} {}; known: {}", node.describe(), known.join(", "));
            self.error(node.pos, key, message);
        }
        found
    }

    /// A path, with a syntax error pointed at the exact character in the file.
    fn path(&mut self, node: &Node, key: &str) -> Option<Path> {
        let text = self.value(node, key, "a path such as /svc", |t| Some(t.to_string()))?;
        Path::read(&text).map_err(|e| self.parse_error(node, key, &text, "invalid path", &e)).ok()
    }

    /// A dtab, with a syntax error mapped from the dtab's line/column to the file's.
    fn dtab(&mut self, node: &Node, key: &str) -> Option<Dtab> {
        let text = self.value(node, key, "a dtab", |t| Some(t.to_string()))?;
        Dtab::parse(&text).map_err(|e| self.parse_error(node, key, &text, "invalid dtab", &e)).ok()
    }

    fn parse_error(&mut self, node: &Node, key: &str, value: &str, what: &str, error: &ParseError) {
        let target = char_index(value, error.line, error.column);
        let pos = yaml::locate(self.text, node, value, target);
        self.error(pos, key, format!("{what}: {}", error.message));
    }

    fn header(&mut self, fields: &mut Fields<'_>, default: &'static str) -> HeaderName {
        let parse = |t: &str| HeaderName::from_bytes(t.as_bytes()).ok();
        self.optional(fields, "header", "a header name", parse).unwrap_or_else(|| HeaderName::from_static(default))
    }

    /// Records a bound socket, reporting a clash with one bound earlier.
    fn bind(&mut self, addr: SocketAddr, pos: Pos, key: &str) {
        let clash = self.bindings.iter().find(|(other, _)| overlaps(*other, addr)).map(|(_, k)| k.clone());
        if let Some(other) = clash {
            self.error(pos, key, format!("{addr} is already bound by {other}"));
        }
        self.bindings.push((addr, key.to_string()));
    }
}

/// Two sockets clash on the same port when the addresses match or either is a wildcard
/// of the same family (binding 0.0.0.0:4140 and 127.0.0.1:4140 fails with EADDRINUSE).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    // Port 0 asks the OS for a free port, so such sockets never clash.
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// The character offset of a 1-based line and column within `value`, clamped to the line.
fn char_index(value: &str, line: usize, column: usize) -> usize {
    let mut index = 0;
    for (number, text) in value.split('\n').enumerate() {
        let width = text.chars().count();
        if number + 1 >= line {
            return index + column.saturating_sub(1).min(width);
        }
        index += width + 1;
    }
    index
}

fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok()
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    // linkerd resolves `ip:` as a host name; `localhost` is the only one worth honouring here.
    if text == "localhost" {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    text.parse().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_count_u32(text: &str) -> Option<u32> {
    text.parse::<u32>().ok().filter(|n| *n >= 1)
}

fn parse_count(text: &str) -> Option<usize> {
    text.parse::<usize>().ok().filter(|n| *n >= 1)
}

fn parse_ms(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|ms| *ms > 0)
}

/// Labels appear in admin URLs (`/dtab/<label>`) and metric labels, so keep them plain.
fn parse_label(text: &str) -> Option<String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    Some(text.to_string()).filter(|t| !t.is_empty() && t.chars().all(plain))
}

fn parse_string(text: &str) -> Option<String> {
    Some(text.to_string())
}

impl Checker<'_> {
    fn root(&mut self, node: &Node) -> Config {
        if !matches!(node.kind, Kind::Map(_)) {
            let message = format!("expected a map with `admin`, `namers` and `routers`, found {}", node.describe());
            self.error(node.pos, "", message);
            return Config { admin: AdminConfig::default(), namers: Vec::new(), routers: Vec::new() };
        }
        let mut fields = self.fields(node, "");
        let admin = self.admin(fields.take_present("admin"), node.pos);
        let namers = self.list(fields.take_present("namers"), "namers", Self::namer);
        let routers = self.required(&mut fields, "routers");
        if let Some(list) = routers {
            self.at_least_one(list, "routers", "router");
        }
        let routers = self.list(routers, "routers", Self::router);
        self.finish(&fields, TOP, TOP_LINKERD);
        Config { admin, namers, routers }
    }

    /// Reads each item of a list (null or absent is empty), keeping the ones that read.
    fn list<T>(
        &mut self,
        node: Option<&Node>,
        path: &str,
        mut read: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> Vec<T> {
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return Vec::new();
        };
        let Kind::Seq(items) = &node.kind else {
            self.error(node.pos, path, format!("expected a list, found {}", node.describe()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.extend(read(self, item, &format!("{path}[{i}]")));
        }
        out
    }

    /// Reports an empty list where at least one item is needed.
    fn at_least_one(&mut self, node: &Node, path: &str, what: &str) {
        if matches!(&node.kind, Kind::Seq(items) if items.is_empty()) {
            self.error(node.pos, path, format!("expected at least one {what}"));
        }
    }

    fn admin(&mut self, node: Option<&Node>, root: Pos) -> AdminConfig {
        let defaults = AdminConfig::default();
        let Some(node) = node else {
            self.bind(SocketAddr::new(defaults.ip, defaults.port), root, "admin");
            return defaults;
        };
        let mut fields = self.fields(node, "admin");
        let ip_pos = fields.key_pos("ip").unwrap_or(node.pos);
        let ip = self.optional_or(&mut fields, "ip", IP, parse_ip, defaults.ip);
        let port = self.optional_or(&mut fields, "port", PORT, parse_port, defaults.port);
        let token_set = ["token", "tokenFile", "tokenEnv"].iter().any(|k| fields.key_pos(k).is_some());
        let token = self.admin_token(&mut fields);
        let tls = fields.take_present("tls").and_then(|n| self.server_tls(n, "admin.tls"));
        let hosts_node = fields.take_present("hosts");
        let hosts = self.strings(hosts_node, "admin.hosts", "a host name");
        let connections = self.connection_limits(&mut fields, defaults.connections);
        self.finish(&fields, ADMIN, ADMIN_LINKERD);
        if let (Some(ip), Some(port)) = (ip, port) {
            self.bind(SocketAddr::new(ip, port), node.pos, "admin");
            // A token that failed to load was reported already; don't pile a second error on it.
            self.admin_exposure(ip, token.is_some() || token_set, ip_pos);
        }
        AdminConfig {
            ip: ip.unwrap_or(defaults.ip),
            port: port.unwrap_or(defaults.port),
            token,
            tls,
            hosts,
            connections,
        }
    }

    /// The listener keys servers and admin share; each falls back to `defaults`.
    fn connection_limits(&mut self, fields: &mut Fields<'_>, defaults: ConnectionLimits) -> ConnectionLimits {
        let mut ms = |key: &str, default: u64| self.optional(fields, key, MS, parse_ms).unwrap_or(default);
        let header_timeout_ms = ms("headerTimeoutMs", defaults.header_timeout_ms);
        let idle_timeout_ms = ms("idleTimeoutMs", defaults.idle_timeout_ms);
        let body_idle_timeout_ms = ms("bodyIdleTimeoutMs", defaults.body_idle_timeout_ms);
        let h2_keep_alive_ms = ms("h2KeepAliveMs", defaults.h2_keep_alive_ms);
        let count = "a whole number of at least 1";
        let max_connections =
            self.optional(fields, "maxConnections", count, parse_count).unwrap_or(defaults.max_connections);
        ConnectionLimits { header_timeout_ms, idle_timeout_ms, body_idle_timeout_ms, max_connections, h2_keep_alive_ms }
    }

    fn namer(&mut self, node: &Node, path: &str) -> Option<NamerConfig> {
        let mut fields = self.fields(node, path);
        let kind = self.required(&mut fields, "kind");
        let kind = kind.and_then(|k| self.one_of(k, &fields.child("kind"), "namer kind", NAMER_KINDS));
        if kind == Some("io.l5d.consul") {
            return self.consul_namer(fields);
        }
        let Some("io.l5d.fs") = kind else {
            // Unknown kind: its other keys mean nothing to us, so no warnings for them.
            return None;
        };
        let prefix = match fields.take("prefix") {
            Some(node) => self.path(node, &fields.child("prefix")),
            None => Path::read("/io.l5d.fs").ok(),
        };
        if let Some(prefix) = &prefix {
            self.unique_prefix(prefix, &fields);
        }
        let root_dir = self.required(&mut fields, "rootDir");
        let root_dir = root_dir.and_then(|n| self.value(n, &fields.child("rootDir"), "a directory", parse_string));
        self.finish(&fields, FS_NAMER, NAMER_LINKERD);
        Some(NamerConfig::Fs(FsNamerConfig { prefix: prefix?, root_dir: PathBuf::from(root_dir?) }))
    }

    /// Two namers under one prefix would make `/#/<prefix>` ambiguous.
    fn unique_prefix(&mut self, prefix: &Path, fields: &Fields<'_>) {
        let text = prefix.to_string();
        if let Some((_, first)) = self.prefixes.iter().find(|(p, _)| *p == text) {
            let message = format!("namer prefix {text} is already used by {first}");
            let pos = fields.key_pos("prefix").unwrap_or(fields.pos);
            self.error(pos, &fields.child("prefix"), message);
        }
        self.prefixes.push((text, fields.path.clone()));
    }

    fn router(&mut self, node: &Node, path: &str) -> Option<RouterConfig> {
        let mut fields = self.fields(node, path);
        let protocol = self.required(&mut fields, "protocol");
        let protocol = match protocol.and_then(|p| self.one_of(p, &fields.child("protocol"), "protocol", PROTOCOLS)) {
            Some("h2") => Protocol::H2,
            _ => Protocol::Http,
        };
        let label = self.label(&mut fields, protocol);
        let (dtab, legacy_base_dtab) = self.router_dtab(&mut fields);
        let identifiers = match fields.take_present("identifier") {
            Some(node) => self.identifiers(node, &fields.child("identifier")),
            None if legacy_base_dtab => vec![IdentifierConfig::MethodAndHost { http_uri_in_dst: false }],
            None => vec![IdentifierConfig::HeaderToken { header: http::header::HOST }],
        };
        let dst_prefix = match fields.take("dstPrefix") {
            Some(node) => self.path(node, &fields.child("dstPrefix")),
            None => Path::read(if legacy_base_dtab { "/http" } else { "/svc" }).ok(),
        };
        let servers = self.servers(&mut fields);
        let client = self.client(fields.take_present("client"), &fields.child("client"));
        let service = self.service(fields.take_present("service"), &fields.child("service"));
        let binding_timeout_ms = self.optional(&mut fields, "bindingTimeoutMs", MS, parse_ms);
        let kb = "a positive number of KiB";
        let max_headers_kb = self.optional(&mut fields, "maxHeadersKB", kb, parse_ms);
        let max_request_kb = self.optional(&mut fields, "maxRequestKB", kb, parse_ms);
        let access_log = self.optional(&mut fields, "httpAccessLog", "a file path", |t| {
            Some(PathBuf::from(t)).filter(|_| !t.trim().is_empty())
        });
        let dtab_store = self.dtab_store(fields.take_present("dtabStore"), &fields.child("dtabStore"), &label);
        let max_hops = self.optional(&mut fields, "maxHops", "a whole number of at least 1", parse_count);
        self.finish(&fields, ROUTER, ROUTER_LINKERD);
        let (dtab, dst_prefix) = (dtab?, dst_prefix?);
        Some(RouterConfig {
            protocol,
            label,
            identifiers,
            dst_prefix,
            dtab,
            legacy_base_dtab,
            servers,
            client,
            service,
            dtab_store,
            binding_timeout_ms: binding_timeout_ms.unwrap_or(10_000),
            max_headers_kb: max_headers_kb.unwrap_or(64),
            max_request_kb,
            http_access_log: access_log,
            max_hops: max_hops.unwrap_or(16),
        })
    }

    /// The label (default: the protocol name), reported when another router has it already.
    fn label(&mut self, fields: &mut Fields<'_>, protocol: Protocol) -> String {
        let key = fields.child("label");
        let (label, pos) = match fields.take("label") {
            Some(node) => match self.value(node, &key, LABEL, parse_label) {
                Some(label) => (label, node.pos),
                None => return protocol.as_str().to_string(),
            },
            None => (protocol.as_str().to_string(), fields.pos),
        };
        if let Some((_, first)) = self.labels.iter().find(|(l, _)| *l == label) {
            let message = format!("router label `{label}` is already used by {first}; labels must be unique");
            self.error(pos, &key, message);
        }
        self.labels.push((label.clone(), fields.path.clone()));
        label
    }

    /// `dtab` or the pre-0.9 `baseDtab` (never both); returns the dtab and whether it was legacy.
    fn router_dtab(&mut self, fields: &mut Fields<'_>) -> (Option<Dtab>, bool) {
        let (dtab, base) = (fields.take_present("dtab"), fields.take_present("baseDtab"));
        if let (Some(_), Some(_)) = (dtab, base) {
            // Blame whichever of the two comes second in the file.
            let index = |key| fields.key_pos(key).map(|pos| pos.index);
            let key = if index("dtab") > index("baseDtab") { "dtab" } else { "baseDtab" };
            let pos = fields.key_pos(key).unwrap_or(fields.pos);
            let message = "`dtab` and `baseDtab` cannot both be set; use `dtab`";
            self.error(pos, &fields.child(key), message.to_string());
        }
        match (dtab, base) {
            (Some(node), _) => (self.dtab(node, &fields.child("dtab")), false),
            (None, Some(node)) => (self.dtab(node, &fields.child("baseDtab")), true),
            (None, None) => (Dtab::parse("").ok(), false),
        }
    }

    /// `identifier:` is one map or a list of maps tried in order.
    fn identifiers(&mut self, node: &Node, path: &str) -> Vec<IdentifierConfig> {
        if let Kind::Map(_) = node.kind {
            return self.identifier(node, path).into_iter().collect();
        }
        self.at_least_one(node, path, "identifier");
        self.list(Some(node), path, Self::identifier)
    }

    fn identifier(&mut self, node: &Node, path: &str) -> Option<IdentifierConfig> {
        let mut fields = self.fields(node, path);
        let kind = self.required(&mut fields, "kind")?;
        let kind = self.one_of(kind, &fields.child("kind"), "identifier kind", IDENTIFIER_KINDS)?;
        let (identifier, known): (_, &[&str]) = match kind {
            "io.l5d.header.token" => {
                (IdentifierConfig::HeaderToken { header: self.header(&mut fields, "host") }, &["kind", "header"])
            }
            "io.l5d.header" => {
                (IdentifierConfig::Header { header: self.header(&mut fields, "l5d-name") }, &["kind", "header"])
            }
            "io.l5d.methodAndHost" => {
                let uri = self.optional(&mut fields, "httpUriInDst", BOOL, parse_bool);
                (IdentifierConfig::MethodAndHost { http_uri_in_dst: uri.unwrap_or(false) }, &["kind", "httpUriInDst"])
            }
            _ => {
                let count = |t: &str| t.parse::<usize>().ok().filter(|n| *n >= 1);
                let segments = self.optional(&mut fields, "segments", "a whole number of at least 1", count);
                let consume = self.optional(&mut fields, "consume", BOOL, parse_bool);
                let path =
                    IdentifierConfig::Path { segments: segments.unwrap_or(1), consume: consume.unwrap_or(false) };
                (path, &["kind", "segments", "consume"])
            }
        };
        self.finish(&fields, known, NONE);
        Some(identifier)
    }

    fn servers(&mut self, fields: &mut Fields<'_>) -> Vec<ServerConfig> {
        let path = fields.child("servers");
        let Some(node) = self.required(fields, "servers") else {
            return Vec::new();
        };
        self.at_least_one(node, &path, "server");
        self.list(Some(node), &path, Self::server)
    }

    fn server(&mut self, node: &Node, path: &str) -> Option<ServerConfig> {
        let mut fields = self.fields(node, path);
        let defaults = ServerConfig::default();
        let ip = self.optional_or(&mut fields, "ip", IP, parse_ip, defaults.ip);
        let port = self.optional_or(&mut fields, "port", PORT, parse_port, defaults.port);
        let clear = self.optional(&mut fields, "clearContext", BOOL, parse_bool);
        let count = "a whole number of at least 1";
        let max_concurrent = self.optional(&mut fields, "maxConcurrentRequests", count, parse_count);
        let tls_node = fields.take_present("tls");
        let tls = tls_node.and_then(|n| self.server_tls(n, &fields.child("tls")));
        let mtls = tls.as_ref().is_some_and(|t| t.require_client_auth);
        let authorization = fields
            .take_present("authorization")
            .and_then(|n| self.authorization(n, &fields.child("authorization"), mtls));
        let clear_pos = fields.key_pos("clearContext").unwrap_or(node.pos);
        let connections = self.connection_limits(&mut fields, defaults.connections);
        let detail = fields.take("errorDetail");
        let detail = detail.and_then(|n| self.one_of(n, &fields.child("errorDetail"), "errorDetail", ERROR_DETAILS));
        self.finish(&fields, SERVER, SERVER_LINKERD);
        // A bad ip or port was reported already; binding a fallback would add a false clash.
        let (ip, port) = (ip?, port?);
        self.bind(SocketAddr::new(ip, port), node.pos, path);
        let clear_context = clear.unwrap_or(defaults.clear_context);
        self.context_exposure(ip, !clear_context, mtls, clear_pos, &fields.child("clearContext"));
        let error_detail = match detail {
            Some("generic") => ErrorDetail::Generic,
            Some(_) => ErrorDetail::Full,
            None => ServerConfig::default_error_detail(ip, mtls),
        };
        Some(ServerConfig {
            ip,
            port,
            clear_context,
            max_concurrent_requests: max_concurrent,
            tls,
            authorization,
            connections,
            error_detail,
        })
    }

    /// `kind: io.l5d.global` is linkerd's explicit spelling of "one policy for all".
    fn policy_kind(&mut self, fields: &mut Fields<'_>) {
        if let Some(kind) = fields.take("kind") {
            self.one_of(kind, &fields.child("kind"), "kind", CLIENT_KINDS);
        }
    }

    fn client(&mut self, node: Option<&Node>, path: &str) -> ClientConfig {
        let defaults = ClientConfig::default();
        let Some(node) = node else { return defaults };
        let mut fields = self.fields(node, path);
        self.policy_kind(&mut fields);
        let connect = self.optional(&mut fields, "connectTimeoutMs", MS, parse_ms);
        let h2_upgrade = self.optional(&mut fields, "h2Upgrade", "true or false", parse_bool);
        let (params, idle) = self.client_params(&mut fields, true, &[]);
        let configs = self.overrides(&mut fields, CLIENT_OVERRIDE, |c, f, caps| c.client_params(f, false, caps).0);
        self.finish(&fields, CLIENT, CLIENT_LINKERD);
        ClientConfig {
            connect_timeout_ms: connect.unwrap_or(defaults.connect_timeout_ms),
            request_attempt_timeout_ms: params.request_attempt_timeout_ms,
            pool: ConnectionPool {
                idle_time_ms: idle.unwrap_or(defaults.pool.idle_time_ms),
                limits: PoolLimits {
                    max_size: params.pool.max_size.unwrap_or(defaults.pool.limits.max_size),
                    max_waiters: params.pool.max_waiters.unwrap_or(defaults.pool.limits.max_waiters),
                    min_size: params.pool.min_size.unwrap_or(defaults.pool.limits.min_size),
                },
            },
            load_balancer: params.load_balancer.unwrap_or(defaults.load_balancer),
            failure_accrual: params.failure_accrual.unwrap_or(defaults.failure_accrual),
            h2_upgrade: h2_upgrade.unwrap_or(defaults.h2_upgrade),
            tls: params.tls,
            configs,
        }
    }

    /// The client keys a `configs:` entry may also set; with `global`, `hostConnectionPool.idleTimeMs` too.
    fn client_params(
        &mut self,
        fields: &mut Fields<'_>,
        global: bool,
        captures: &[(usize, String)],
    ) -> (ClientParams, Option<u64>) {
        let mut params = ClientParams {
            request_attempt_timeout_ms: self.optional(fields, "requestAttemptTimeoutMs", MS, parse_ms),
            ..ClientParams::default()
        };
        if let Some(node) = fields.take_present("tls") {
            params.tls = self.client_tls(node, &fields.child("tls"), captures, false);
        }
        if let Some(node) = fields.take_present("loadBalancer") {
            params.load_balancer = self.load_balancer(node, &fields.child("loadBalancer"));
        }
        if let Some(node) = fields.take_present("failureAccrual") {
            params.failure_accrual = self.failure_accrual(node, &fields.child("failureAccrual"));
        }
        let mut idle = None;
        if let Some(pool) = fields.take_present("hostConnectionPool") {
            let mut pool = self.fields(pool, &fields.child("hostConnectionPool"));
            if global {
                idle = self.optional(&mut pool, "idleTimeMs", MS, parse_ms);
            }
            let count = "a whole number of at least 1";
            let any = "a whole number";
            params.pool.max_size = self.optional(&mut pool, "maxSize", count, parse_count);
            params.pool.max_waiters = self.optional(&mut pool, "maxWaiters", any, |t| t.parse().ok());
            let min_pos = pool.key_pos("minSize");
            params.pool.min_size = self.optional(&mut pool, "minSize", any, |t| t.parse().ok());
            let max = params.pool.max_size.unwrap_or(PoolLimits::default().max_size);
            if let (Some(min), Some(pos)) = (params.pool.min_size, min_pos) {
                if min > max {
                    let message = format!("minSize {min} is larger than maxSize {max}");
                    self.error(pos, &pool.child("minSize"), message);
                }
            }
            self.finish(&pool, if global { POOL } else { POOL_OVERRIDE }, &[]);
        }
        (params, idle)
    }

    /// `configs:` — `kind: io.l5d.static` entries, each a `prefix` plus parameters to override.
    fn overrides<P>(
        &mut self,
        fields: &mut Fields<'_>,
        known: &[&str],
        mut read: impl FnMut(&mut Self, &mut Fields<'_>, &[(usize, String)]) -> P,
    ) -> Vec<Override<P>> {
        let Some(list) = fields.take_present("configs") else { return Vec::new() };
        let path = fields.child("configs");
        let Kind::Seq(items) = &list.kind else {
            self.error(list.pos, &path, format!("expected a list of {{prefix, …}} maps, found {}", list.describe()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let mut f = self.fields(item, &item_path);
            let prefix = self.required(&mut f, "prefix").and_then(|n| self.prefix(n, &f.child("prefix")));
            let captures = prefix.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
            let params = read(self, &mut f, &captures);
            self.finish(&f, known, NONE);
            if let Some((prefix, captures)) = prefix {
                out.push(Override { prefix, captures, params });
            }
        }
        out
    }

    /// A dtab prefix (segments may be `*`, or `{name}` to capture the segment as a variable), with a syntax error
    /// pointed at its character.
    fn prefix(&mut self, node: &Node, key: &str) -> Option<(Prefix, Vec<(usize, String)>)> {
        let text = self.value(node, key, "a prefix such as /svc/forex-rate", |t| Some(t.to_string()))?;
        let (wild, captures) = tls::captures(&text);
        let parsed = if captures.is_empty() { Prefix::read(&text) } else { Prefix::read(&wild) };
        let prefix = parsed.map_err(|e| self.parse_error(node, key, &text, "invalid prefix", &e)).ok()?;
        Some((prefix, captures))
    }

    fn kind_of(&mut self, fields: &mut Fields<'_>, what: &str, known: &[&'static str]) -> Option<&'static str> {
        let node = self.required(fields, "kind")?;
        self.one_of(node, &fields.child("kind"), what, known)
    }

    fn load_balancer(&mut self, node: &Node, path: &str) -> Option<LoadBalancer> {
        let mut f = self.fields(node, path);
        let kind = self.kind_of(&mut f, "load balancer", LB_KINDS);
        let decay = self.optional(&mut f, "decayTimeMs", MS, parse_ms);
        self.finish(&f, &["kind", "decayTimeMs"], &["maxEffort", "enableProbation"]);
        match kind? {
            "ewma" => Some(LoadBalancer::Ewma { decay_ms: decay.unwrap_or(10_000) }),
            "p2c" => Some(LoadBalancer::P2c),
            _ => Some(LoadBalancer::RoundRobin),
        }
    }

    fn backoff(&mut self, node: Option<&Node>, path: &str, default: Backoff) -> Backoff {
        let Some(node) = node else { return default };
        let mut f = self.fields(node, path);
        let kind = self.kind_of(&mut f, "backoff", BACKOFF_KINDS);
        let ms = "a number of milliseconds";
        let nonneg = |t: &str| t.parse::<u64>().ok();
        let backoff = match kind {
            Some("constant") => {
                let v = self.optional(&mut f, "ms", ms, nonneg);
                self.finish(&f, &["kind", "ms"], NONE);
                Backoff::Constant { ms: v.unwrap_or(0) }
            }
            _ => {
                let (dmin, dmax) = match default {
                    Backoff::Jittered { min_ms, max_ms } => (min_ms, max_ms),
                    Backoff::Constant { ms } => (ms, ms),
                };
                let min_ms = self.optional(&mut f, "minMs", ms, nonneg).unwrap_or(dmin);
                let max_ms = self.optional(&mut f, "maxMs", ms, nonneg).unwrap_or(dmax.max(min_ms));
                if max_ms < min_ms {
                    self.error(node.pos, path, format!("maxMs ({max_ms}) is below minMs ({min_ms})"));
                }
                self.finish(&f, &["kind", "minMs", "maxMs"], NONE);
                Backoff::Jittered { min_ms, max_ms }
            }
        };
        backoff
    }

    fn failure_accrual(&mut self, node: &Node, path: &str) -> Option<FailureAccrual> {
        let mut f = self.fields(node, path);
        let kind = self.kind_of(&mut f, "failure accrual", ACCRUAL_KINDS);
        let default_backoff = Backoff::Jittered { min_ms: 5_000, max_ms: 300_000 };
        let backoff = self.backoff(f.take_present("backoff"), &f.child("backoff"), default_backoff);
        let result = match kind? {
            "none" => {
                self.finish(&f, &["kind"], NONE);
                FailureAccrual::None
            }
            "io.l5d.consecutiveFailures" => {
                let n = self.optional(&mut f, "failures", "a whole number from 1 to 4294967295", parse_count_u32);
                self.finish(&f, &["kind", "failures", "backoff"], NONE);
                FailureAccrual::ConsecutiveFailures { failures: n.unwrap_or(5), backoff }
            }
            _ => {
                let rate = self.optional(&mut f, "successRate", "a number from 0 to 1", |t| {
                    t.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r))
                });
                let n = self.optional(&mut f, "requests", "a whole number from 1 to 4294967295", parse_count_u32);
                self.finish(&f, &["kind", "successRate", "requests", "backoff"], NONE);
                FailureAccrual::SuccessRate { success_rate: rate.unwrap_or(0.8), requests: n.unwrap_or(20), backoff }
            }
        };
        Some(result)
    }

    fn service(&mut self, node: Option<&Node>, path: &str) -> ServiceConfig {
        let Some(node) = node else {
            return ServiceConfig::default();
        };
        let mut fields = self.fields(node, path);
        self.policy_kind(&mut fields);
        let params = self.service_params(&mut fields);
        let configs = self.overrides(&mut fields, SERVICE_OVERRIDE, |c, f, _| c.service_params(f));
        self.finish(&fields, SERVICE, SERVICE_LINKERD);
        ServiceConfig {
            total_timeout_ms: params.total_timeout_ms,
            classifier: params.classifier.unwrap_or_default(),
            retries: params.retries.unwrap_or_default(),
            hedging: params.hedging,
            configs,
        }
    }

    fn service_params(&mut self, fields: &mut Fields<'_>) -> ServiceParams {
        let total_timeout_ms = self.optional(fields, "totalTimeoutMs", MS, parse_ms);
        let classifier = fields.take_present("responseClassifier").and_then(|node| {
            let path = fields.child("responseClassifier");
            let mut f = self.fields(node, &path);
            let kind = self.required(&mut f, "kind");
            self.finish(&f, &["kind"], NONE);
            let kind = kind?;
            let found = kind.text().and_then(Classifier::from_kind);
            if found.is_none() {
                let msg =
                    format!("unknown response classifier {}; known: {}", kind.describe(), Classifier::KINDS.join(", "));
                self.error(kind.pos, &f.child("kind"), msg);
            }
            found
        });
        let retries = fields.take_present("retries").map(|node| self.retries(node, &fields.child("retries")));
        let hedging = fields.take_present("hedging").and_then(|node| self.hedging(node, &fields.child("hedging")));
        ServiceParams { total_timeout_ms, classifier, retries, hedging }
    }

    fn hedging(&mut self, node: &Node, path: &str) -> Option<Hedging> {
        let mut f = self.fields(node, path);
        let percentile = self.optional(&mut f, "percentile", "a number from 50 to 99.9", |t| {
            t.parse::<f64>().ok().filter(|p| (50.0..=99.9).contains(p))
        });
        let min_ms = self.optional(&mut f, "minMs", MS, parse_ms);
        self.finish(&f, &["percentile", "minMs"], NONE);
        Some(Hedging { percentile: percentile.unwrap_or(90.0), min_ms: min_ms.unwrap_or(1) })
    }

    fn retries(&mut self, node: &Node, path: &str) -> Retries {
        let defaults = Retries::default();
        let mut f = self.fields(node, path);
        let budget = match f.take_present("budget") {
            Some(b) => {
                let d = RetryBudget::default();
                let mut bf = self.fields(b, &f.child("budget"));
                let ttl = self.optional(&mut bf, "ttlSecs", "a whole number of seconds, at least 1", parse_ms);
                let min = self.optional(&mut bf, "minRetriesPerSec", "a whole number", |t| t.parse::<u32>().ok());
                let pct = self.optional(&mut bf, "percentCanRetry", "a number from 0 to 1000", |t| {
                    t.parse::<f64>().ok().filter(|p| (0.0..=1000.0).contains(p))
                });
                self.finish(&bf, &["ttlSecs", "minRetriesPerSec", "percentCanRetry"], NONE);
                RetryBudget {
                    ttl_secs: ttl.unwrap_or(d.ttl_secs),
                    min_retries_per_sec: min.unwrap_or(d.min_retries_per_sec),
                    percent_can_retry: pct.unwrap_or(d.percent_can_retry),
                }
            }
            None => defaults.budget,
        };
        let backoff = self.backoff(f.take_present("backoff"), &f.child("backoff"), defaults.backoff);
        self.finish(&f, &["budget", "backoff"], NONE);
        Retries { budget, backoff }
    }
}
