//! Errors on dashboard pages: the JSON API's error (same status, same words), shown as an
//! HTML page. Forms that can show an error beside the input it names catch the error
//! first (see [`PageError::field`]); everything else lands here.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

/// An error answered with an HTML page; wraps the API's error so both say the same.
#[derive(Debug)]
pub struct PageError(pub ApiError);

pub type PageResult<T = Response> = Result<T, PageError>;

impl PageError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        PageError(ApiError::new(status, code, message))
    }

    pub fn forbidden(role: &str) -> Self {
        PageError(ApiError::forbidden(role))
    }

    pub fn not_found(what: &str) -> Self {
        PageError(ApiError::not_found(what))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        PageError(ApiError::bad_request(message))
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The form field the error is about (e.g. `sync_config.frequency`), when it names
    /// one: show the message beside that input.
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<syncledger_engine::EngineError> for PageError {
    fn from(e: syncledger_engine::EngineError) -> Self {
        PageError(e.into())
    }
}

impl From<syncledger_engine::RunError> for PageError {
    fn from(e: syncledger_engine::RunError) -> Self {
        PageError(e.into())
    }
}

fn title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "That did not work",
        StatusCode::UNAUTHORIZED => "Please sign in",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible right now",
        StatusCode::PAYMENT_REQUIRED => "Your plan's limit is reached",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        s if s.is_server_error() => "Something went wrong on our side",
        _ => "That did not work",
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let heading = title(status);
        let body = html! {
            section.error-page role="alert" {
                h1 { (heading) }
                p.message { (self.0.message) }
                p { a href="/" { "Back to the overview" } }
            }
        };
        super::frame::bare(status, heading, body)
    }
}
