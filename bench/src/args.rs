//! Command-line parsing for the `switchyard-bench` binary, into typed commands.
//!
//! Hand-written rather than a parser crate: two subcommands and a handful of flags do
//! not pay for the compile time on the two-core build machines.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;

/// Usage text printed on `--help` and on argument errors.
pub const USAGE: &str = "\
usage:
  switchyard-bench upstream --listen IP:PORT [--delay-ms MS]
      answers 200 after MS (default 0); GET /__connections: connections accepted
  switchyard-bench consul --listen IP:PORT      a Consul HTTP API double (see docs/consul.md)
  switchyard-bench load --url http://HOST:PORT/PATH [--host HOST] --connections N
                        --duration SECS [--rate RPS]
      without --rate, every connection sends back to back (flat-out);
      with --rate, requests are scheduled open-loop and latency is measured from
      each request's intended send time.
  prints: rps=… p50_us=… p99_us=… p999_us=… errors=…";

/// What the binary was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve `200 ok` on an address.
    Upstream(UpstreamArgs),
    /// Generate load against a URL.
    Load(LoadArgs),
    /// Serve the Consul HTTP API double on an address.
    Consul(UpstreamArgs),
    /// Print usage.
    Help,
}

/// Arguments of `upstream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamArgs {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How long the upstream takes to answer (its stand-in for an app's work).
    pub delay: Duration,
}

/// Arguments of `load`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadArgs {
    /// Where requests go.
    pub target: Target,
    /// The `Host` header to send (the proxies route on it); defaults to the URL's authority.
    pub host: String,
    /// Number of keep-alive connections.
    pub connections: usize,
    /// How long to send for.
    pub duration: Duration,
    /// Flat-out or paced.
    pub mode: Mode,
}

/// How requests are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each connection sends its next request as soon as the previous one completes.
    FlatOut,
    /// Requests are due at a fixed rate (per second, over all connections).
    FixedRate(u32),
}

/// A parsed `http://` URL: where to connect and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub connect_to: String,
    /// The URL's authority, the default `Host` header.
    pub authority: String,
    /// Path and query of every request.
    pub path_and_query: String,
}

impl Target {
    /// Parses an `http://host[:port][/path]` URL (port defaults to 80, path to `/`).
    pub fn parse(url: &str) -> Result<Self, ArgError> {
        let bad = |why: &str| ArgError(format!("--url {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Self {
            connect_to: format!("{}:{port}", authority.host()),
            authority: authority.as_str().to_string(),
            path_and_query: if path_and_query.is_empty() { "/".into() } else { path_and_query.into() },
        })
    }
}

/// A usage mistake, with a message that names the offending argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator<Item = String>,
{
    let mut args = args.into_iter();
    let sub = args.next().ok_or_else(|| ArgError("missing subcommand".into()))?;
    let flags = Flags::collect(args)?;
    match sub.as_str() {
        "upstream" => parse_upstream(flags),
        "consul" => match parse_upstream(flags)? {
            Command::Upstream(listen) => Ok(Command::Consul(listen)),
            other => Ok(other),
        },
        "load" => parse_load(flags),
        "-h" | "--help" | "help" => Ok(Command::Help),
        other => Err(ArgError(format!("unknown subcommand {other:?}"))),
    }
}

fn parse_upstream(mut flags: Flags) -> Result<Command, ArgError> {
    let listen = flags.take_required("--listen")?;
    let listen = listen.parse().map_err(|e| ArgError(format!("--listen {listen:?}: {e}")))?;
    let delay = match flags.take("--delay-ms") {
        Some(ms) => Duration::from_millis(number(&ms, "--delay-ms")?),
        None => Duration::ZERO,
    };
    flags.finish()?;
    Ok(Command::Upstream(UpstreamArgs { listen, delay }))
}

fn parse_load(mut flags: Flags) -> Result<Command, ArgError> {
    let target = Target::parse(&flags.take_required("--url")?)?;
    let host = flags.take("--host").unwrap_or_else(|| target.authority.clone());
    let connections: usize = number(&flags.take_required("--connections")?, "--connections")?;
    let duration: f64 = number(&flags.take_required("--duration")?, "--duration")?;
    let mode = match flags.take("--rate") {
        Some(rate) => Mode::FixedRate(number(&rate, "--rate")?),
        None => Mode::FlatOut,
    };
    flags.finish()?;
    if connections == 0 {
        return Err(ArgError("--connections must be at least 1".into()));
    }
    if !(duration.is_finite() && duration > 0.0 && duration <= 86_400.0) {
        return Err(ArgError("--duration must be between 0 and 86400 seconds".into()));
    }
    if mode == Mode::FixedRate(0) {
        return Err(ArgError("--rate must be at least 1".into()));
    }
    let duration = Duration::from_secs_f64(duration);
    Ok(Command::Load(LoadArgs { target, host, connections, duration, mode }))
}

fn number<T: std::str::FromStr>(value: &str, flag: &str) -> Result<T, ArgError> {
    value.parse().map_err(|_| ArgError(format!("{flag} {value:?}: not a valid number")))
}

/// `--flag value` pairs, consumed one by one so leftovers can be reported.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn collect(args: impl Iterator<Item = String>) -> Result<Self, ArgError> {
        let mut pairs = Vec::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if !flag.starts_with("--") {
                return Err(ArgError(format!("unexpected argument {flag:?}")));
            }
            // `--flag=value` and `--flag value` are both accepted.
            if let Some((name, value)) = flag.split_once('=') {
                pairs.push((name.to_string(), value.to_string()));
                continue;
            }
            let value = args.next().ok_or_else(|| ArgError(format!("{flag} needs a value")))?;
            pairs.push((flag, value));
        }
        Ok(Self(pairs))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let position = self.0.iter().position(|(flag, _)| flag == name)?;
        Some(self.0.remove(position).1)
    }

    fn take_required(&mut self, name: &str) -> Result<String, ArgError> {
        self.take(name).ok_or_else(|| ArgError(format!("missing {name}")))
    }

    fn finish(self) -> Result<(), ArgError> {
        match self.0.first() {
            None => Ok(()),
            Some((flag, _)) => Err(ArgError(format!("unknown or repeated flag {flag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_a_paced_load() {
        let cmd =
            parse(args("load --url http://127.0.0.1:8080/x?y=1 --host svc --connections 4 --duration 2.5 --rate 1000"));
        let Ok(Command::Load(load)) = cmd else { panic!("expected load, got {cmd:?}") };
        assert_eq!(load.target.connect_to, "127.0.0.1:8080");
        assert_eq!(load.target.path_and_query, "/x?y=1");
        assert_eq!(load.host, "svc");
        assert_eq!(load.connections, 4);
        assert_eq!(load.duration, Duration::from_millis(2500));
        assert_eq!(load.mode, Mode::FixedRate(1000));
    }

    #[test]
    fn flat_out_without_rate_and_host_defaults_to_authority() {
        let cmd = parse(args("load --url=http://localhost --connections=1 --duration=1"));
        let Ok(Command::Load(load)) = cmd else { panic!("expected load, got {cmd:?}") };
        assert_eq!(load.mode, Mode::FlatOut);
        assert_eq!(load.host, "localhost");
        assert_eq!(load.target.connect_to, "localhost:80");
        assert_eq!(load.target.path_and_query, "/");
    }

    #[test]
    fn parses_upstream() {
        let cmd = parse(args("upstream --listen 127.0.0.1:0"));
        let listen = "127.0.0.1:0".parse().expect("addr");
        assert_eq!(cmd, Ok(Command::Upstream(UpstreamArgs { listen, delay: Duration::ZERO })));
        let cmd = parse(args("upstream --listen 127.0.0.1:0 --delay-ms 2"));
        assert_eq!(cmd, Ok(Command::Upstream(UpstreamArgs { listen, delay: Duration::from_millis(2) })));
    }

    #[test]
    fn rejects_bad_input_with_the_flag_named() {
        let cases = [
            ("", "missing subcommand"),
            ("fly", "unknown subcommand"),
            ("upstream", "missing --listen"),
            ("upstream --listen nowhere", "--listen"),
            ("upstream --listen 127.0.0.1:0 --delay-ms soon", "--delay-ms"),
            ("load --url https://x --connections 1 --duration 1", "only http"),
            ("load --url http://x --connections 0 --duration 1", "--connections"),
            ("load --url http://x --connections 1 --duration -1", "--duration"),
            ("load --url http://x --connections 1 --duration 1 --rate 0", "--rate"),
            ("load --url http://x --connections 1 --duration 1 --rate fast", "--rate"),
            ("load --url http://x --connections 1 --duration 1 --bogus 1", "--bogus"),
            ("load --url http://x --connections", "needs a value"),
        ];
        for (line, expected) in cases {
            match parse(args(line)) {
                Err(ArgError(message)) => {
                    assert!(message.contains(expected), "{line:?}: {message:?} lacks {expected:?}")
                }
                Ok(cmd) => panic!("{line:?} parsed as {cmd:?}"),
            }
        }
    }
}
