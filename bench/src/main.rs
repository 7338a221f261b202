//! `switchyard-bench`: the load harness binary behind `make bench` (see `bench/run.sh`).

use std::process::ExitCode;
use std::sync::Arc;

use switchyard_bench::args::{self, Command, LoadArgs, UpstreamArgs, USAGE};
use switchyard_bench::{load, upstream};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("switchyard-bench: {error}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchyard-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Upstream(args) => runtime.block_on(run_upstream(args)),
        Command::Load(args) => runtime.block_on(run_load(args)),
        Command::Consul(args) => runtime.block_on(run_consul(args)),
    }
}

async fn run_upstream(args: UpstreamArgs) -> ExitCode {
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("switchyard-bench upstream: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(address) => eprintln!("switchyard-bench upstream: listening on {address}"),
        Err(_) => eprintln!("switchyard-bench upstream: listening on {}", args.listen),
    }
    match upstream::serve(listener, Arc::new(upstream::Counts::default()), args.delay, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard-bench upstream: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_consul(args: UpstreamArgs) -> ExitCode {
    match switchyard_test_support::consul::ConsulDouble::start(args.listen).await {
        Ok(double) => {
            eprintln!("switchyard-bench consul: Consul API double listening on {}", double.addr);
            shutdown_signal().await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("switchyard-bench consul: cannot listen on {}: {error}", args.listen);
            ExitCode::FAILURE
        }
    }
}

async fn run_load(args: LoadArgs) -> ExitCode {
    let report = load::run(&args).await;
    println!("{}", report.summary_line());
    ExitCode::SUCCESS
}

/// Completes on SIGTERM or Ctrl-C, so `run.sh` can stop the upstream cleanly.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        // Without a SIGTERM handler, Ctrl-C still works and SIGTERM kills by default.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
