//! Readers for the Consul parts of the config: the `io.l5d.consul` namer and a router's `dtabStore`.

use std::path::PathBuf;

use switchyard_dtab::Path;

use super::super::{ClientTlsConfig, ConsulNamerConfig, DtabStoreConfig, NamerConfig, TagWeight};
use super::{parse_bool, parse_port, parse_string, Checker, Fields, NAMER_LINKERD, NONE, PORT};
use crate::config::yaml::Node;
use crate::consul::ConsistencyMode;

const CONSUL_NAMER: &[&str] = &[
    "kind",
    "prefix",
    "host",
    "port",
    "token",
    "tls",
    "includeTag",
    "useHealthCheck",
    "healthStatuses",
    "setHost",
    "consistencyMode",
    "failFast",
    "preferServiceAddress",
    "weights",
];
/// host, port, token, consistency mode, TLS.
type ConsulAgent = (String, u16, Option<String>, ConsistencyMode, Option<Box<ClientTlsConfig>>);

const CONSUL_STORE: &[&str] = &["kind", "host", "port", "token", "tls", "key", "consistencyMode"];
const FILE_STORE: &[&str] = &["kind", "path"];
const STORE_KINDS: &[&str] = &["io.l5d.consul", "io.l5d.fs"];
const HEALTH_STATES: &[&str] = &["passing", "warning", "critical", "maintenance"];
const CONSISTENCY: &str = "one of default, stale, consistent";
const BOOL: &str = "true or false";

fn non_empty(text: &str) -> Option<String> {
    Some(text.to_string()).filter(|t| !t.trim().is_empty())
}

impl Checker<'_> {
    /// The `io.l5d.consul` namer (the `kind` key was read already).
    pub(super) fn consul_namer(&mut self, mut fields: Fields<'_>) -> Option<NamerConfig> {
        let prefix = match fields.take("prefix") {
            Some(node) => self.path(node, &fields.child("prefix")),
            None => Path::read("/io.l5d.consul").ok(),
        };
        if let Some(prefix) = &prefix {
            self.unique_prefix(prefix, &fields);
        }
        let (host, port, token, consistency_mode, tls) = self.consul_agent(&mut fields);
        let mut flag =
            |c: &mut Self, key: &str, default: bool| c.optional_or(&mut fields, key, BOOL, parse_bool, default);
        let include_tag = flag(self, "includeTag", false);
        let use_health_check = flag(self, "useHealthCheck", false);
        let set_host = flag(self, "setHost", false);
        let fail_fast = flag(self, "failFast", false);
        let prefer_service_address = flag(self, "preferServiceAddress", true);
        let path = fields.child("healthStatuses");
        let health_statuses = match fields.take_present("healthStatuses") {
            Some(node) => {
                self.list(Some(node), &path, |c, n, p| c.one_of(n, p, "health status", HEALTH_STATES).map(String::from))
            }
            None => vec!["passing".to_string()],
        };
        let path = fields.child("weights");
        let weights = self.list(fields.take_present("weights"), &path, Self::tag_weight);
        self.finish(&fields, CONSUL_NAMER, NAMER_LINKERD);
        Some(NamerConfig::Consul(ConsulNamerConfig {
            prefix: prefix?,
            host,
            port,
            token,
            tls,
            include_tag: include_tag?,
            use_health_check: use_health_check?,
            health_statuses,
            set_host: set_host?,
            consistency_mode,
            fail_fast: fail_fast?,
            prefer_service_address: prefer_service_address?,
            weights,
        }))
    }

    /// `host`, `port`, `token` and `consistencyMode`, shared by the namer and the KV store.
    /// Where the Consul agent is and how to talk to it: host, port, ACL token, consistency, and `tls` (linkerd's
    /// client TLS keys: HTTPS to the agent, checking `commonName` or else the host).
    fn consul_agent(&mut self, fields: &mut Fields<'_>) -> ConsulAgent {
        let host = self.optional_or(fields, "host", "a host name or IP address", non_empty, "localhost".into());
        let port = self.optional_or(fields, "port", PORT, parse_port, 8500);
        let token = self.optional(fields, "token", "a non-empty token", non_empty);
        let mode = self.optional(fields, "consistencyMode", CONSISTENCY, ConsistencyMode::parse);
        let tls =
            fields.take_present("tls").and_then(|n| self.client_tls(n, &fields.child("tls"), &[], true)).map(Box::new);
        (host.unwrap_or_default(), port.unwrap_or(8500), token, mode.unwrap_or_default(), tls)
    }

    fn tag_weight(&mut self, node: &Node, path: &str) -> Option<TagWeight> {
        let mut fields = self.fields(node, path);
        let tag = self.required(&mut fields, "tag");
        let tag = tag.and_then(|n| self.value(n, &fields.child("tag"), "a tag", non_empty));
        let weight = self.required(&mut fields, "weight");
        let parse = |t: &str| t.parse::<f64>().ok().filter(|w| w.is_finite() && *w >= 0.0);
        let weight = weight.and_then(|n| self.value(n, &fields.child("weight"), "a non-negative number", parse));
        self.finish(&fields, &["tag", "weight"], NONE);
        Some(TagWeight { tag: tag?, weight: weight? })
    }

    /// A router's `dtabStore`: `{kind: io.l5d.consul, key, host, port, token}` or `{kind: io.l5d.fs, path}`.
    pub(super) fn dtab_store(&mut self, node: Option<&Node>, path: &str, label: &str) -> Option<DtabStoreConfig> {
        let node = node?;
        let mut fields = self.fields(node, path);
        let kind = self.required(&mut fields, "kind")?;
        let kind = self.one_of(kind, &fields.child("kind"), "dtab store kind", STORE_KINDS)?;
        if kind == "io.l5d.fs" {
            let file = self.required(&mut fields, "path");
            let file = file.and_then(|n| self.value(n, &fields.child("path"), "a file path", parse_string));
            self.finish(&fields, FILE_STORE, NONE);
            return Some(DtabStoreConfig::File { path: PathBuf::from(file?) });
        }
        let (host, port, token, consistency_mode, tls) = self.consul_agent(&mut fields);
        let key_ok = |t: &str| non_empty(t).filter(|k| !k.starts_with('/') && !k.contains(['?', '#']));
        let default_key = format!("switchyard/dtabs/{label}");
        let key = self.optional_or(
            &mut fields,
            "key",
            "a KV key such as switchyard/dtabs/egress (no leading /)",
            key_ok,
            default_key,
        );
        self.finish(&fields, CONSUL_STORE, NONE);
        Some(DtabStoreConfig::Consul { host, port, token, tls, key: key?, consistency_mode })
    }
}
