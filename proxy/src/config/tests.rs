//! Tests for the config loader: accepted shapes, defaults, every error kind with its
//! exact position, warnings, and the effective-config JSON.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

/// The original system's ingress sidecar config (linkerd 1, from the write-up of the system this project replaces), exactly as written.
const ORIGINAL_INGRESS: &str = "\
admin:
  port: 9990
routers:
- protocol: http
  label: incoming-forex-exchange-rate
  baseDtab: |
    /local => /$/inet/127.1/80;
    /http/1.1/*/* => /local;
  servers:
  - port: 4140
    ip: 0.0.0.0
";

const MODERN: &str = "\
admin:
  ip: 127.0.2.1
  port: 9990
  token: s3cret
namers:
- kind: io.l5d.fs
  rootDir: /var/run/switchyard/disco
routers:
- protocol: http
  label: ingress
  dtab: |
    /svc => /$/inet/127.0.2.1/8080;
  servers:
  - ip: 127.0.2.1
    port: 4140
- protocol: h2
  label: egress
  identifier: {kind: io.l5d.path, segments: 2, consume: true}
  dstPrefix: /out
  dtab: /out => /#/io.l5d.fs;
  servers:
  - ip: 127.0.2.1
    port: 4141
    clearContext: false
  client:
    kind: io.l5d.global
    connectTimeoutMs: 250
    requestAttemptTimeoutMs: 800
    hostConnectionPool:
      idleTimeMs: 3000
  service:
    kind: io.l5d.global
    totalTimeoutMs: 2500
";

fn path(text: &str) -> Path {
    Path::read(text).expect("test path is valid")
}

fn dtab(text: &str) -> Dtab {
    Dtab::parse(text).expect("test dtab is valid")
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(loaded) => panic!("expected errors, config loaded: {:?}", loaded.config),
        Err(errors) => errors,
    }
}

fn loaded(text: &str) -> Loaded {
    match load(text) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("expected a config, got errors: {errors:#?}"),
    }
}

/// Errors as `line:column key` strings, the part tests pin exactly.
fn places(errors: &[Diagnostic]) -> Vec<String> {
    errors.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.key)).collect()
}

/// The character of `text` at a 1-based line and column.
fn char_at(text: &str, line: usize, column: usize) -> Option<char> {
    text.lines().nth(line.checked_sub(1)?)?.chars().nth(column.checked_sub(1)?)
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn original_ingress_config_runs_as_written() {
    let loaded = loaded(ORIGINAL_INGRESS);
    assert_eq!(loaded.warnings, vec![]);
    let config = loaded.config;
    assert_eq!(config.admin, AdminConfig { ip: ip(127, 0, 0, 1), port: 9990, ..AdminConfig::default() });
    assert_eq!(config.namers, vec![]);
    let router = &config.routers[0];
    assert_eq!(router.protocol, Protocol::Http);
    assert_eq!(router.label, "incoming-forex-exchange-rate");
    assert!(router.legacy_base_dtab);
    // baseDtab brings the pre-0.9 defaults with it.
    assert_eq!(router.identifiers, vec![IdentifierConfig::MethodAndHost { http_uri_in_dst: false }]);
    assert_eq!(router.dst_prefix, path("/http"));
    assert_eq!(router.dtab, dtab("/local => /$/inet/127.1/80;\n/http/1.1/*/* => /local;\n"));
    // On a non-loopback address with no mutual TLS, error answers are generic by default.
    let server =
        ServerConfig { ip: ip(0, 0, 0, 0), port: 4140, error_detail: ErrorDetail::Generic, ..Default::default() };
    assert_eq!(router.servers, vec![server]);
    assert_eq!(router.client, ClientConfig::default());
    assert_eq!(router.service, ServiceConfig { total_timeout_ms: None, ..ServiceConfig::default() });
}

#[test]
fn modern_config_loads_every_setting() {
    let loaded = loaded(MODERN);
    assert_eq!(loaded.warnings, vec![]);
    let config = loaded.config;
    assert_eq!(config.admin.ip, ip(127, 0, 2, 1));
    assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
    let fs = FsNamerConfig { prefix: path("/io.l5d.fs"), root_dir: "/var/run/switchyard/disco".into() };
    assert_eq!(config.namers, vec![NamerConfig::Fs(fs)]);

    let [ingress, egress] = &config.routers[..] else { panic!("two routers expected") };
    assert_eq!((ingress.label.as_str(), egress.label.as_str()), ("ingress", "egress"));
    assert!(!ingress.legacy_base_dtab);
    assert_eq!(ingress.identifiers, vec![IdentifierConfig::HeaderToken { header: http::header::HOST }]);
    assert_eq!(ingress.dst_prefix, path("/svc"));
    assert_eq!(ingress.dtab, dtab("/svc => /$/inet/127.0.2.1/8080;"));

    assert_eq!(egress.protocol, Protocol::H2);
    assert_eq!(egress.identifiers, vec![IdentifierConfig::Path { segments: 2, consume: true }]);
    assert_eq!(egress.dst_prefix, path("/out"));
    assert_eq!(egress.dtab, dtab("/out => /#/io.l5d.fs;"));
    assert_eq!(
        egress.servers,
        vec![ServerConfig { ip: ip(127, 0, 2, 1), port: 4141, clear_context: false, ..ServerConfig::default() }]
    );
    let client = ClientConfig {
        connect_timeout_ms: 250,
        request_attempt_timeout_ms: Some(800),
        pool: ConnectionPool { idle_time_ms: 3000, ..ConnectionPool::default() },
        ..ClientConfig::default()
    };
    assert_eq!(egress.client, client);
    assert_eq!(egress.service, ServiceConfig { total_timeout_ms: Some(2500), ..ServiceConfig::default() });
}

#[test]
fn minimal_router_gets_the_documented_defaults() {
    let config = loaded("routers:\n- protocol: h2\n  servers: [{}]\n").config;
    assert_eq!(config.admin, AdminConfig::default());
    let router = &config.routers[0];
    assert_eq!(router.label, "h2");
    assert_eq!(router.identifiers, vec![IdentifierConfig::HeaderToken { header: http::header::HOST }]);
    assert_eq!(router.dst_prefix, path("/svc"));
    assert_eq!(router.dtab, dtab(""));
    assert!(!router.legacy_base_dtab);
    assert_eq!(router.servers, vec![ServerConfig::default()]);
    assert_eq!(ServerConfig::default().port, 4140);
    assert_eq!(
        router.client,
        ClientConfig {
            connect_timeout_ms: 1000,
            request_attempt_timeout_ms: None,
            pool: ConnectionPool {
                idle_time_ms: 10_000,
                limits: PoolLimits { max_size: 256, max_waiters: 10_000, min_size: 0 },
            },
            h2_upgrade: true,
            ..ClientConfig::default()
        }
    );
}

#[test]
fn identifier_list_keeps_order_and_kind_defaults() {
    let text = "\
routers:
- protocol: http
  identifier:
  - kind: io.l5d.header
  - kind: io.l5d.path
  - kind: io.l5d.methodAndHost
    httpUriInDst: true
  - kind: io.l5d.header.token
    header: X-Service
  servers: [{port: 4150}]
";
    let identifiers = &loaded(text).config.routers[0].identifiers;
    let expected = vec![
        IdentifierConfig::Header { header: http::HeaderName::from_static("l5d-name") },
        IdentifierConfig::Path { segments: 1, consume: false },
        IdentifierConfig::MethodAndHost { http_uri_in_dst: true },
        IdentifierConfig::HeaderToken { header: http::HeaderName::from_static("x-service") },
    ];
    assert_eq!(identifiers, &expected);
}

#[test]
fn example_config_is_valid_and_clean() {
    let loaded = loaded(example());
    assert_eq!(loaded.warnings, vec![]);
    let labels: Vec<_> = loaded.config.routers.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["ingress", "egress"]);
}

#[test]
fn yaml_syntax_error_has_scanner_position() {
    let errors = errors("admin:\n  port: 9990\n routers: [\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.starts_with("YAML syntax error"), "{}", errors[0]);
    assert!(errors[0].message.contains("did not find expected key"), "{}", errors[0]);
    // ` routers` is indented one space too many.
    assert_eq!((errors[0].line, errors[0].column), (3, 2));
}

#[test]
fn wrong_port_reads_like_the_documented_example() {
    let text = "\
routers:
- protocol: http
  label: ingress
  servers:
  - port: 4140
- protocol: http
  label: egress
  servers:
  - port: abc
";
    let errors = errors(text);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "9:11: routers[1].servers[0].port: expected a port number 0-65535 (0: any free port), found \"abc\""
    );
}

#[test]
fn bad_values_are_errors_at_their_node() {
    let text = "\
admin:
  ip: 300.1.1.1
  port: -1
routers:
- protocol: http
  identifier: {kind: io.l5d.header, header: bad header}
  dstPrefix: svc
  servers:
  - port: 70000
    clearContext: maybe
  client:
    connectTimeoutMs: -5
    hostConnectionPool: {idleTimeMs: 0}
  service: {totalTimeoutMs: [1]}
";
    let errors = errors(text);
    let expected = [
        "2:7 admin.ip",
        "3:9 admin.port",
        "6:45 routers[0].identifier.header",
        "7:14 routers[0].dstPrefix",
        "9:11 routers[0].servers[0].port",
        "10:19 routers[0].servers[0].clearContext",
        "12:23 routers[0].client.connectTimeoutMs",
        "13:38 routers[0].client.hostConnectionPool.idleTimeMs",
        "14:29 routers[0].service.totalTimeoutMs",
    ];
    assert_eq!(places(&errors), expected);
    assert_eq!(errors[0].message, "expected an IP address, found \"300.1.1.1\"");
    assert_eq!(errors[6].message, "expected a positive number of milliseconds, found \"-5\"");
    assert_eq!(errors[8].message, "expected a positive number of milliseconds, found a list");
    assert!(errors[3].message.starts_with("invalid path"), "{}", errors[3]);
}

#[test]
fn unknown_kinds_list_the_known_ones() {
    let text = "\
namers:
- kind: io.l5d.k8s
  host: localhost
routers:
- protocol: thrift
  identifier:
    kind: io.l5d.static
  servers: [{}]
  client: {kind: io.l5d.perHost}
";
    let errors = errors(text);
    assert_eq!(
        places(&errors),
        [
            "2:9 namers[0].kind",
            "5:13 routers[0].protocol",
            "7:11 routers[0].identifier.kind",
            "9:18 routers[0].client.kind"
        ]
    );
    assert_eq!(errors[0].message, "unknown namer kind \"io.l5d.k8s\"; known: io.l5d.fs, io.l5d.consul");
    assert_eq!(errors[1].message, "unknown protocol \"thrift\"; known: http, h2");
    assert_eq!(
        errors[2].message,
        "unknown identifier kind \"io.l5d.static\"; known: io.l5d.header.token, io.l5d.methodAndHost, io.l5d.path, io.l5d.header"
    );
}

#[test]
fn missing_required_keys_point_at_the_parent_map() {
    let text = "\
namers:
- kind: io.l5d.fs
routers:
- label: a
  servers: [{}]
- protocol: http
  label: b
  identifier: {header: Host}
";
    let errors = errors(text);
    let expected = [
        "2:3 namers[0].rootDir",
        "4:3 routers[0].protocol",
        "6:3 routers[1].servers",
        "8:15 routers[1].identifier.kind",
    ];
    assert_eq!(places(&errors), expected);
    assert_eq!(errors[0].message, "missing required key `rootDir`");
}

#[test]
fn empty_file_and_empty_lists_are_errors() {
    assert_eq!(places(&errors("")), ["1:1 routers"]);
    assert_eq!(places(&errors("# just a comment\n")), ["1:1 routers"]);
    assert_eq!(places(&errors("routers: []\n")), ["1:10 routers"]);
    let errors = errors("routers:\n- protocol: http\n  servers: []\n  identifier: []\n");
    assert_eq!(places(&errors), ["3:12 routers[0].servers", "4:15 routers[0].identifier"]);
    assert_eq!(errors[0].message, "expected at least one server");
}

#[test]
fn wrong_shapes_are_type_errors() {
    let errors = errors("admin: 9990\nrouters:\n  protocol: http\n");
    assert_eq!(places(&errors), ["1:8 admin", "3:3 routers"]);
    assert_eq!(errors[0].message, "expected a map, found \"9990\"");
    assert_eq!(errors[1].message, "expected a list, found a map");
    assert_eq!(places(&self::errors("- a\n- b\n")), ["1:1 "]);
}

#[test]
fn duplicate_router_labels_are_errors() {
    let text = "\
routers:
- protocol: http
  servers: [{port: 4140}]
- protocol: http
  servers: [{port: 4141}]
- protocol: h2
  label: http
  servers: [{port: 4142}]
- protocol: h2
  label: in/out
  servers: [{port: 4143}]
";
    let errors = errors(text);
    // The second router's label defaults to `http`, so the error sits on its map.
    assert_eq!(places(&errors), ["4:3 routers[1].label", "7:10 routers[2].label", "10:10 routers[3].label"]);
    assert_eq!(errors[0].message, "router label `http` is already used by routers[0]; labels must be unique");
}

#[test]
fn two_servers_on_one_socket_are_errors() {
    let text = "\
admin: {port: 9990}
routers:
- protocol: http
  label: a
  servers:
  - {ip: 0.0.0.0, port: 4140}
  - {port: 9990}
- protocol: http
  label: b
  servers:
  - {ip: 127.0.0.1, port: 4140}
  - {ip: 127.0.0.2, port: 4141}
  - {ip: 127.0.0.3, port: 4141}
";
    let errors = errors(text);
    assert_eq!(places(&errors), ["7:5 routers[0].servers[1]", "11:5 routers[1].servers[0]"]);
    assert_eq!(errors[0].message, "127.0.0.1:9990 is already bound by admin");
    assert_eq!(errors[1].message, "127.0.0.1:4140 is already bound by routers[0].servers[0]");
}

#[test]
fn duplicate_keys_are_errors() {
    let text = "admin:\n  port: 9990\n  port: 9991\nrouters:\n- protocol: http\n  servers: [{}]\n  protocol: h2\n";
    let errors = errors(text);
    assert_eq!(places(&errors), ["3:3 admin.port", "7:3 routers[0].protocol"]);
    assert_eq!(errors[0].message, "duplicate key `port` (first set at 2:3)");
}

#[test]
fn dtab_and_base_dtab_together_is_an_error() {
    let text = "routers:\n- protocol: http\n  dtab: /a => /b;\n  baseDtab: /a => /c;\n  servers: [{}]\n";
    let errors = errors(text);
    assert_eq!(places(&errors), ["4:3 routers[0].baseDtab"]);
}

#[test]
fn anchors_and_extra_documents_are_rejected_clearly() {
    let errors = errors("routers:\n- &r {protocol: http, servers: [{}]}\n- *r\n");
    assert_eq!(places(&errors), ["2:3 routers[0]"]);
    assert!(errors[0].message.contains("anchors and aliases are not supported"));
    let errors = self::errors("routers: []\n---\nrouters: []\n");
    assert_eq!(places(&errors), ["2:1 "]);
    assert_eq!(errors[0].message, "only one YAML document is allowed here");
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    // Deep block nesting stops at our own limit...
    let mut text = String::from("routers:\n");
    for depth in 1..100 {
        text.push_str(&"  ".repeat(depth));
        text.push_str("- \n");
    }
    let errors = errors(&text);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "nesting is too deep");
    // ...and deep flow nesting at the parser's.
    let text = format!("routers: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let errors = self::errors(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.starts_with("YAML syntax error"), "{}", errors[0]);
}

/// Where a dtab error lands in the file must be the same character the dtab parser blamed.
fn assert_dtab_error_maps(text: &str, dtab_text: &str) -> Diagnostic {
    let parse_error = Dtab::parse(dtab_text).expect_err("test dtab must be invalid");
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = errors[0].clone();
    assert!(error.message.starts_with("invalid dtab: "), "{error}");
    assert!(error.message.ends_with(&parse_error.message), "{error}");
    let blamed = char_at(dtab_text, parse_error.line, parse_error.column);
    assert_eq!(char_at(text, error.line, error.column), blamed, "{error} vs {parse_error:?}");
    error
}

#[test]
fn dtab_error_in_block_scalar_maps_to_file_line_and_column() {
    let text = "\
routers:
- protocol: http
  dtab: |
    /svc => /#/io.l5d.fs;
    /svc/forex-rate => /#/io.l5d.fs/forex-rate
    oops;
  servers: [{}]
";
    let dtab_text = "/svc => /#/io.l5d.fs;\n/svc/forex-rate => /#/io.l5d.fs/forex-rate\noops;\n";
    let error = assert_dtab_error_maps(text, dtab_text);
    let parse_error = Dtab::parse(dtab_text).expect_err("invalid");
    // Block starts on line 3 (`dtab: |`) and is indented by 4.
    assert_eq!((error.line, error.column), (3 + parse_error.line, 4 + parse_error.column));
    assert_eq!(error.key, "routers[0].dtab");
    // The `o` of `oops`, which the dtab parser blames.
    assert_eq!((error.line, error.column), (6, 5));
}

#[test]
fn dtab_error_in_plain_and_quoted_scalars_maps_to_offset_in_line() {
    let plain = "routers:\n- protocol: http\n  dtab: /svc => /a; /svc => oops\n  servers: [{}]\n";
    let error = assert_dtab_error_maps(plain, "/svc => /a; /svc => oops");
    assert_eq!((error.line, error.column), (3, 29));
    let quoted = "routers:\n- protocol: http\n  dtab: '/svc => /a; /svc => oops'\n  servers: [{}]\n";
    let error = assert_dtab_error_maps(quoted, "/svc => /a; /svc => oops");
    assert_eq!((error.line, error.column), (3, 30));
    let doubled = "routers:\n- protocol: http\n  dtab: \"/svc => /a;;\"\n  servers: [{}]\n";
    let error = assert_dtab_error_maps(doubled, "/svc => /a;;");
    assert_eq!((error.line, error.column), (3, 21));
    // A plain scalar folded over two lines still points into the second line.
    let folded = "routers:\n- protocol: http\n  dtab: /svc => /a;\n    /svc => oops\n  servers: [{}]\n";
    let error = assert_dtab_error_maps(folded, "/svc => /a; /svc => oops");
    assert_eq!((error.line, error.column), (4, 13));
}

#[test]
fn locate_maps_value_offsets_through_block_indentation_and_quotes() {
    let text = "a: |\n    xy\n    zw\nb: 'p''q'\n";
    let Some(yaml::Node { kind: yaml::Kind::Map(entries), .. }) = yaml::parse(text).expect("valid yaml") else {
        panic!("expected a map");
    };
    let block = &entries[0].1;
    let at = |node, value, target| {
        let pos = yaml::locate(text, node, value, target);
        (pos.line, pos.column)
    };
    assert_eq!(at(block, "xy\nzw\n", 0), (2, 5));
    assert_eq!(at(block, "xy\nzw\n", 4), (3, 6));
    let quoted = &entries[1].1;
    // `p'q`: the `q` is after the doubled quote, at column 8.
    assert_eq!(at(quoted, "p'q", 2), (4, 8));
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let text = "\
admin:
  port: nine
namers:
- kind: io.l5d.fs
routers:
- protocol: http
  dtab: /svc => ;;
  servers:
  - port: 4140
    ip: nowhere
";
    let errors = errors(text);
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["admin.port", "namers[0].rootDir", "routers[0].dtab", "routers[0].servers[0].ip"]);
    let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 7, 10]);
}

#[test]
fn linkerd_only_and_unknown_keys_are_warnings() {
    let text = "\
admin:
  port: 9990
  httpInterfaceWhitelist: [127.0.0.1]
namers:
- kind: io.l5d.fs
  rootDir: disco
  experimental: true
routers:
- protocol: http
  interpreter: {kind: default}
  servers:
  - port: 4140
    announce: [/#/io.l5d.serversets]
  lable: oops
telemetry:
- kind: io.l5d.prometheus
";
    let loaded = loaded(text);
    assert_eq!(loaded.config.routers[0].label, "http");
    let places: Vec<_> = loaded.warnings.iter().map(|w| format!("{}:{} {}", w.line, w.column, w.key)).collect();
    let expected = [
        "3:3 admin.httpInterfaceWhitelist",
        "7:3 namers[0].experimental",
        "10:3 routers[0].interpreter",
        "13:5 routers[0].servers[0].announce",
        "14:3 routers[0].lable",
        "15:1 telemetry",
    ];
    assert_eq!(places, expected);
    assert_eq!(loaded.warnings[1].message, "`experimental` is a linkerd option switchyard does not implement; ignored");
    assert!(loaded.warnings[4].message.starts_with("unknown key `lable` ignored (known here: protocol, label,"));
}

/// Adds `extra`'s keys into `into`, recursively.
fn merge(into: &mut serde_json::Value, extra: &serde_json::Value) {
    if let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            match into.get_mut(k) {
                Some(existing) if existing.is_object() => merge(existing, v),
                _ => {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

#[test]
fn effective_config_serialises_in_linkerd_shape() {
    let config = loaded(MODERN).config;
    let json = serde_json::to_value(&config).expect("config serialises");
    let expected = serde_json::json!({
        "admin": {"ip": "127.0.2.1", "port": 9990, "token": "<redacted>", "headerTimeoutMs": 10000,
                  "idleTimeoutMs": 60000, "bodyIdleTimeoutMs": 10000, "maxConnections": 128, "h2KeepAliveMs": 20000},
        "namers": [{"kind": "io.l5d.fs", "prefix": "/io.l5d.fs", "rootDir": "/var/run/switchyard/disco"}],
        "routers": [
            {
                "protocol": "http", "label": "ingress",
                "identifier": [{"kind": "io.l5d.header.token", "header": "host"}],
                "dstPrefix": "/svc", "dtab": dtab("/svc => /$/inet/127.0.2.1/8080;").to_string(),
                "legacyBaseDtab": false,
                "servers": [{"ip": "127.0.2.1", "port": 4140, "clearContext": true}],
                "client": {"connectTimeoutMs": 1000, "hostConnectionPool": {"idleTimeMs": 10000}},
                "service": {}
            },
            {
                "protocol": "h2", "label": "egress",
                "identifier": [{"kind": "io.l5d.path", "segments": 2, "consume": true}],
                "dstPrefix": "/out", "dtab": dtab("/out => /#/io.l5d.fs;").to_string(),
                "legacyBaseDtab": false,
                "servers": [{"ip": "127.0.2.1", "port": 4141, "clearContext": false}],
                "client": {"connectTimeoutMs": 250, "requestAttemptTimeoutMs": 800, "hostConnectionPool": {"idleTimeMs": 3000}},
                "service": {"totalTimeoutMs": 2500}
            }
        ]
    });
    // Resilience defaults are shown explicitly, so /config.json says what is in force.
    let defaults = serde_json::json!({
        "bindingTimeoutMs": 10000, "maxHeadersKB": 64, "maxHops": 16,
        "client": {
            "hostConnectionPool": {"maxSize": 256, "maxWaiters": 10000, "minSize": 0},
            "h2Upgrade": true,
            "loadBalancer": {"kind": "ewma", "decayTimeMs": 10000},
            "failureAccrual": {"kind": "io.l5d.consecutiveFailures", "failures": 5,
                               "backoff": {"kind": "jittered", "minMs": 5000, "maxMs": 300000}},
        },
        "service": {
            "responseClassifier": "io.l5d.http.nonRetryable5XX",
            "retries": {"budget": {"ttlSecs": 10, "minRetriesPerSec": 10, "percentCanRetry": 0.2},
                        "backoff": {"kind": "jittered", "minMs": 10, "maxMs": 10000}},
        },
    });
    let server_defaults = serde_json::json!({
        "headerTimeoutMs": 10000, "idleTimeoutMs": 60000, "bodyIdleTimeoutMs": 10000, "maxConnections": 10000,
        "h2KeepAliveMs": 20000, "errorDetail": "full",
    });
    let mut expected = expected;
    for router in expected["routers"].as_array_mut().unwrap() {
        merge(router, &defaults);
        for server in router["servers"].as_array_mut().unwrap() {
            merge(server, &server_defaults);
        }
    }
    assert_eq!(json, expected);
    assert!(!serde_json::to_string(&config).unwrap_or_default().contains("s3cret"));
}

#[test]
fn load_file_reads_files_and_reports_io_errors_at_zero() {
    let missing = std::path::Path::new("/nonexistent/switchyard/config.yaml");
    let errors = load_file(missing).expect_err("missing file");
    assert_eq!((errors[0].line, errors[0].column, errors.len()), (0, 0, 1));
    assert!(errors[0].to_string().starts_with("0:0: cannot read /nonexistent/switchyard/config.yaml"));

    let file = std::env::temp_dir().join(format!("switchyard-config-test-{}.yaml", std::process::id()));
    std::fs::write(&file, ORIGINAL_INGRESS).expect("temp file writable");
    let result = load_file(&file);
    let _ = std::fs::remove_file(&file);
    assert_eq!(result.map(|l| l.config), load(ORIGINAL_INGRESS).map(|l| l.config));
}

#[test]
fn truncated_or_damaged_input_never_panics() {
    // Every prefix and every one-character deletion of two real configs: each must give
    // either a config or diagnostics with real positions, never a panic.
    for text in [MODERN, ORIGINAL_INGRESS] {
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &i in &boundaries {
            let damaged = format!("{}{}", &text[..i], &text[i + 1..]);
            for candidate in [&text[..i], damaged.as_str()] {
                if let Err(errors) = load(candidate) {
                    assert!(!errors.is_empty());
                    assert!(errors.iter().all(|e| e.line >= 1 && e.column >= 1), "{errors:?}");
                }
            }
        }
    }
}

#[test]
fn resilience_policies_and_static_overrides() {
    let text = "\
routers:
- protocol: http
  servers: [{port: 4141, maxConcurrentRequests: 500}]
  bindingTimeoutMs: 2000
  maxHeadersKB: 16
  maxRequestKB: 1024
  client:
    kind: io.l5d.static
    requestAttemptTimeoutMs: 300
    loadBalancer: {kind: p2c}
    failureAccrual:
      kind: io.l5d.consecutiveFailures
      failures: 3
      backoff: {kind: jittered, minMs: 100, maxMs: 1000}
    hostConnectionPool: {maxSize: 50}
    configs:
    - prefix: /#/io.l5d.fs/forex-rate
      loadBalancer: {kind: roundRobin}
    - prefix: /$/inet/*/*
      failureAccrual: {kind: none}
  service:
    kind: io.l5d.static
    totalTimeoutMs: 3000
    responseClassifier: {kind: io.l5d.http.retryableRead5XX}
    retries:
      budget: {ttlSecs: 5, minRetriesPerSec: 2, percentCanRetry: 0.5}
      backoff: {kind: constant, ms: 0}
    configs:
    - prefix: /svc/forex-rate
      totalTimeoutMs: 1000
      responseClassifier: {kind: allSuccessful}
";
    let r = &loaded(text).config.routers[0];
    assert_eq!(r.servers[0].max_concurrent_requests, Some(500));
    assert_eq!((r.binding_timeout_ms, r.max_headers_kb, r.max_request_kb), (2000, 16, Some(1024)));
    let p = |s: &str| Path::read(s).unwrap();
    let rate = r.client.resolve(&p("/#/io.l5d.fs/forex-rate"));
    assert_eq!(rate.load_balancer, LoadBalancer::RoundRobin, "override applies");
    assert_eq!(rate.pool, PoolLimits { max_size: 50, max_waiters: 10_000, min_size: 0 }, "global value kept");
    assert_eq!(rate.request_attempt_timeout, Some(std::time::Duration::from_millis(300)));
    let other = r.client.resolve(&p("/#/io.l5d.fs/forex-web"));
    assert_eq!(other.load_balancer, LoadBalancer::P2c);
    assert_eq!(
        other.failure_accrual,
        FailureAccrual::ConsecutiveFailures { failures: 3, backoff: Backoff::Jittered { min_ms: 100, max_ms: 1000 } }
    );
    assert_eq!(r.client.resolve(&p("/$/inet/127.1/80")).failure_accrual, FailureAccrual::None);
    let svc = r.service.resolve(&p("/svc/forex-rate"));
    assert_eq!(svc.classifier, Classifier::AllSuccessful);
    assert_eq!(svc.total_timeout, Some(std::time::Duration::from_millis(1000)));
    assert_eq!(svc.retries.budget, RetryBudget { ttl_secs: 5, min_retries_per_sec: 2, percent_can_retry: 0.5 });
    let web = r.service.resolve(&p("/svc/forex-web"));
    assert_eq!(web.classifier, Classifier::RetryableRead5xx);
    assert_eq!(web.retries.backoff, Backoff::Constant { ms: 0 });
}

#[test]
fn bad_resilience_values_are_errors_with_positions() {
    let text = "\
routers:
- protocol: http
  servers: [{port: 4141}]
  client:
    loadBalancer: {kind: heap}
    failureAccrual: {kind: io.l5d.successRate, successRate: 2}
    configs:
    - prefix: /svc/**
  service:
    responseClassifier: {kind: retryEverything}
    retries: {backoff: {kind: jittered, minMs: 50, maxMs: 10}}
";
    let errors = errors(text);
    let places = places(&errors);
    assert_eq!(
        places,
        [
            "5:26 routers[0].client.loadBalancer.kind",
            "6:61 routers[0].client.failureAccrual.successRate",
            "8:21 routers[0].client.configs[0].prefix",
            "10:32 routers[0].service.responseClassifier.kind",
            "11:24 routers[0].service.retries.backoff",
        ],
        "{errors:?}"
    );
}

/// The original system's outgoing sidecar config (linkerd 1): a Consul namer and a `baseDtab` into it.
const ORIGINAL_OUTGOING: &str = "\
admin:
  port: 9990
namers:
- kind: io.l5d.consul
  host: 172.17.0.1
  port: 8500
  includeTag: false
  setHost: false
routers:
- protocol: http
  label: outgoing
  baseDtab: |
    /http/1.1/* => /#/io.l5d.consul/dc1;
  servers:
  - port: 4141
    ip: 0.0.0.0
";

#[test]
fn original_outgoing_consul_config_runs_as_written() {
    let loaded = loaded(ORIGINAL_OUTGOING);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let Some(NamerConfig::Consul(c)) = loaded.config.namers.first() else { panic!("consul namer expected") };
    assert_eq!(c.prefix, path("/io.l5d.consul"));
    assert_eq!((c.host.as_str(), c.port), ("172.17.0.1", 8500));
    assert!(!c.include_tag && !c.set_host && !c.use_health_check && !c.fail_fast);
    assert!(c.prefer_service_address, "linkerd's default");
    assert_eq!(c.health_statuses, vec!["passing".to_string()]);
    assert_eq!(c.consistency_mode, crate::consul::ConsistencyMode::Default);
    assert_eq!(loaded.config.routers[0].dtab, dtab("/http/1.1/* => /#/io.l5d.consul/dc1;"));
}

#[test]
fn consul_namer_and_dtab_store_options_are_read_and_checked() {
    let text = "\
namers:
- kind: io.l5d.consul
  token: t0ken
  useHealthCheck: true
  healthStatuses: [passing, warning]
  consistencyMode: stale
  weights: [{tag: canary, weight: 0.1}]
routers:
- protocol: http
  label: egress
  servers: [{port: 4141}]
  dtabStore: {kind: io.l5d.consul, port: 8501}
- protocol: http
  label: other
  servers: [{port: 4142}]
  dtabStore: {kind: io.l5d.fs, path: run/dtabs/other}
";
    let loaded = loaded(text);
    let Some(NamerConfig::Consul(c)) = loaded.config.namers.first() else { panic!("consul namer expected") };
    assert_eq!(c.health_statuses, vec!["passing".to_string(), "warning".to_string()]);
    assert_eq!(c.consistency_mode, crate::consul::ConsistencyMode::Stale);
    assert_eq!(c.weights, vec![TagWeight { tag: "canary".into(), weight: 0.1 }]);
    let Some(DtabStoreConfig::Consul { key, port, host, .. }) = &loaded.config.routers[0].dtab_store else { panic!() };
    assert_eq!((key.as_str(), *port, host.as_str()), ("switchyard/dtabs/egress", 8501, "localhost"));
    assert_eq!(
        loaded.config.routers[1].dtab_store,
        Some(DtabStoreConfig::File { path: PathBuf::from("run/dtabs/other") })
    );
    let json = serde_json::to_string(&loaded.config).unwrap();
    assert!(!json.contains("t0ken"), "tokens are redacted: {json}");

    let bad = "\
namers:
- kind: io.l5d.consul
  healthStatuses: [passing, sick]
  consistencyMode: eventual
  weights: [{tag: canary, weight: -1}]
routers:
- protocol: http
  servers: [{port: 4141}]
  dtabStore: {kind: io.l5d.zk, path: x}
- protocol: h2
  servers: [{port: 4142}]
  dtabStore: {kind: io.l5d.fs}
";
    let errors = errors(bad);
    assert_eq!(
        places(&errors),
        [
            "3:29 namers[0].healthStatuses[1]",
            "4:20 namers[0].consistencyMode",
            "5:35 namers[0].weights[0].weight",
            "9:21 routers[0].dtabStore.kind",
            "12:14 routers[1].dtabStore.path",
        ],
        "{errors:?}"
    );
}

/// A CA and two identities in a fresh directory, for the TLS checks (which read every file).
fn pki() -> std::path::PathBuf {
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("sy-config-tls-{}-{}", std::process::id(), fastrand::u64(..)));
    let now = time::OffsetDateTime::now_utc();
    crate::identityctl::create_ca("mesh.test", &dir, Duration::from_secs(3600), now).unwrap();
    for svc in ["rate", "web"] {
        crate::identityctl::issue(&dir, svc, &dir, Duration::from_secs(3600), now).unwrap();
    }
    dir
}

#[test]
fn linkerd_tls_shapes_run_as_written() {
    let d = pki();
    let d = d.display();
    let text = format!(
        "\
routers:
- protocol: http
  label: outgoing
  servers: [{{port: 4140}}]
  client:
    tls:
      commonName: linkerd
      trustCerts: [{d}/ca.pem]
- protocol: http
  label: incoming
  servers:
  - port: 4141
    ip: 0.0.0.0
    tls:
      certPath: {d}/rate.pem
      keyPath: {d}/rate.key
  - port: 4142
    tls:
      certPath: {d}/rate.pem
      keyPath: {d}/rate.key
      caCertPath: {d}/ca.pem
      requireClientAuth: true
      protocols: [TLSv1.3]
    authorization: {{allow: [spiffe://mesh.test/svc/web]}}
  client:
    kind: io.l5d.static
    configs:
    - prefix: /#/io.l5d.fs/{{service}}
      tls:
        commonName: \"{{service}}.mesh.test\"
        trustCertsBundle: {d}/ca.pem
        clientAuth: {{certPath: {d}/web.pem, keyPath: {d}/web.key}}
"
    );
    let loaded = loaded(&text);
    assert_eq!(loaded.warnings, vec![]);
    let incoming = &loaded.config.routers[1];
    let tls = incoming.servers[1].tls.as_ref().unwrap();
    assert!(tls.require_client_auth && tls.protocols == [TlsVersion::Tls13]);
    let policy = incoming.client.resolve(&Path::read("/#/io.l5d.fs/forex-rate").unwrap());
    assert_eq!(policy.tls.unwrap().common_name.as_deref(), Some("forex-rate.mesh.test"), "{{service}} captured");
    let outgoing = loaded.config.routers[0].client.resolve(&Path::read("/$/inet/127.1/4141").unwrap());
    assert_eq!(outgoing.tls.unwrap().common_name.as_deref(), Some("linkerd"));
}

#[test]
fn tls_mistakes_are_errors_that_name_the_file() {
    let d = pki();
    let d = d.display();
    let text = format!(
        "\
routers:
- protocol: http
  servers:
  - port: 4141
    tls: {{certPath: {d}/missing.pem, keyPath: {d}/rate.key}}
  - port: 4142
    tls: {{certPath: {d}/rate.pem, keyPath: {d}/web.key}}
  - port: 4143
    tls: {{certPath: {d}/rate.pem, keyPath: {d}/rate.key, requireClientAuth: true}}
  - port: 4144
    tls: {{certPath: {d}/rate.pem, keyPath: {d}/rate.key}}
    authorization: {{allow: [spiffe://mesh.test/svc/web]}}
  client:
    configs:
    - prefix: /#/io.l5d.fs/*
      tls: {{commonName: \"{{service}}.mesh.test\", trustCerts: [{d}/ca.pem]}}
    - prefix: /#/io.l5d.fs/x
      tls: {{trustCerts: [{d}/ca.pem]}}
    - prefix: /#/io.l5d.fs/y
      tls: {{commonName: y.mesh.test, trustCerts: [{d}/not-there.pem]}}
"
    );
    let errors = errors(&text);
    let messages: Vec<String> = errors.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.message)).collect();
    let expect = [
        (5, format!("cannot read certificate {d}/missing.pem")),
        (7, format!("private key {d}/web.key does not belong to certificate {d}/rate.pem")),
        (9, "requireClientAuth needs caCertPath".to_string()),
        (12, "authorization needs mutual TLS".to_string()),
        (16, "commonName uses {service}, which this entry's prefix does not capture".to_string()),
        (18, "missing required key `commonName`".to_string()),
        (20, format!("cannot read trusted CA certificate {d}/not-there.pem")),
    ];
    assert_eq!(errors.len(), expect.len(), "{messages:#?}");
    for (e, (line, text)) in errors.iter().zip(expect) {
        assert_eq!(e.line, line, "{messages:#?}");
        assert!(e.message.contains(&text), "{} does not say {text:?}", e.message);
    }
}

#[test]
fn an_admin_beyond_loopback_needs_a_token() {
    let open = "admin: {ip: 0.0.0.0, port: 9990}\nrouters: [{protocol: http, servers: [{port: 4140}]}]\n";
    let errors = errors(open);
    assert_eq!(places(&errors), ["1:9 admin"], "{errors:?}");
    assert!(errors[0].message.contains("without a token"), "{errors:?}");

    let dir = pki();
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    let with_file = format!(
        "admin: {{ip: 0.0.0.0, port: 9990, tokenFile: {}}}\nrouters: [{{protocol: http, servers: [{{port: 4140}}]}}]\n",
        dir.join("token").display()
    );
    assert_eq!(loaded(&with_file).config.admin.token.as_deref(), Some("s3cret"));

    let missing = "admin: {ip: 0.0.0.0, port: 9990, tokenFile: /nonexistent/token}\nrouters: [{protocol: http, servers: [{port: 4140}]}]\n";
    let unreadable = super::tests::errors(missing);
    assert_eq!(unreadable.len(), 1, "only the unreadable file is reported: {unreadable:?}");
    assert!(unreadable[0].message.contains("cannot read token file /nonexistent/token"), "{unreadable:?}");
}

#[test]
fn a_plaintext_listener_beyond_loopback_that_trusts_context_is_warned_about() {
    let text = "routers: [{protocol: http, servers: [{ip: 0.0.0.0, port: 4140, clearContext: false}]}]\n";
    let warnings = loaded(text).warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("may reroute requests with l5d-dtab"), "{warnings:?}");
    // TLS without client certificates does not say who the caller is either.
    let d = pki();
    let tls_only = format!(
        "routers: [{{protocol: http, servers: [{{ip: 0.0.0.0, port: 4140, clearContext: false, \
         tls: {{certPath: {0}/rate.pem, keyPath: {0}/rate.key}}}}]}}]\n",
        d.display()
    );
    assert_eq!(loaded(&tls_only).warnings.len(), 1);
    let local = "routers: [{protocol: http, servers: [{ip: 127.0.0.1, port: 4140, clearContext: false}]}]\n";
    assert_eq!(loaded(local).warnings, vec![]);
}

#[test]
fn listener_limits_error_detail_and_hop_limit() {
    let text = "\
admin: {port: 9991, headerTimeoutMs: 2000, maxConnections: 8}
routers:
- protocol: http
  maxHops: 4
  servers:
  - {port: 4141, headerTimeoutMs: 1500, idleTimeoutMs: 30000, bodyIdleTimeoutMs: 500, maxConnections: 99,
     h2KeepAliveMs: 7000, errorDetail: generic}
  - {ip: 10.0.0.1, port: 4142}
  - {ip: 10.0.0.1, port: 4143, errorDetail: full}
";
    let config = loaded(text).config;
    assert_eq!(config.admin.connections.header_timeout_ms, 2000);
    assert_eq!(config.admin.connections.max_connections, 8);
    assert_eq!(config.admin.connections.idle_timeout_ms, 60_000, "unset keys keep their defaults");
    let r = &config.routers[0];
    assert_eq!(r.max_hops, 4);
    let c = r.servers[0].connections;
    assert_eq!(
        (c.header_timeout_ms, c.idle_timeout_ms, c.body_idle_timeout_ms, c.max_connections, c.h2_keep_alive_ms),
        (1500, 30_000, 500, 99, 7000)
    );
    let details: Vec<ErrorDetail> = r.servers.iter().map(|s| s.error_detail).collect();
    assert_eq!(details, vec![ErrorDetail::Generic, ErrorDetail::Generic, ErrorDetail::Full]);

    let bad =
        errors("routers:\n- protocol: http\n  servers: [{port: 4141, errorDetail: verbose, maxConnections: 0}]\n");
    let text: Vec<String> = bad.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.message)).collect();
    assert!(text.iter().any(|t| t.contains("unknown errorDetail") && t.contains("full, generic")), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("3:64 expected a whole number")), "{text:?}");
}

#[test]
fn host_connection_pool_keys_with_linkerd_meanings_and_per_client_overrides() {
    let text = "\
routers:
- protocol: http
  servers: [{}]
  client:
    kind: io.l5d.static
    hostConnectionPool: {maxSize: 10, maxWaiters: 0, minSize: 2, idleTimeMs: 5000}
    configs:
    - prefix: /#/io.l5d.fs/forex-rate
      hostConnectionPool: {maxSize: 50}
";
    let client = &loaded(text).config.routers[0].client;
    assert_eq!(client.pool.idle_time_ms, 5000);
    let p = |s: &str| Path::read(s).unwrap();
    let rate = client.resolve(&p("/#/io.l5d.fs/forex-rate")).pool;
    assert_eq!(rate, PoolLimits { max_size: 50, max_waiters: 0, min_size: 2 }, "an override changes only its keys");
    let web = client.resolve(&p("/#/io.l5d.fs/forex-web")).pool;
    assert_eq!(web, PoolLimits { max_size: 10, max_waiters: 0, min_size: 2 });

    let bad = "\
routers:
- protocol: http
  servers: [{}]
  client:
    hostConnectionPool: {maxSize: 4, minSize: 8, maxWaiters: -1}
";
    let errors = errors(bad);
    let expected =
        ["5:38 routers[0].client.hostConnectionPool.minSize", "5:62 routers[0].client.hostConnectionPool.maxWaiters"];
    assert_eq!(places(&errors), expected);
    assert_eq!(errors[0].message, "minSize 8 is larger than maxSize 4");
    assert_eq!(errors[1].message, "expected a whole number, found \"-1\"");
}
