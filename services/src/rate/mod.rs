//! forex-rate: ECB euro reference rates over HTTP.
//!
//! `GET /{date}/{from}/{to}` gives a cross rate (EUR is the base: 1 EUR = rate
//! units); weekends and holidays use the latest business day on or before the
//! date and say which. Also `/currencies/{date}`, `/history/{from}/{to}` and
//! `/health`. Every error is `{"error": "..."}` JSON with a precise message.

pub mod data;

pub use data::{DataError, RateTable};

use crate::common::error::{method_not_allowed, no_route, ApiError, Field};
use crate::common::{health_body, CurrencyCode, Date, Service};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use data::Currency;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Decimal places of a published cross rate.
pub const RATE_DECIMALS: u32 = 10;
/// The longest history one request may ask for, in years.
pub const MAX_HISTORY_YEARS: i32 = 10;

/// Where "today" comes from: the system clock, or a fixed day in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// `Date::today()` (UTC).
    System,
    /// Always this day.
    Fixed(Date),
}

impl Clock {
    /// Today according to this clock.
    pub fn today(self) -> Date {
        match self {
            Self::System => Date::today(),
            Self::Fixed(date) => date,
        }
    }
}

/// The shared state of forex-rate's handlers.
#[derive(Clone, Debug)]
pub struct RateState {
    /// The whole rate history, loaded once.
    pub table: Arc<RateTable>,
    /// Decides which dates are "in the future".
    pub clock: Clock,
}

impl RateState {
    /// State over a table, with the system clock.
    pub fn new(table: Arc<RateTable>) -> Self {
        Self { table, clock: Clock::System }
    }
}

/// forex-rate's routes.
pub fn app(state: RateState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(health_body(Service::Rate)) }))
        .route("/currencies/{date}", get(currencies))
        .route("/history/{from}/{to}", get(history))
        .route("/{date}/{from}/{to}", get(rate))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `to_per_eur / from_per_eur`, rounded half-up to 10 places and normalised;
/// `None` only for a zero `from` rate, which the loader never admits.
pub fn cross_rate(from_per_eur: Decimal, to_per_eur: Decimal) -> Option<Decimal> {
    let rate = to_per_eur.checked_div(from_per_eur)?;
    Some(rate.round_dp_with_strategy(RATE_DECIMALS, RoundingStrategy::MidpointAwayFromZero).normalize())
}

fn path_params<T>(params: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    params.map(|Path(p)| p).map_err(|e| ApiError::bad_request(format!("malformed path: {}", e.body_text())))
}

fn parse_date(text: &str, field: Field) -> Result<Date, ApiError> {
    text.parse::<Date>().map_err(|e| ApiError::bad_request(e.to_string()).with_field(field))
}

fn parse_code(text: &str, field: Field) -> Result<CurrencyCode, ApiError> {
    text.parse::<CurrencyCode>().map_err(|e| ApiError::bad_request(e.to_string()).with_field(field))
}

impl RateState {
    /// The row to answer `date` from: the latest business day on or before it.
    fn row_for(&self, date: Date) -> Result<usize, ApiError> {
        let today = self.clock.today();
        if date > today {
            return Err(
                ApiError::not_found(format!("{date} is in the future (today is {today})")).with_field(Field::Date)
            );
        }
        let first = self.table.first_date();
        self.table.row_on_or_before(date).ok_or_else(|| {
            ApiError::not_found(format!("no ECB rates before {first}, the first available date (asked for {date})"))
                .with_field(Field::Date)
        })
    }

    fn currency(&self, code: CurrencyCode, field: Field) -> Result<Currency, ApiError> {
        self.table
            .currency(code)
            .ok_or_else(|| ApiError::not_found(format!("unknown currency '{code}'")).with_field(field))
    }

    /// Units of `code` per euro on `row`, or a 404 that says when it was published.
    fn per_eur(&self, code: CurrencyCode, field: Field, row: usize) -> Result<Decimal, ApiError> {
        let currency = self.currency(code, field)?;
        if let Some(value) = self.table.per_eur(currency, row) {
            return Ok(value);
        }
        let day = self.table.date_at(row).unwrap_or(self.table.first_date());
        let when =
            match (self.table.last_published_before(currency, row), self.table.first_published_after(currency, row)) {
                (Some(last), _) => format!(" (last published {last})"),
                (None, Some(first)) => format!(" (first published {first})"),
                (None, None) => String::new(),
            };
        Err(ApiError::not_found(format!("no ECB rate for {code} on {day}{when}")).with_field(field))
    }
}

async fn rate(
    State(state): State<RateState>,
    params: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (date, from, to) = path_params(params)?;
    let date = parse_date(&date, Field::Date)?;
    let from = parse_code(&from, Field::From)?;
    let to = parse_code(&to, Field::To)?;
    let row = state.row_for(date)?;
    // Name an unknown currency before complaining about a missing rate.
    state.currency(from, Field::From)?;
    state.currency(to, Field::To)?;
    let from_per_eur = state.per_eur(from, Field::From, row)?;
    let to_per_eur = state.per_eur(to, Field::To, row)?;
    let rate = cross_rate(from_per_eur, to_per_eur)
        .ok_or_else(|| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "zero rate in the data"))?;
    let effective = state.table.date_at(row).unwrap_or(date);
    Ok(Json(json!({
        "date": date.to_string(),
        "effective_date": effective.to_string(),
        "from": from.as_str(),
        "to": to.as_str(),
        "rate": rate.to_string(),
        "from_per_eur": from_per_eur.to_string(),
        "to_per_eur": to_per_eur.to_string(),
    })))
}

async fn currencies(
    State(state): State<RateState>,
    params: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let date = parse_date(&path_params(params)?, Field::Date)?;
    let row = state.row_for(date)?;
    let effective = state.table.date_at(row).unwrap_or(date);
    let list: Vec<String> = state.table.currencies_on(row).iter().map(ToString::to_string).collect();
    Ok(Json(json!({
        "date": date.to_string(),
        "effective_date": effective.to_string(),
        "currencies": list,
    })))
}

/// `?start=YYYY-MM-DD&end=YYYY-MM-DD` for `/history`.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    start: Option<String>,
    end: Option<String>,
}

/// The last day a range starting on `start` may reach.
fn history_limit(start: Date) -> Date {
    let (y, m, d) = start.ymd();
    let y = y.saturating_add(MAX_HISTORY_YEARS);
    // 29 February has no twin ten years on; 1 March stands in for it.
    Date::from_ymd(y, m, d).or_else(|| Date::from_ymd(y, 3, 1)).unwrap_or(Date::from_days(i32::MAX))
}

fn required_date(value: Option<&str>, field: Field) -> Result<Date, ApiError> {
    match value {
        Some(text) => parse_date(text, field),
        None => Err(ApiError::bad_request(format!("missing query parameter '{field}' (YYYY-MM-DD)")).with_field(field)),
    }
}

async fn history(
    State(state): State<RateState>,
    params: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = path_params(params)?;
    let from = parse_code(&from, Field::From)?;
    let to = parse_code(&to, Field::To)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("malformed query: {}", e.body_text())))?;
    let start = required_date(query.start.as_deref(), Field::Start)?;
    let end = required_date(query.end.as_deref(), Field::End)?;
    if end < start {
        return Err(ApiError::bad_request(format!("end {end} is before start {start}")).with_field(Field::End));
    }
    if end > history_limit(start) {
        return Err(ApiError::bad_request(format!(
            "range {start} to {end} is longer than {MAX_HISTORY_YEARS} years; ask in parts"
        ))
        .with_field(Field::End));
    }
    let from_cur = state.currency(from, Field::From)?;
    let to_cur = state.currency(to, Field::To)?;
    let table = &state.table;
    let points: Vec<Value> = table
        .rows_between(start, end)
        .filter_map(|row| {
            let rate = cross_rate(table.per_eur(from_cur, row)?, table.per_eur(to_cur, row)?)?;
            Some(json!({ "date": table.date_at(row)?.to_string(), "rate": rate.to_string() }))
        })
        .collect();
    Ok(Json(json!({ "from": from.as_str(), "to": to.as_str(), "points": points })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn cross_rates_round_half_up_to_ten_places() {
        assert_eq!(cross_rate(dec("1.1156"), dec("115.24")), Some(dec("103.2986733596")));
        assert_eq!(cross_rate(dec("3"), dec("2")).map(|r| r.to_string()), Some("0.6666666667".into()));
        assert_eq!(cross_rate(dec("2"), dec("1")).map(|r| r.to_string()), Some("0.5".into()));
        assert_eq!(cross_rate(dec("1.5"), dec("1.5")).map(|r| r.to_string()), Some("1".into()));
        assert_eq!(cross_rate(dec("0"), dec("1")), None);
    }

    #[test]
    fn history_limit_is_ten_calendar_years() {
        let d = |s: &str| s.parse::<Date>().expect("date");
        assert_eq!(history_limit(d("2005-06-15")), d("2015-06-15"));
        assert_eq!(history_limit(d("2004-02-29")), d("2014-03-01"));
    }
}
