//! Logging: `tracing` with the fmt subscriber, levels from `RUST_LOG`.

use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter for a `RUST_LOG` value: `info` when unset; an unparsable value
/// falls back to `info` and says so (a typo must not silence the logs).
pub fn filter_from(rust_log: Option<&str>) -> (Targets, Option<String>) {
    let default = Targets::new().with_default(LevelFilter::INFO);
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default, None),
        Some(spec) => match spec.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(e) => (default, Some(format!("ignoring RUST_LOG='{spec}': {e}"))),
        },
    }
}

/// Installs the global subscriber (once; later calls do nothing).
pub fn init() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (targets, warning) = filter_from(rust_log.as_deref());
    let installed = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only help a person at a terminal, not a log file.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(targets)
        .try_init();
    if let (Ok(()), Some(warning)) = (installed, warning) {
        tracing::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rust_log() {
        let (targets, warning) = filter_from(Some("warn,forex=debug"));
        assert!(warning.is_none());
        assert_eq!(targets.default_level(), Some(LevelFilter::WARN));
        let (targets, warning) = filter_from(None);
        assert!(warning.is_none());
        assert_eq!(targets.default_level(), Some(LevelFilter::INFO));
        let (_, warning) = filter_from(Some("forex=loud"));
        assert!(warning.is_some());
    }
}
