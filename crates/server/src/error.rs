//! The one place where errors become HTTP responses: status from the stable error code, body
//! `{"code": "...", "message": "..."}`. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pulsewire_hub::HubError;
use pulsewire_proto::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "code": self.code.as_str(), "message": self.message });
        (status, Json(body)).into_response()
    }
}
