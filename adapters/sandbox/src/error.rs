//! HubSpot-shaped error responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error as HubSpot reports it: `{status:"error", message, correlationId, category}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub category: &'static str,
    pub message: String,
    pub extra: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, category: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            category,
            message: message.into(),
            extra: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication \
             and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    }

    pub fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "status": "error",
            "message": self.message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
            "category": self.category,
        });
        if let (Some(Value::Object(extra)), Some(map)) = (&self.extra, body.as_object_mut()) {
            map.extend(extra.clone());
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Parses a JSON body, reporting bad input the way HubSpot does rather than as plain text.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("Invalid input JSON: {e}")))
}

/// Query pairs, keeping repeated keys (`properties=a&properties=b`).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default()
}

/// A comma-separated or repeated list parameter.
pub fn query_list(pairs: &[(String, String)], key: &str) -> Option<Vec<String>> {
    let values: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    (!values.is_empty()).then_some(values)
}

pub fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
