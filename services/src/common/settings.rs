//! Command-line and environment settings shared by the three binaries.
//!
//! Everything is parsed up front and every problem is reported together, before a
//! port is bound; flags override the `FOREX_*` environment variables.

use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderValue, Uri};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Which of the three services a binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// forex-rate: ECB reference rates.
    Rate,
    /// forex-converter: converts an amount, asks forex-rate.
    Converter,
    /// forex-web: the browser UI, asks forex-converter.
    Web,
}

impl Service {
    /// The logical service name (`forex-rate`, …), also the binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rate => "forex-rate",
            Self::Converter => "forex-converter",
            Self::Web => "forex-web",
        }
    }

    /// The logical name of the peer this service calls, if it calls one.
    pub fn default_peer_name(self) -> Option<&'static str> {
        match self {
            Self::Rate => None,
            Self::Converter => Some("forex-rate"),
            Self::Web => Some("forex-converter"),
        }
    }
}

/// The logical name of a peer service, sent as the `Host` header so the egress
/// sidecar can route it (`/svc/<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerName(HeaderValue);

impl PeerName {
    /// A peer name: non-empty, made of letters, digits, `-`, `.`, `_` and `:`.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        match HeaderValue::from_str(name) {
            Ok(value) if ok => Ok(Self(value)),
            _ => Err(format!("invalid peer name '{name}': use letters, digits, '-', '.', '_' or ':'")),
        }
    }

    /// The name as a `Host` header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Built from a validated `&str`, so it is always visible ASCII.
        self.0.to_str().unwrap_or("")
    }
}

/// Where the peer is reached: the app's egress sidecar, `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUrl(Authority);

impl PeerUrl {
    /// Parses `http://host:port` (a trailing `/` is fine; other paths are not).
    pub fn new(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("invalid peer URL '{url}': {e}"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(format!("invalid peer URL '{url}': must start with http://"));
        }
        let has_path = uri.path_and_query().is_some_and(|p| p.as_str() != "/");
        match uri.authority() {
            Some(authority) if !has_path => Ok(Self(authority.clone())),
            _ => Err(format!("invalid peer URL '{url}': expected http://host:port with no path")),
        }
    }

    /// The `host:port` part.
    pub fn authority(&self) -> &Authority {
        &self.0
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.0)
    }
}

/// How to reach the peer service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    /// The egress sidecar (or, in tests, the peer itself).
    pub url: PeerUrl,
    /// The logical peer name sent as `Host`.
    pub name: PeerName,
    /// The whole-request deadline (connect is capped at 1 s within it).
    pub timeout: Duration,
}

/// Everything a service binary needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Which service this is.
    pub service: Service,
    /// Where the app listens.
    pub listen: SocketAddr,
    /// The peer (converter and web only).
    pub peer: Option<PeerSettings>,
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start the service.
    Run(Settings),
    /// Print this help text and exit.
    Help(String),
}

/// Every problem found in the settings, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<String>);

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for SettingsErrors {}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default peer: the egress sidecar on this host, as in linkerd's setups.
pub const DEFAULT_PEER: &str = "http://127.0.0.1:4141";
/// The default whole-request peer timeout.
pub const DEFAULT_PEER_TIMEOUT_MS: u64 = 3000;

/// The flags a service accepts, with their environment variable.
const FLAGS: &[(&str, &str)] = &[
    ("--listen", "FOREX_LISTEN"),
    ("--peer", "FOREX_PEER"),
    ("--peer-name", "FOREX_PEER_NAME"),
    ("--peer-timeout-ms", "FOREX_PEER_TIMEOUT_MS"),
];

/// Help text for `--help`.
pub fn help(service: Service) -> String {
    let mut text = format!(
        "{name} — a switchyard sample service\n\nUSAGE: {name} [OPTIONS]\n\nOPTIONS:\n  \
         --listen ADDR           address to serve on [env FOREX_LISTEN] (default {DEFAULT_LISTEN})\n",
        name = service.name()
    );
    if let Some(peer) = service.default_peer_name() {
        text.push_str(&format!(
            "  --peer URL              the egress sidecar to call {peer} through [env FOREX_PEER] (default {DEFAULT_PEER})\n  \
             --peer-name NAME        Host header naming the peer [env FOREX_PEER_NAME] (default {peer})\n  \
             --peer-timeout-ms MS    whole-request timeout for peer calls [env FOREX_PEER_TIMEOUT_MS] (default {DEFAULT_PEER_TIMEOUT_MS})\n"
        ));
    }
    text.push_str(
        "  -h, --help              print this help\n\nLog level: RUST_LOG (e.g. info, debug, forex=debug).\n",
    );
    text
}

/// Parses the command line (without the program name) and environment.
pub fn parse(
    service: Service,
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, SettingsErrors> {
    let mut errors = Vec::new();
    let mut values: Vec<Option<String>> = FLAGS.iter().map(|(_, var)| env(var)).collect();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help(help(service)));
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let Some(index) = FLAGS.iter().position(|(f, _)| *f == flag) else {
            errors.push(format!("unknown argument '{arg}' (try --help)"));
            continue;
        };
        match inline.or_else(|| args.next()) {
            Some(value) => values[index] = Some(value),
            None => errors.push(format!("{flag} needs a value")),
        }
    }
    let settings = build(service, &values, &mut errors);
    match settings {
        Some(settings) if errors.is_empty() => Ok(Command::Run(settings)),
        _ => Err(SettingsErrors(errors)),
    }
}

/// Validates the collected raw values (in `FLAGS` order).
fn build(service: Service, values: &[Option<String>], errors: &mut Vec<String>) -> Option<Settings> {
    let listen_text = values[0].as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text
        .parse::<SocketAddr>()
        .map_err(|_| errors.push(format!("invalid listen address '{listen_text}': expected IP:PORT")))
        .ok();
    let peer = match service.default_peer_name() {
        None => {
            for (i, (flag, var)) in FLAGS.iter().enumerate().skip(1) {
                if values[i].is_some() {
                    errors.push(format!("{} calls no peer: remove {flag} / {var}", service.name()));
                }
            }
            None
        }
        Some(default_name) => peer_settings(values, default_name, errors),
    };
    let peer_ok = service.default_peer_name().is_none() || peer.is_some();
    match listen {
        Some(listen) if peer_ok => Some(Settings { service, listen, peer }),
        _ => None,
    }
}

fn peer_settings(values: &[Option<String>], default_name: &str, errors: &mut Vec<String>) -> Option<PeerSettings> {
    let url = PeerUrl::new(values[1].as_deref().unwrap_or(DEFAULT_PEER)).map_err(|e| errors.push(e)).ok();
    let name = PeerName::new(values[2].as_deref().unwrap_or(default_name)).map_err(|e| errors.push(e)).ok();
    let timeout_text = values[3].clone().unwrap_or_else(|| DEFAULT_PEER_TIMEOUT_MS.to_string());
    let timeout = match timeout_text.parse::<u64>() {
        Ok(ms @ 1..=600_000) => Some(Duration::from_millis(ms)),
        _ => {
            errors.push(format!("invalid peer timeout '{timeout_text}': expected milliseconds from 1 to 600000"));
            None
        }
    };
    Some(PeerSettings { url: url?, name: name?, timeout: timeout? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(service: Service, args: &[&str], env: &[(&str, &str)]) -> Result<Command, SettingsErrors> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(service, args.iter().map(|s| s.to_string()), move |k| {
            env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
        })
    }

    fn settings(result: Result<Command, SettingsErrors>) -> Settings {
        match result {
            Ok(Command::Run(s)) => s,
            other => panic!("expected settings, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let s = settings(run(Service::Converter, &[], &[]));
        assert_eq!(s.listen, "127.0.0.1:8080".parse().expect("addr"));
        let peer = s.peer.expect("peer");
        assert_eq!(peer.url.to_string(), "http://127.0.0.1:4141");
        assert_eq!(peer.name.as_str(), "forex-rate");
        assert_eq!(peer.timeout, Duration::from_secs(3));
        assert_eq!(settings(run(Service::Rate, &[], &[])).peer, None);
    }

    #[test]
    fn flags_override_env() {
        let s = settings(run(
            Service::Web,
            &["--listen=127.0.1.1:9000", "--peer-timeout-ms", "250"],
            &[("FOREX_LISTEN", "127.0.0.9:1"), ("FOREX_PEER", "http://127.0.2.1:4141/"), ("FOREX_PEER_NAME", "conv")],
        ));
        assert_eq!(s.listen.to_string(), "127.0.1.1:9000");
        let peer = s.peer.expect("peer");
        assert_eq!(peer.url.to_string(), "http://127.0.2.1:4141");
        assert_eq!(peer.name.as_str(), "conv");
        assert_eq!(peer.timeout, Duration::from_millis(250));
    }

    #[test]
    fn reports_every_problem() {
        let errors = match run(
            Service::Converter,
            &["--listen", "nope", "--peer", "https://x:1", "--peer-timeout-ms", "0", "--bogus", "--peer-name"],
            &[],
        ) {
            Err(e) => e.0,
            other => panic!("expected errors, got {other:?}"),
        };
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("'nope'")));
        assert!(errors.iter().any(|e| e.contains("http://")));
        assert!(errors.iter().any(|e| e.contains("timeout '0'")));
        assert!(errors.iter().any(|e| e.contains("--bogus")));
        assert!(errors.iter().any(|e| e.contains("--peer-name needs a value")));
    }

    #[test]
    fn rate_rejects_peer_flags_and_help_works() {
        assert!(run(Service::Rate, &["--peer", "http://x:1"], &[]).is_err());
        match run(Service::Converter, &["--help"], &[]) {
            Ok(Command::Help(text)) => assert!(text.contains("--peer-timeout-ms")),
            other => panic!("expected help, got {other:?}"),
        }
    }
}
