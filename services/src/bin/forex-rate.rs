//! forex-rate: serves ECB euro reference rates. Run with `--help` for options.

use forex::common::{main_for, Service};
use forex::rate::{app, RateState, RateTable};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    main_for(Service::Rate, |_, _| {
        let table = RateTable::load_embedded().map_err(|e| e.to_string())?;
        tracing::info!(days = table.len(), first = %table.first_date(), last = %table.last_date(), "rate history loaded");
        Ok(app(RateState::new(Arc::new(table))))
    })
}
