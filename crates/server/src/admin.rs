//! Backups of a running node: a snapshot is a consistent copy of the store (taken after a
//! checkpoint, with parts hard-linked, so it costs little disk and no pause for writers), which
//! `pulsewire backup` downloads file by file and then deletes.

use std::path::{Component, Path as FsPath, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;

fn snapshots_dir(state: &AppState) -> PathBuf {
    state.config().data_dir.join("snapshots")
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "code": "snapshot", "message": message.into() }))).into_response()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `POST /api/v1/admin/snapshots`: checkpoints and snapshots the store.
pub async fn create(State(state): State<AppState>) -> Response {
    // A poisoned store may hold acknowledged points in a head that no checkpoint could seal;
    // its snapshot would silently lack them.
    if let Some(why) = state.store().poisoned() {
        return failure(StatusCode::SERVICE_UNAVAILABLE, format!("cannot snapshot: {why}"));
    }
    let id = format!(
        "{}-{:04x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        rand::random::<u16>()
    );
    let dir = snapshots_dir(&state).join(&id);
    let store = state.store().clone();
    let target = dir.clone();
    let outcome = match tokio::task::spawn_blocking(move || store.snapshot(&target)).await {
        Ok(Ok(files)) => match state.store().poisoned() {
            None => Ok(files),
            // A checkpoint that failed while this one waited poisoned the store before the
            // snapshot read the manifest, and the points it held are not in the snapshot.
            Some(why) => Err(why),
        },
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the snapshot task failed".to_string()),
    };
    match outcome {
        Ok(files) => {
            let list: Vec<Value> = files
                .iter()
                .map(|f| {
                    let bytes = std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
                    json!({ "path": f.to_string_lossy(), "bytes": bytes })
                })
                .collect();
            (StatusCode::CREATED, Json(json!({ "id": id, "files": list }))).into_response()
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            failure(StatusCode::INTERNAL_SERVER_ERROR, format!("snapshot failed: {e}"))
        }
    }
}

/// `GET /api/v1/admin/snapshots/{id}/files/{*path}`.
pub async fn file(State(state): State<AppState>, Path((id, path)): Path<(String, String)>) -> Response {
    let rel = FsPath::new(&path);
    if !valid_id(&id) || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return failure(StatusCode::BAD_REQUEST, "invalid snapshot id or file path");
    }
    let full = snapshots_dir(&state).join(&id).join(rel);
    match tokio::fs::File::open(&full).await {
        Ok(f) => {
            let len = f.metadata().await.map(|m| m.len()).ok();
            let mut resp = Body::from_stream(tokio_util::io::ReaderStream::new(f)).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            if let Some(len) = len {
                resp.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            }
            resp
        }
        Err(_) => failure(StatusCode::NOT_FOUND, format!("no file {path} in snapshot {id}")),
    }
}

/// `DELETE /api/v1/admin/snapshots/{id}`.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        return failure(StatusCode::BAD_REQUEST, "invalid snapshot id");
    }
    match tokio::fs::remove_dir_all(snapshots_dir(&state).join(&id)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => failure(StatusCode::NOT_FOUND, format!("no snapshot {id}")),
    }
}

/// `POST /api/v1/admin/checkpoint`: seals the head into parts now (before measuring disk use,
/// or before a planned restart, so the next start has no WAL to replay).
pub async fn checkpoint(State(state): State<AppState>) -> Response {
    let store = state.store().clone();
    match tokio::task::spawn_blocking(move || store.checkpoint().map(|()| store.stats())).await {
        Ok(Ok(stats)) => (StatusCode::OK, Json(json!({ "tsdb": stats }))).into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, format!("checkpoint failed: {e}")),
        Err(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, "checkpoint task failed"),
    }
}

/// `POST /api/v1/admin/rollup`: seals the head, then builds the rollup tiers of every day that
/// has none yet, without waiting for the day to end and go quiet (after importing history).
pub async fn rollup(State(state): State<AppState>) -> Response {
    let store = state.store().clone();
    let work = move || {
        store.checkpoint()?;
        store.roll_up()?;
        Ok::<_, pulsewire_tsdb::Error>(store.stats())
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(stats)) => (StatusCode::OK, Json(json!({ "tsdb": stats }))).into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, format!("rollup failed: {e}")),
        Err(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, "rollup task failed"),
    }
}

/// `POST /api/v1/admin/compact`: seals the head, then merges every partition's parts into one
/// (as compaction does by itself once a partition has gone cold).
pub async fn compact(State(state): State<AppState>) -> Response {
    let store = state.store().clone();
    let work = move || store.compact().map(|()| store.stats());
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(stats)) => (StatusCode::OK, Json(json!({ "tsdb": stats }))).into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, format!("compaction failed: {e}")),
        Err(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, "compaction task failed"),
    }
}
