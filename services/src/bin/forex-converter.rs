//! forex-converter: converts amounts using forex-rate. Run with `--help` for options.

use forex::common::{main_for, PeerClient, Service};
use forex::converter::{app, ConverterState};
use std::process::ExitCode;

fn main() -> ExitCode {
    main_for(Service::Converter, |settings, metrics| {
        let peer = settings.peer.clone().ok_or("forex-converter needs a peer")?;
        Ok(app(ConverterState { rates: PeerClient::new(peer).with_metrics(metrics) }))
    })
}
