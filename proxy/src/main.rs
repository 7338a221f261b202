//! `switchyard`: the sidecar binary — read config, set up logging, serve, drain on SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use switchyard::config;

/// How long a draining sidecar waits for in-flight requests before it closes what is left.
const GRACE: Duration = Duration::from_secs(10);

/// `sysexits.h` EX_USAGE / EX_CONFIG-style code for an invalid command line or config, as linkerd2-proxy does.
const EXIT_CONFIG: u8 = 64;

const USAGE: &str = "\
switchyard — a linkerd-style HTTP sidecar proxy with dtab routing

USAGE:
    switchyard run CONFIG.yaml     serve the routers CONFIG describes (also: switchyard CONFIG.yaml)
    switchyard check CONFIG.yaml   validate CONFIG and report every problem with line and column
    switchyard check --json CONFIG.yaml   validate, then print the parsed config as JSON (as /config.json)
    switchyard example             print a commented example config
    switchyard dtab [--admin URL] [--router LABEL] get | set FILE | diff FILE | explain PATH
                                   read, replace (compare-and-swap), compare or explain a router's dtab
                                   over a sidecar's admin API (default http://127.0.0.1:9990, router egress)
    switchyard identity ca --trust-domain DOMAIN --out DIR
    switchyard identity issue --ca DIR --service NAME --out DIR [--valid 24h]
    switchyard identity show FILE.pem
                                   a mesh CA, service certificates with SPIFFE IDs, and what a certificate says
    switchyard --version

ENVIRONMENT:
    RUST_LOG                 log filter, e.g. `info` (default) or `switchyard=debug,info`
    SWITCHYARD_ADMIN         default --admin URL of `switchyard dtab` (https:// too)
    SWITCHYARD_ADMIN_TOKEN   bearer token `switchyard dtab` sends (admin writes need it beyond loopback)
    SWITCHYARD_ADMIN_CA      CA certificate `switchyard dtab` trusts for an https:// admin
    SWITCHYARD_ADMIN_TLS_NAME   the name that admin's certificate must carry (default: the URL's host)
    SWITCHYARD_WORKER_THREADS   threads serving traffic (default 1: one core per sidecar, beside its app;
                             N > 1: a work-stealing pool of N)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match strs.as_slice() {
        ["check", file] => check(Path::new(file)),
        ["dtab", rest @ ..] => switchyard::dtabctl::main(rest),
        ["identity", rest @ ..] => switchyard::identityctl::main(rest),
        ["check", "--json", file] => check_json(Path::new(file)),
        ["run", file] => run(Path::new(file)),
        ["example"] => {
            print!("{}", config::example());
            ExitCode::SUCCESS
        }
        ["--version" | "-V" | "version"] => {
            println!("switchyard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        [file] if !file.starts_with('-') => run(Path::new(file)),
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Loads and validates; prints warnings and errors as `FILE:LINE:COL: key: message`.
fn load(file: &Path) -> Option<config::Config> {
    match config::load_file(file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{}:{w} (warning)", file.display());
            }
            Some(loaded.config)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{}:{e}", file.display());
            }
            eprintln!("{}: {} problem(s); nothing started", file.display(), errors.len());
            None
        }
    }
}

fn check(file: &Path) -> ExitCode {
    match load(file) {
        Some(cfg) => {
            let routers: Vec<&str> = cfg.routers.iter().map(|r| r.label.as_str()).collect();
            println!("{}: ok ({} router(s): {})", file.display(), routers.len(), routers.join(", "));
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EXIT_CONFIG),
    }
}

/// `check --json`: the parsed config with every default filled in, so two files can be
/// compared by meaning rather than by text (the container-vs-local config test does).
fn check_json(file: &Path) -> ExitCode {
    let Some(cfg) = load(file) else { return ExitCode::from(EXIT_CONFIG) };
    match serde_json::to_string_pretty(&cfg) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: cannot print the config as JSON: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

/// How many threads serve traffic: `SWITCHYARD_WORKER_THREADS`, or 1.
fn worker_threads(value: Option<&str>) -> Result<usize, String> {
    let Some(text) = value else { return Ok(1) };
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("{text:?} is not a number of threads from 1 to 1024")),
    }
}

fn run(file: &Path) -> ExitCode {
    switchyard::telemetry::init_logging();
    let Some(cfg) = load(file) else { return ExitCode::from(EXIT_CONFIG) };
    let value = std::env::var_os("SWITCHYARD_WORKER_THREADS").map(|v| v.to_string_lossy().into_owned());
    let threads = match worker_threads(value.as_deref()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("switchyard: SWITCHYARD_WORKER_THREADS: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // One thread: tokio's single-threaded scheduler, whose wake-ups cost no cross-thread synchronisation (what
    // linkerd2-proxy does by default). More: the work-stealing scheduler with that many workers.
    let built = match threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let running = match switchyard::app::start(cfg, GRACE).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        switchyard::telemetry::shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests (up to {} s)", GRACE.as_secs());
        running.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn worker_threads_default_to_one_and_refuse_nonsense() {
        assert_eq!(worker_threads(None), Ok(1));
        assert_eq!(worker_threads(Some(" 4 ")), Ok(4));
        for bad in ["0", "-1", "two", "", "1025"] {
            let err = worker_threads(Some(bad)).unwrap_err();
            assert!(err.contains("not a number of threads from 1 to 1024"), "{bad:?}: {err}");
        }
    }
}
