//! forex-web: the page a person uses, and a JSON pass-through for scripts.
//!
//! `GET /` renders a form; with the form's fields in the query it asks
//! forex-converter (through the egress sidecar) and shows the result or a
//! friendly error on the same page, always with status 200. Internal details
//! (addresses, peer errors) go to the log, never to the browser.

pub mod page;

use crate::common::error::{json_response, method_not_allowed, no_route};
use crate::common::peer::encode_query_value;
use crate::common::{health_body, CurrencyCode, Date, PeerClient, Service};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use page::{Conversion, FormValues, Outcome, Page};
use serde::Deserialize;
use serde_json::{json, Value};

/// Shown when the converter's currency list cannot be had: the ECB's
/// currencies at the time of writing, plus EUR.
pub const FALLBACK_CURRENCIES: &[&str] = &[
    "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY",
    "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON", "SEK", "SGD", "THB", "TRY", "USD", "ZAR",
];

/// What the page says when the services behind it fail.
const UNAVAILABLE_MESSAGE: &str = "Sorry, exchange rates are not available right now. Please try again in a moment.";

/// The shared state of forex-web's handlers.
#[derive(Clone, Debug)]
pub struct WebState {
    /// forex-converter, reached through the egress sidecar.
    pub converter: PeerClient,
}

/// forex-web's routes.
pub fn app(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(|| async { Json(health_body(Service::Web)) }))
        .route("/api/convert", get(api_convert))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The form's query; any present field means "the form was submitted".
#[derive(Debug, Default, Deserialize)]
struct FormQuery {
    date: Option<String>,
    amount: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl FormQuery {
    fn submitted(&self) -> bool {
        self.date.is_some() || self.amount.is_some() || self.from.is_some() || self.to.is_some()
    }

    /// The values to show, with the defaults (today, 100 USD → JPY) filled in.
    fn values(&self) -> FormValues {
        let or = |v: &Option<String>, default: String| v.clone().unwrap_or(default);
        FormValues {
            date: or(&self.date, Date::today().to_string()),
            amount: or(&self.amount, "100".to_owned()),
            from: or(&self.from, "USD".to_owned()),
            to: or(&self.to, "JPY".to_owned()),
        }
    }
}

async fn index(State(state): State<WebState>, query: Result<Query<FormQuery>, QueryRejection>) -> Response {
    let (query, malformed) = match query {
        Ok(Query(q)) => (q, false),
        Err(_) => (FormQuery::default(), true),
    };
    let form = query.values();
    let list_date = form.date.parse::<Date>().unwrap_or_else(|_| Date::today());
    let (currencies, outcome) = if query.submitted() {
        tokio::join!(state.currencies(list_date), async { Some(state.convert(&form).await) })
    } else {
        (state.currencies(list_date).await, None)
    };
    let outcome = if malformed {
        Some(Outcome::Failed {
            message: "The form data could not be read; please submit the form again.".into(),
            field: None,
        })
    } else {
        outcome
    };
    let mut response = Html(page::render(&Page { form, currencies, outcome })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn convert_query(form: &FormValues) -> String {
    format!(
        "/convert?date={}&amount={}&from={}&to={}",
        encode_query_value(&form.date),
        encode_query_value(&form.amount),
        encode_query_value(&form.from),
        encode_query_value(&form.to)
    )
}

impl WebState {
    /// The currency list for the form, or the built-in one if the converter fails.
    async fn currencies(&self, date: Date) -> Vec<String> {
        let fallback = || FALLBACK_CURRENCIES.iter().map(|c| (*c).to_owned()).collect();
        let response = match self.converter.get(&format!("/currencies?date={date}")).await {
            Ok(r) if r.status == StatusCode::OK => r,
            Ok(r) => {
                tracing::debug!(status = r.status.as_u16(), "currency list unavailable, using the built-in one");
                return fallback();
            }
            Err(e) => {
                tracing::warn!(error = %e, "currency list unavailable, using the built-in one");
                return fallback();
            }
        };
        let parsed: Option<Vec<String>> = serde_json::from_slice::<Value>(&response.body).ok().and_then(|v| {
            v.get("currencies")?
                .as_array()?
                .iter()
                .map(|c| c.as_str()?.parse::<CurrencyCode>().ok().map(|c| c.to_string()))
                .collect()
        });
        parsed.filter(|list| !list.is_empty()).unwrap_or_else(fallback)
    }

    /// Asks the converter and turns its answer into something to show.
    async fn convert(&self, form: &FormValues) -> Outcome {
        let unavailable = Outcome::Failed { message: UNAVAILABLE_MESSAGE.to_owned(), field: None };
        let response = match self.converter.get(&convert_query(form)).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(error = %e, "converter call failed");
                return unavailable;
            }
        };
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        match (response.status, body) {
            (StatusCode::OK, Some(v)) => {
                let display = v.get("display").cloned().unwrap_or(Value::Null);
                let conversion = (|| {
                    Some(Conversion {
                        amount: text(&display, "amount")?,
                        converted: text(&display, "converted")?,
                        date: text(&v, "date")?,
                        effective_date: text(&v, "effective_date")?,
                        rate: text(&v, "rate")?,
                    })
                })();
                conversion.map(Outcome::Converted).unwrap_or(unavailable)
            }
            // The converter's input errors are written for people; show them.
            (status, Some(v)) if status.is_client_error() && text(&v, "error").is_some() => {
                Outcome::Failed { message: text(&v, "error").unwrap_or_default(), field: text(&v, "field") }
            }
            (status, _) => {
                tracing::warn!(
                    status = status.as_u16(),
                    l5d_err = response.l5d_err.as_deref().unwrap_or("-"),
                    "converter failed"
                );
                unavailable
            }
        }
    }
}

/// The converter's `/convert` JSON and status when it answered for the caller: a conversion, or an input error
/// written for people (4xx with `error`). Any other failure is a generic JSON error of our own (502, or 503 when
/// the converter said so): what went wrong inside — addresses, peer errors, `l5d-err` — is logged, never echoed.
async fn api_convert(State(state): State<WebState>, RawQuery(query): RawQuery) -> Response {
    let path = match query {
        Some(q) => format!("/convert?{q}"),
        None => "/convert".to_owned(),
    };
    let peer = state.converter.settings().name.as_str().to_owned();
    let unavailable = |status| json_response(status, &json!({ "error": "conversion is not available right now" }));
    let response = match state.converter.get(&path).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "converter call failed");
            return unavailable(StatusCode::BAD_GATEWAY);
        }
    };
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(body) if response.status.is_success() => json_response(response.status, &body),
        Ok(body) if response.status.is_client_error() && body.get("error").is_some_and(Value::is_string) => {
            json_response(response.status, &body)
        }
        _ => {
            tracing::warn!(
                %peer,
                status = response.status.as_u16(),
                l5d_err = response.l5d_err.as_deref().unwrap_or("-"),
                body = %String::from_utf8_lossy(&response.body),
                "converter failed"
            );
            match response.status {
                StatusCode::SERVICE_UNAVAILABLE => unavailable(StatusCode::SERVICE_UNAVAILABLE),
                _ => unavailable(StatusCode::BAD_GATEWAY),
            }
        }
    }
}
