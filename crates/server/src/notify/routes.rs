//! The notifiers' HTTP endpoints: the dead-letter log (list, replay) and the counters.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse as _, Response};
use pulsewire_proto::ErrorCode;
use serde::Deserialize;

use super::Error;
use crate::{ApiError, AppState};

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::UnknownWebhook(_) => ApiError::new(ErrorCode::BadRequest, e.to_string()),
            other => {
                tracing::error!("notifier request failed: {other}");
                ApiError::new(ErrorCode::Internal, "notifier request failed; see the server log")
            }
        }
    }
}

/// `GET /api/v1/notify/dead-letter`: every undelivered webhook notification of the key's
/// tenant, oldest first.
pub async fn dead_letters(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
) -> Result<Response, ApiError> {
    let letters = state.notifiers().dead_letters(tenant.as_str()).await?;
    Ok(Json(serde_json::json!({ "dead_letters": letters })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReplayQuery {
    webhook: Option<String>,
}

/// `POST /api/v1/notify/dead-letter/replay[?webhook=NAME]`: queues the key's tenant's dead
/// letters again.
pub async fn replay(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, ApiError> {
    let report = state
        .notifiers()
        .replay_dead_letters(tenant.as_str(), q.webhook.as_deref())
        .await?;
    Ok(Json(report).into_response())
}

/// `GET /api/v1/notify/stats`: each target's counters.
pub async fn stats(State(state): State<AppState>) -> Response {
    Json(state.notifiers().stats()).into_response()
}
