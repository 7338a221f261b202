//! forex-converter: converts an amount between currencies on a date.
//!
//! It validates the input, asks forex-rate (through its egress sidecar) for the
//! EUR base rates of both currencies, computes `amount × to / from` in decimal,
//! and rounds half-up to the target currency's ISO 4217 minor units.

use crate::common::error::{json_response, method_not_allowed, no_route, ApiError, Field};
use crate::common::money::{format_money, minor_units, round_half_up};
use crate::common::peer::{PeerError, PeerResponse};
use crate::common::{health_body, CurrencyCode, Date, PeerClient, Service};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest amount we convert; beyond this a request is a mistake or abuse.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000_000;
/// The most decimal places an amount may have.
pub const MAX_AMOUNT_DECIMALS: usize = 8;

/// The shared state of forex-converter's handlers.
#[derive(Clone, Debug)]
pub struct ConverterState {
    /// forex-rate, reached through the egress sidecar.
    pub rates: PeerClient,
}

/// forex-converter's routes.
pub fn app(state: ConverterState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(health_body(Service::Converter)) }))
        .route("/convert", get(convert))
        .route("/currencies", get(currencies))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The raw query of `/convert`; every field is checked by hand so the error
/// can name it.
#[derive(Debug, Default, Deserialize)]
pub struct ConvertQuery {
    /// `YYYY-MM-DD`.
    pub date: Option<String>,
    /// Source currency code.
    pub from: Option<String>,
    /// Target currency code.
    pub to: Option<String>,
    /// Non-negative decimal amount.
    pub amount: Option<String>,
}

/// A validated conversion request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertRequest {
    /// The day whose reference rate to use.
    pub date: Date,
    /// Source currency.
    pub from: CurrencyCode,
    /// Target currency.
    pub to: CurrencyCode,
    /// The amount of `from` to convert.
    pub amount: Decimal,
}

fn required(value: &Option<String>, field: Field) -> Result<&str, ApiError> {
    match value.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(ApiError::bad_request(format!("missing field '{field}'")).with_field(field)),
    }
}

/// Checks every field, in the order date, from, to, amount; the first problem wins.
pub fn validate(query: &ConvertQuery) -> Result<ConvertRequest, ApiError> {
    let date = required(&query.date, Field::Date)?
        .parse::<Date>()
        .map_err(|e| ApiError::bad_request(e.to_string()).with_field(Field::Date))?;
    let code = |value: &Option<String>, field| {
        required(value, field)?
            .parse::<CurrencyCode>()
            .map_err(|e| ApiError::bad_request(e.to_string()).with_field(field))
    };
    let from = code(&query.from, Field::From)?;
    let to = code(&query.to, Field::To)?;
    let amount = parse_amount(required(&query.amount, Field::Amount)?)
        .map_err(|message| ApiError::bad_request(message).with_field(Field::Amount))?;
    Ok(ConvertRequest { date, from, to, amount })
}

/// A plain non-negative decimal: digits, optionally `.` and up to 8 more digits,
/// at most 10^15. No signs, exponents, separators or spaces.
pub fn parse_amount(text: &str) -> Result<Decimal, String> {
    if let Some(rest) = text.strip_prefix('-') {
        if parse_amount(rest).is_ok() {
            return Err(format!("amount must not be negative (got '{text}')"));
        }
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(int) || !digits_only(frac) || (int.is_empty() && frac.is_empty()) || text.ends_with('.') {
        return Err(format!("amount '{text}' is not a number (write it like 1234.56)"));
    }
    if frac.len() > MAX_AMOUNT_DECIMALS {
        return Err(format!("amount has more than {MAX_AMOUNT_DECIMALS} decimal places"));
    }
    let int = int.trim_start_matches('0');
    let too_large = || format!("amount is too large (at most {MAX_AMOUNT})");
    // More digits than 10^15 has cannot be allowed; checking length first keeps
    // the decimal parser away from numbers it cannot hold.
    if int.len() > 16 {
        return Err(too_large());
    }
    let normalised = format!("{}.{}", if int.is_empty() { "0" } else { int }, if frac.is_empty() { "0" } else { frac });
    let value = normalised.parse::<Decimal>().map_err(|_| format!("amount '{text}' is not a number"))?;
    if value > Decimal::from(MAX_AMOUNT) {
        return Err(too_large());
    }
    Ok(value.normalize())
}

/// The rates forex-rate gave for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateAnswer {
    /// The business day the rates are from.
    pub effective_date: Date,
    /// The published cross rate (rounded to 10 places).
    pub rate: Decimal,
    /// Units of the source currency per euro.
    pub from_per_eur: Decimal,
    /// Units of the target currency per euro.
    pub to_per_eur: Decimal,
}

/// `amount × to_per_eur / from_per_eur`, rounded half-up to `to`'s minor units.
/// Using the EUR base rates is more exact than the rounded cross rate.
pub fn convert_amount(amount: Decimal, answer: &RateAnswer, to: CurrencyCode) -> Option<Decimal> {
    let exact = amount.checked_mul(answer.to_per_eur)?.checked_div(answer.from_per_eur)?;
    Some(round_half_up(exact, minor_units(to)))
}

fn unavailable(status: StatusCode, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(status, format!("rate service unavailable: {detail}"))
}

/// A JSON `{"error": ..., "field": ...}` body, if that is what `body` is.
fn error_body(body: &[u8]) -> Option<(String, Option<Field>)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value.get("error")?.as_str()?.to_owned();
    let field = value.get("field").and_then(Value::as_str).and_then(Field::parse);
    Some((message, field))
}

/// Turns a non-200 answer from forex-rate into our error: its input errors
/// become ours (400, naming the field), everything else is the rate service
/// being unavailable (503 when its sidecar said 503, else 502).
pub fn upstream_failure(peer: &str, response: &PeerResponse) -> ApiError {
    let parsed = error_body(&response.body);
    if response.status.is_client_error() {
        if let Some((message, Some(field))) = &parsed {
            return ApiError::bad_request(message.clone()).with_field(*field);
        }
    }
    let status = if response.status == StatusCode::SERVICE_UNAVAILABLE {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    let reason = response.status.canonical_reason().unwrap_or("");
    let mut detail = format!("{peer} answered {} {reason}", response.status.as_u16());
    match (&response.l5d_err, parsed) {
        (Some(l5d), _) => detail.push_str(&format!(" (l5d-err: {l5d})")),
        (None, Some((message, _))) => detail.push_str(&format!(" ({message})")),
        (None, None) => {}
    }
    unavailable(status, detail)
}

fn transport_failure(peer: &str, error: &PeerError) -> ApiError {
    unavailable(StatusCode::BAD_GATEWAY, format!("{peer}: {error}"))
}

/// Reads a 200 answer of `/{date}/{from}/{to}`.
fn parse_rate_answer(body: &[u8]) -> Option<RateAnswer> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    let decimal = |key: &str| text(key)?.parse::<Decimal>().ok().filter(|d| *d > Decimal::ZERO);
    Some(RateAnswer {
        effective_date: text("effective_date")?.parse().ok()?,
        rate: decimal("rate")?,
        from_per_eur: decimal("from_per_eur")?,
        to_per_eur: decimal("to_per_eur")?,
    })
}

impl ConverterState {
    fn peer_name(&self) -> &str {
        self.rates.settings().name.as_str()
    }

    /// Asks forex-rate for the rates of one request.
    async fn fetch_rates(&self, request: &ConvertRequest) -> Result<RateAnswer, ApiError> {
        let path = format!("/{}/{}/{}", request.date, request.from, request.to);
        let response = self.rates.get(&path).await.map_err(|e| transport_failure(self.peer_name(), &e))?;
        if response.status != StatusCode::OK {
            return Err(upstream_failure(self.peer_name(), &response));
        }
        parse_rate_answer(&response.body).ok_or_else(|| {
            unavailable(StatusCode::BAD_GATEWAY, format!("{} sent a rate answer we cannot read", self.peer_name()))
        })
    }
}

fn query_or_400<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("malformed query: {}", e.body_text())))
}

async fn convert(
    State(state): State<ConverterState>,
    query: Result<Query<ConvertQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = validate(&query_or_400(query)?)?;
    let answer = state.fetch_rates(&request).await?;
    let converted = convert_amount(request.amount, &answer, request.to).ok_or_else(|| {
        unavailable(StatusCode::BAD_GATEWAY, format!("{} sent rates we cannot compute with", state.peer_name()))
    })?;
    Ok(Json(json!({
        "date": request.date.to_string(),
        "effective_date": answer.effective_date.to_string(),
        "from": request.from.as_str(),
        "to": request.to.as_str(),
        "amount": request.amount.to_string(),
        "converted": converted.to_string(),
        "rate": answer.rate.to_string(),
        "display": {
            "amount": format_money(request.amount, request.from),
            "converted": format_money(converted, request.to),
        },
    })))
}

/// `?date=YYYY-MM-DD` for `/currencies` (today when absent).
#[derive(Debug, Deserialize)]
struct CurrenciesQuery {
    date: Option<String>,
}

async fn currencies(
    State(state): State<ConverterState>,
    query: Result<Query<CurrenciesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query_or_400(query)?;
    let date = match query.date.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => text.parse::<Date>().map_err(|e| ApiError::bad_request(e.to_string()).with_field(Field::Date))?,
        None => Date::today(),
    };
    let response =
        state.rates.get(&format!("/currencies/{date}")).await.map_err(|e| transport_failure(state.peer_name(), &e))?;
    if response.status != StatusCode::OK {
        return Err(upstream_failure(state.peer_name(), &response));
    }
    let body = parse_currencies(&response.body).ok_or_else(|| {
        unavailable(StatusCode::BAD_GATEWAY, format!("{} sent a currency list we cannot read", state.peer_name()))
    })?;
    Ok(json_response(StatusCode::OK, &body))
}

/// Re-checks forex-rate's currency list, so only well-formed codes go on.
fn parse_currencies(body: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let codes = value
        .get("currencies")?
        .as_array()?
        .iter()
        .map(|c| c.as_str()?.parse::<CurrencyCode>().ok().map(|c| c.to_string()))
        .collect::<Option<Vec<String>>>()?;
    let date: Date = value.get("date")?.as_str()?.parse().ok()?;
    let effective: Date = value.get("effective_date")?.as_str()?.parse().ok()?;
    Some(json!({
        "date": date.to_string(),
        "effective_date": effective.to_string(),
        "currencies": codes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("100"), Ok(dec("100")));
        assert_eq!(parse_amount("0100.50").map(|d| d.to_string()), Ok("100.5".to_owned()));
        assert_eq!(parse_amount(".5"), Ok(dec("0.5")));
        assert_eq!(parse_amount("0"), Ok(dec("0")));
        assert_eq!(parse_amount("1000000000000000"), Ok(dec("1000000000000000")));
        assert_eq!(parse_amount("0.00000001"), Ok(dec("0.00000001")));
        let err = |s: &str| parse_amount(s).expect_err(s);
        assert!(err("-5").contains("negative"));
        assert!(err("1000000000000000.01").contains("too large"));
        assert!(err("99999999999999999999999999999999999").contains("too large"));
        assert!(err("0.000000001").contains("8 decimal places"));
        for bad in ["abc", "1e5", "1,000", "1.2.3", "+5", "5.", ".", "", "NaN", "1 000", "--5", "0x10"] {
            assert!(err(bad).contains("not a number"), "{bad}");
        }
    }

    #[test]
    fn conversion_rounds_half_up_at_the_minor_unit() {
        let answer = |from: &str, to: &str| RateAnswer {
            effective_date: "2016-09-05".parse().expect("date"),
            rate: dec("1"),
            from_per_eur: dec(from),
            to_per_eur: dec(to),
        };
        let jpy = "JPY".parse().expect("code");
        let usd = "USD".parse().expect("code");
        // 0.5 × 10 / 2 = 2.5 → 3 (banker's rounding would give 2).
        assert_eq!(convert_amount(dec("0.5"), &answer("2", "10"), jpy), Some(dec("3")));
        // 1 × 1.005 / 1 = 1.005 → 1.01.
        assert_eq!(convert_amount(dec("1"), &answer("1", "1.005"), usd).map(|d| d.to_string()), Some("1.01".into()));
        // Real data 2016-09-05: 100 USD → JPY = 100 × 115.24 / 1.1156 = 10329.867…
        assert_eq!(convert_amount(dec("100"), &answer("1.1156", "115.24"), jpy), Some(dec("10330")));
    }
}
