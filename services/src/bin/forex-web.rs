//! forex-web: the browser UI, using forex-converter. Run with `--help` for options.

use forex::common::{main_for, PeerClient, Service};
use forex::web::{app, WebState};
use std::process::ExitCode;

fn main() -> ExitCode {
    main_for(Service::Web, |settings, metrics| {
        let peer = settings.peer.clone().ok_or("forex-web needs a peer")?;
        Ok(app(WebState { converter: PeerClient::new(peer).with_metrics(metrics) }))
    })
}
