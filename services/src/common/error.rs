//! The JSON error every service answers with: `{"error": "...", "field": "..."}`.
//!
//! One type, one `IntoResponse`, so every failure has the same shape and no
//! handler can leak a debug dump or a stack trace to a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt;

/// The request input an error is about, so a form can point at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The `date` parameter or path segment.
    Date,
    /// The source currency.
    From,
    /// The target currency.
    To,
    /// The amount to convert.
    Amount,
    /// The start of a history range.
    Start,
    /// The end of a history range.
    End,
}

impl Field {
    /// The parameter's name as it appears in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Date => "date",
            Self::From => "from",
            Self::To => "to",
            Self::Amount => "amount",
            Self::Start => "start",
            Self::End => "end",
        }
    }

    /// The field with this name, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Date, Self::From, Self::To, Self::Amount, Self::Start, Self::End]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a status, a message for people, and optionally the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// What exactly is wrong, in one sentence.
    pub message: String,
    /// Which input caused it, when one did.
    pub field: Option<Field>,
}

impl ApiError {
    /// An error with any status and no field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), field: None }
    }

    /// 400: the client sent something invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: the thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Names the input at fault.
    pub fn with_field(mut self, field: Field) -> Self {
        self.field = Some(field);
        self
    }

    /// The JSON body this error is sent as.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = serde_json::Value::from(field.as_str());
        }
        body
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Client mistakes are routine; only our own or our peers' failures are
        // worth a warning in the log.
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request rejected");
        }
        json_response(self.status, &self.to_json())
    }
}

/// A JSON response with the given status and body.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The fallback for unknown routes: a JSON 404 rather than an empty body.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// The fallback for a known path with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} not allowed for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = ApiError::bad_request("amount must be a number").with_field(Field::Amount);
        assert_eq!(e.to_json(), serde_json::json!({"error": "amount must be a number", "field": "amount"}));
        assert_eq!(ApiError::not_found("x").to_json(), serde_json::json!({"error": "x"}));
        assert_eq!(Field::parse("to"), Some(Field::To));
        assert_eq!(Field::parse("nope"), None);
    }
}
