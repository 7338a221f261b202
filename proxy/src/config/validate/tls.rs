//! Readers for the security parts of the config: server and client `tls`, a server's `authorization`, and
//! the admin server's token, TLS and host names. Every certificate and key is loaded here, so a file that is
//! missing, unreadable or not what it should be is a config error naming the file, before any port is bound.

use std::net::IpAddr;
use std::path::PathBuf;

use super::super::yaml::{Kind, Node, Pos};
use super::super::{AuthorizationConfig, ClientAuthConfig, ClientTlsConfig, ServerTlsConfig, TlsVersion};
use super::{parse_bool, parse_string, Checker, Fields, BOOL, NONE};

const SERVER_TLS: &[&str] =
    &["certPath", "keyPath", "intermediateCertsPath", "caCertPath", "requireClientAuth", "protocols"];
const CLIENT_TLS: &[&str] =
    &["commonName", "trustCerts", "trustCertsBundle", "disableValidation", "clientAuth", "protocols"];
const CLIENT_AUTH: &[&str] = &["certPath", "keyPath", "intermediateCertsPath"];
const TLS_LINKERD: &[&str] = &["ciphers", "enableHostnameVerification"];
const AUTHORIZATION: &[&str] = &["allow", "allowContext"];
const PROTOCOLS: &[&str] = &["TLSv1.2", "TLSv1.3"];
const FILE: &str = "a file path";

fn parse_path(text: &str) -> Option<PathBuf> {
    Some(PathBuf::from(text)).filter(|_| !text.trim().is_empty())
}

impl Checker<'_> {
    fn file(&mut self, f: &mut Fields<'_>, key: &str, required: bool) -> Option<PathBuf> {
        if required {
            let node = self.required(f, key)?;
            self.value(node, &f.child(key), FILE, parse_path)
        } else {
            self.optional(f, key, FILE, parse_path)
        }
    }

    /// A list of scalars (a single scalar is read as a one-item list).
    pub(super) fn strings(&mut self, node: Option<&Node>, path: &str, expected: &str) -> Vec<String> {
        let Some(node) = node.filter(|n| !n.is_null()) else { return Vec::new() };
        if node.text().is_some() {
            return self.value(node, path, expected, parse_string).into_iter().collect();
        }
        self.list(Some(node), path, |c, item, p| c.value(item, p, expected, parse_string))
    }

    fn protocols(&mut self, f: &mut Fields<'_>) -> Vec<TlsVersion> {
        let path = f.child("protocols");
        let node = f.take_present("protocols");
        let mut out = Vec::new();
        for (i, text) in self.strings(node, &path, "TLSv1.2 or TLSv1.3").into_iter().enumerate() {
            match text.as_str() {
                "TLSv1.2" => out.push(TlsVersion::Tls12),
                "TLSv1.3" => out.push(TlsVersion::Tls13),
                other => {
                    let pos = node.map_or(f.pos, |n| item_pos(n, i));
                    let message = format!("unsupported protocol {other:?}; known: {}", PROTOCOLS.join(", "));
                    self.error(pos, &path, message);
                }
            }
        }
        out
    }

    /// A server's `tls` (also admin's).
    pub(super) fn server_tls(&mut self, node: &Node, path: &str) -> Option<ServerTlsConfig> {
        let mut f = self.fields(node, path);
        let cert = self.file(&mut f, "certPath", true);
        let key = self.file(&mut f, "keyPath", true);
        let intermediates = self.file(&mut f, "intermediateCertsPath", false);
        let ca = self.file(&mut f, "caCertPath", false);
        let require_pos = f.key_pos("requireClientAuth");
        let require = self.optional(&mut f, "requireClientAuth", BOOL, parse_bool).unwrap_or(false);
        let protocols = self.protocols(&mut f);
        self.finish(&f, SERVER_TLS, TLS_LINKERD);
        let config = ServerTlsConfig {
            cert_path: cert?,
            key_path: key?,
            intermediate_certs_path: intermediates,
            ca_cert_path: ca,
            require_client_auth: require,
            protocols,
        };
        if require && config.ca_cert_path.is_none() {
            let message = "requireClientAuth needs caCertPath: the CA client certificates must chain to".into();
            self.error(require_pos.unwrap_or(node.pos), &f.child("requireClientAuth"), message);
            return None;
        }
        if let Err(e) = crate::tls::server_config(&config) {
            self.error(node.pos, path, e.0);
            return None;
        }
        Some(config)
    }

    /// A client's `tls`; `captures` are the variables its `configs` prefix captures (none for `client.tls`);
    /// `named_by_host`: the server name defaults to the host it connects to (the Consul agent's), so `commonName`
    /// is optional. Without `trustCerts`/`trustCertsBundle` the system's CA bundle is trusted, as in linkerd.
    pub(super) fn client_tls(
        &mut self,
        node: &Node,
        path: &str,
        captures: &[(usize, String)],
        named_by_host: bool,
    ) -> Option<ClientTlsConfig> {
        let mut f = self.fields(node, path);
        let cn_node = f.take_present("commonName");
        let common_name = cn_node.and_then(|n| self.value(n, &f.child("commonName"), "a server name", parse_string));
        let trust_path = f.child("trustCerts");
        let trust_node = f.take_present("trustCerts");
        let trust_certs = self.strings(trust_node, &trust_path, FILE).into_iter().map(PathBuf::from).collect();
        let trust_certs_bundle = self.file(&mut f, "trustCertsBundle", false);
        let disable_pos = f.key_pos("disableValidation");
        let disable = self.optional(&mut f, "disableValidation", BOOL, parse_bool).unwrap_or(false);
        let client_auth = f.take_present("clientAuth").and_then(|n| self.client_auth(n, &f.child("clientAuth")));
        let protocols = self.protocols(&mut f);
        self.finish(&f, CLIENT_TLS, TLS_LINKERD);
        let config = ClientTlsConfig {
            common_name,
            trust_certs,
            trust_certs_bundle,
            disable_validation: disable,
            client_auth,
            protocols,
        };
        if let (Some(cn), Some(n)) = (&config.common_name, cn_node) {
            for var in variables(cn) {
                if !captures.iter().any(|(_, name)| *name == var) {
                    let message = format!("commonName uses {{{var}}}, which this entry's prefix does not capture");
                    self.error(n.pos, &f.child("commonName"), message);
                }
            }
        }
        if disable {
            let message = "disableValidation: any server certificate is accepted, so TLS here stops eavesdroppers \
                           but not impostors; use it only for tests";
            self.warn(disable_pos.unwrap_or(node.pos), &f.child("disableValidation"), message.into());
        } else if config.common_name.is_none() && !named_by_host {
            self.error(node.pos, path, "missing required key `commonName` (the name the server's certificate must carry; or disableValidation: true)".into());
            return None;
        }
        if let Err(e) = crate::tls::client_config(&config, crate::tls::Alpn::Http1) {
            self.error(node.pos, path, e.0);
            return None;
        }
        Some(config)
    }

    fn client_auth(&mut self, node: &Node, path: &str) -> Option<ClientAuthConfig> {
        let mut f = self.fields(node, path);
        let cert = self.file(&mut f, "certPath", true);
        let key = self.file(&mut f, "keyPath", true);
        let intermediates = self.file(&mut f, "intermediateCertsPath", false);
        self.finish(&f, CLIENT_AUTH, NONE);
        Some(ClientAuthConfig { cert_path: cert?, key_path: key?, intermediate_certs_path: intermediates })
    }

    /// A server's `authorization`: who may call it. Needs mutual TLS, which `mtls` says the server has.
    pub(super) fn authorization(&mut self, node: &Node, path: &str, mtls: bool) -> Option<AuthorizationConfig> {
        let mut f = self.fields(node, path);
        let allow_node = self.required(&mut f, "allow");
        let allow = self.identities(allow_node, &f.child("allow"));
        let context_node = f.take_present("allowContext");
        let allow_context = context_node.map(|n| self.identities(Some(n), &f.child("allowContext")));
        self.finish(&f, AUTHORIZATION, NONE);
        if !mtls {
            let message = "authorization needs mutual TLS on this server: tls with caCertPath and requireClientAuth: \
                           true, so callers have verified identities";
            self.error(node.pos, path, message.into());
            return None;
        }
        if allow_node.is_some() && allow.is_empty() {
            self.error(node.pos, &f.child("allow"), "expected at least one identity (or `*`)".into());
        }
        Some(AuthorizationConfig { allow, allow_context })
    }

    fn identities(&mut self, node: Option<&Node>, path: &str) -> Vec<String> {
        let expected = "an identity: spiffe://<trust-domain>/svc/<service>, a DNS name, or *";
        let list = self.strings(node, path, expected);
        for (i, id) in list.iter().enumerate() {
            let ok =
                id == "*" || id.starts_with("spiffe://") || (id.contains('.') && !id.contains(char::is_whitespace));
            if !ok {
                let pos = node.map_or(Pos { line: 0, column: 0, index: 0 }, |n| item_pos(n, i));
                self.error(pos, &format!("{path}[{i}]"), format!("expected {expected}, found {id:?}"));
            }
        }
        list
    }

    /// Admin's bearer token from `token`, `tokenFile` or `tokenEnv` (at most one).
    pub(super) fn admin_token(&mut self, f: &mut Fields<'_>) -> Option<String> {
        let non_empty = |t: &str| Some(t.to_string()).filter(|t| !t.trim().is_empty());
        let sources: Vec<&str> =
            ["token", "tokenFile", "tokenEnv"].into_iter().filter(|k| f.key_pos(k).is_some()).collect();
        if sources.len() > 1 {
            let pos = f.key_pos(sources[1]).unwrap_or(f.pos);
            self.error(pos, &f.child(sources[1]), format!("set only one of {}", sources.join(", ")));
        }
        if let Some(token) = self.optional(f, "token", "a non-empty token", non_empty) {
            return Some(token);
        }
        if let Some(path) = self.optional(f, "tokenFile", FILE, parse_path) {
            let pos = f.key_pos("tokenFile").unwrap_or(f.pos);
            return match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
                Ok(_) => {
                    self.error(pos, &f.child("tokenFile"), format!("token file {} is empty", path.display()));
                    None
                }
                Err(e) => {
                    self.error(pos, &f.child("tokenFile"), format!("cannot read token file {}: {e}", path.display()));
                    None
                }
            };
        }
        let var = self.optional(f, "tokenEnv", "an environment variable name", non_empty)?;
        match std::env::var(&var) {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
            _ => {
                let pos = f.key_pos("tokenEnv").unwrap_or(f.pos);
                self.error(pos, &f.child("tokenEnv"), format!("environment variable {var} is unset or empty"));
                None
            }
        }
    }

    /// Admin beyond loopback must have a token: anyone who can reach it could otherwise rewrite routing.
    pub(super) fn admin_exposure(&mut self, ip: IpAddr, token: bool, pos: Pos) {
        if !ip.is_loopback() && !token {
            let message = format!(
                "admin listens on {ip}, beyond loopback, without a token: anyone who can reach it could rewrite \
                 routing; set admin.token, tokenFile or tokenEnv, or listen on 127.0.0.1"
            );
            self.error(pos, "admin", message);
        }
    }

    /// A plaintext listener beyond loopback that honours `l5d-dtab` trusts whoever can reach it.
    pub(super) fn context_exposure(&mut self, ip: IpAddr, trusted: bool, mtls: bool, pos: Pos, path: &str) {
        if trusted && !mtls && !ip.is_loopback() {
            let message = format!(
                "clearContext: false on a listener at {ip} without client certificates: anyone who can reach it \
                 may reroute requests with l5d-dtab; use mutual TLS with authorization, or listen on loopback"
            );
            self.warn(pos, path, message);
        }
    }
}

/// The `{name}` variables a template uses.
fn variables(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// Where the `i`th item of a list node is (the list's own position when it is not a list).
fn item_pos(node: &Node, i: usize) -> Pos {
    match &node.kind {
        Kind::Seq(items) => items.get(i).map_or(node.pos, |n| n.pos),
        _ => node.pos,
    }
}

/// Splits a prefix's `{name}` segments out: the prefix with `*` in their place, and (segment index, name).
pub(super) fn captures(prefix: &str) -> (String, Vec<(usize, String)>) {
    let mut caps = Vec::new();
    let segments: Vec<String> = prefix
        .split('/')
        .enumerate()
        .map(|(i, seg)| {
            let name = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            match name {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {
                    // Segment 0 is the empty text before the leading `/`.
                    caps.push((i.saturating_sub(1), n.to_string()));
                    "*".to_string()
                }
                _ => seg.to_string(),
            }
        })
        .collect();
    (segments.join("/"), caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_variables_become_wildcards() {
        let (text, caps) = captures("/#/io.l5d.fs/{service}");
        assert_eq!(text, "/#/io.l5d.fs/*");
        assert_eq!(caps, [(2, "service".to_string())]);
        assert_eq!(captures("/svc/*").1, []);
        assert_eq!(variables("{service}.{ns}.mesh"), ["service", "ns"]);
    }
}
