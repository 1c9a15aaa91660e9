//! Metrics ingestion over HTTP: InfluxDB line protocol (`/write` as InfluxDB 1.x answers it,
//! `/api/v2/write` as 2.x does, so Telegraf and the InfluxDB client libraries work unchanged)
//! and the JSON agent format (`/api/v1/metrics/ingest`). Every refused line is reported with
//! its number and reason; the good lines of a batch are written (as InfluxDB does). A write is
//! answered only once it is in the WAL, and its points are then published live.

use std::io::Read;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pulsewire_model::TenantId;
use pulsewire_proto::{Line, Precision, parse_json_ingest, parse_lines};
use pulsewire_tsdb::{Refusal, RefusalKind};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Tenant;
use crate::limits::{Caller, Limit};
use crate::live::LiveBatch;
use crate::watch::Findings;

/// Which InfluxDB API an answer must look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V1,
    V2,
    Json,
}

/// A refused request, shaped per dialect.
pub struct IngestError {
    dialect: Dialect,
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl IngestError {
    fn new(dialect: Dialect, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            dialect,
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let body = match self.dialect {
            Dialect::V1 => serde_json::json!({ "error": self.message }),
            Dialect::V2 => {
                let code = match self.status {
                    StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                    StatusCode::TOO_MANY_REQUESTS => "too many requests",
                    StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                    StatusCode::UNPROCESSABLE_ENTITY => "unprocessable entity",
                    StatusCode::INTERNAL_SERVER_ERROR => "internal error",
                    _ => "invalid",
                };
                serde_json::json!({ "code": code, "message": self.message })
            }
            Dialect::Json => {
                let code = match self.status {
                    StatusCode::TOO_MANY_REQUESTS => "rate_limited",
                    StatusCode::PAYLOAD_TOO_LARGE => "frame_too_large",
                    _ => "invalid",
                };
                serde_json::json!({ "code": code, "message": self.message })
            }
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

#[derive(Deserialize)]
pub struct V1Params {
    db: Option<String>,
    precision: Option<String>,
}

#[derive(Deserialize)]
pub struct V2Params {
    bucket: Option<String>,
    precision: Option<String>,
}

/// `POST /write?db=&precision=` (InfluxDB 1.x).
pub async fn write_v1(
    State(state): State<AppState>,
    Query(q): Query<V1Params>,
    Tenant(tenant): Tenant,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, IngestError> {
    let d = Dialect::V1;
    let db =
        q.db.filter(|s| !s.is_empty())
            .ok_or_else(|| IngestError::new(d, StatusCode::BAD_REQUEST, "database is required"))?;
    let precision = match q.precision.as_deref() {
        None | Some("") => Precision::Ns,
        Some(p) => Precision::parse_v1(p).map_err(|e| IngestError::new(d, StatusCode::BAD_REQUEST, e))?,
    };
    write_line_protocol(state, d, tenant, caller, db, precision, &headers, body).await
}

/// `GET|POST /query` (InfluxDB 1.x InfluxQL), for what writers send before they write:
/// Telegraf's `influxdb` output and the 1.x client libraries' `create_database` issue
/// `CREATE DATABASE`. A database is made by its first write here, so those statements are
/// answered as InfluxDB answers them (200, one empty result per statement) and change nothing.
/// Any other statement is refused with 400 in InfluxDB's error shape, naming the query API.
/// `q` is read from the URL or, as Telegraf sends it, from a form body.
pub async fn influxql(uri: axum::http::Uri, body: Bytes) -> Response {
    let q = uri
        .query()
        .and_then(|query| crate::auth::form_param(query.as_bytes(), "q"))
        .or_else(|| crate::auth::form_param(&body, "q"));
    let statements: Vec<&str> = q
        .as_deref()
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if statements.is_empty() {
        return influxql_error("missing required parameter \"q\"");
    }
    for s in &statements {
        // `CREATE DATABASE <name> [WITH ...]`: the name is required, as in InfluxQL.
        let words: Vec<&str> = s.split_whitespace().take(3).collect();
        let create_db =
            words.len() == 3 && words[0].eq_ignore_ascii_case("create") && words[1].eq_ignore_ascii_case("database");
        if !create_db {
            return influxql_error(&format!(
                "unsupported statement {s:?}: /query accepts only CREATE DATABASE (databases are created by \
                 their first write); read data with GET /api/v1/query (docs/query.md)"
            ));
        }
    }
    let results: Vec<serde_json::Value> = (0..statements.len())
        .map(|i| serde_json::json!({ "statement_id": i }))
        .collect();
    (StatusCode::OK, Json(serde_json::json!({ "results": results }))).into_response()
}

fn influxql_error(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /api/v2/write?org=&bucket=&precision=` (InfluxDB 2.x).
pub async fn write_v2(
    State(state): State<AppState>,
    Query(q): Query<V2Params>,
    Tenant(tenant): Tenant,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, IngestError> {
    let d = Dialect::V2;
    let bucket = q
        .bucket
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IngestError::new(d, StatusCode::BAD_REQUEST, "bucket is required"))?;
    let precision = match q.precision.as_deref() {
        None | Some("") => Precision::Ns,
        Some(p) => Precision::parse_v2(p).map_err(|e| IngestError::new(d, StatusCode::BAD_REQUEST, e))?,
    };
    write_line_protocol(state, d, tenant, caller, bucket, precision, &headers, body).await
}

/// `POST /api/v1/metrics/ingest`: one JSON object or an array of them.
pub async fn ingest_json(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let d = Dialect::Json;
    let body = decode_body(&state, d, &caller, &headers, body).await?;
    // Findings are published in the tenant's own channels, after the task has taken `tenant`.
    let findings_tenant = tenant.clone();
    let hub_state = state.clone();
    let (written, refused, ack, live, findings) = tokio::task::spawn_blocking(move || {
        let items = parse_json_ingest(&body).map_err(|e| IngestError::new(d, StatusCode::BAD_REQUEST, e))?;
        let mut refused = Vec::new();
        let mut lines = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Ok(line) => lines.push((i, line)),
                Err(e) => refused.push(Refusal {
                    line: e.index,
                    kind: RefusalKind::Invalid,
                    message: e.message,
                    limit: None,
                }),
            }
        }
        check_rate(&hub_state, d, &caller, lines.len())?;
        let stored = store_lines(&hub_state, d, &tenant, &caller, "default", Precision::Ms, &lines)?;
        refused.extend(stored.refused);
        refused.sort_by_key(|r| r.line);
        let live = LiveBatch::collect(&hub_state, &tenant, &lines, &stored.accepted, Precision::Ms, stored.now);
        Ok::<_, IngestError>((stored.accepted.len(), refused, stored.ack, live, stored.findings))
    })
    .await
    .map_err(|_| IngestError::new(d, StatusCode::INTERNAL_SERVER_ERROR, "ingest task failed"))??;
    wait_durable(d, ack).await?;
    state.live().push(live);
    crate::watch::publish(state.hub(), &findings_tenant, findings).await;
    let errors: Vec<serde_json::Value> = refused
        .iter()
        .map(|r| serde_json::json!({ "index": r.line, "message": r.message }))
        .collect();
    let status = status_for(d, &refused).unwrap_or(StatusCode::OK);
    Ok((
        status,
        Json(serde_json::json!({ "accepted": written, "rejected": errors })),
    )
        .into_response())
}

#[allow(clippy::too_many_arguments)]
async fn write_line_protocol(
    state: AppState,
    d: Dialect,
    tenant: TenantId,
    caller: Caller,
    db: String,
    precision: Precision,
    headers: &HeaderMap,
    body: Body,
) -> Result<StatusCode, IngestError> {
    let body = decode_body(&state, d, &caller, headers, body).await?;
    let max_line = state.config().ingest.max_line_bytes;
    // Findings are published in the tenant's own channels, after the task has taken `tenant`.
    let findings_tenant = tenant.clone();
    let hub_state = state.clone();
    let (refused, ack, live, findings) = tokio::task::spawn_blocking(move || {
        let mut refused = Vec::new();
        let mut too_long = 0u64;
        let mut numbered: Vec<(usize, Line<'_>)> = Vec::new();
        let mut lines = parse_lines(&body).with_precision(precision);
        while let Some(item) = lines.next() {
            // Numbered and measured by the parser: a quoted string may span physical lines.
            let (n, len) = lines.last_entry();
            if len > max_line + 1 {
                refused.push(Refusal {
                    line: n,
                    kind: RefusalKind::Limit,
                    message: format!("line is longer than the limit of {max_line} bytes"),
                    limit: None,
                });
                too_long += 1;
                continue;
            }
            match item {
                Ok(line) => numbered.push((n, line)),
                Err(e) => refused.push(Refusal {
                    line: e.line,
                    kind: RefusalKind::Invalid,
                    message: e.message,
                    limit: None,
                }),
            }
        }
        hub_state
            .limits()
            .refused_n(Limit::ingest_line_bytes, too_long, &caller.actor);
        check_rate(&hub_state, d, &caller, numbered.len())?;
        let stored = store_lines(&hub_state, d, &tenant, &caller, &db, precision, &numbered)?;
        refused.extend(stored.refused);
        refused.sort_by_key(|r| r.line);
        let live = LiveBatch::collect(&hub_state, &tenant, &numbered, &stored.accepted, precision, stored.now);
        Ok::<_, IngestError>((refused, stored.ack, live, stored.findings))
    })
    .await
    .map_err(|_| IngestError::new(d, StatusCode::INTERNAL_SERVER_ERROR, "ingest task failed"))??;
    wait_durable(d, ack).await?;
    state.live().push(live);
    crate::watch::publish(state.hub(), &findings_tenant, findings).await;
    match status_for(d, &refused) {
        None => Ok(StatusCode::NO_CONTENT),
        Some(status) => {
            let mut e = IngestError::new(d, status, partial_write_message(&refused));
            if refused.iter().any(|r| r.kind == RefusalKind::RateLimited) {
                e.retry_after = Some(60);
            }
            Err(e)
        }
    }
}

/// The ingest rate limit (`limits.ingest_points_per_second`): the whole write is refused with
/// 429 and `Retry-After` when the caller's budget cannot take its points.
fn check_rate(state: &AppState, d: Dialect, caller: &Caller, points: usize) -> Result<(), IngestError> {
    state.limits().check_ingest(caller, points).map_err(|secs| {
        let mut e = IngestError::new(
            d,
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "ingest rate limit exceeded: {points} points refused, the limit is {} points per second; retry after {secs}s",
                state.limits().ingest_points_per_second()
            ),
        );
        e.retry_after = Some(secs);
        e
    })
}

/// Counts the refusals the store's limits made: one audit record per limit and write.
fn count_store_refusals(state: &AppState, refused: &[Refusal], caller: &Caller) {
    let mut by_limit: Vec<(Limit, u64)> = Vec::new();
    for r in refused {
        if let Some(l) = r.limit {
            let l = Limit::of_store(l);
            match by_limit.iter_mut().find(|(k, _)| *k == l) {
                Some((_, n)) => *n += 1,
                None => by_limit.push((l, 1)),
            }
        }
    }
    for (l, n) in by_limit {
        state.limits().refused_n(l, n, &caller.actor);
    }
}

/// What storing one write's lines gave: which were accepted, which refused, the durability
/// ack, the server time used, and what live analysis found in the accepted samples.
#[derive(Default)]
struct Stored {
    accepted: Vec<usize>,
    refused: Vec<Refusal>,
    ack: Option<pulsewire_tsdb::Ack>,
    now: i64,
    findings: Findings,
}

fn store_lines(
    state: &AppState,
    d: Dialect,
    tenant: &TenantId,
    caller: &Caller,
    db: &str,
    precision: Precision,
    lines: &[(usize, Line<'_>)],
) -> Result<Stored, IngestError> {
    if lines.is_empty() {
        return Ok(Stored::default());
    }
    let store = state.store();
    let watch = state.watch();
    let out = if watch.wants(state.alerting()) {
        store.write_observed(tenant, db, precision, lines)
    } else {
        store.write(tenant, db, precision, lines)
    }
    .map_err(|e| store_error(d, &e))?;
    count_store_refusals(state, &out.refused, caller);
    let findings = watch.observe(store, state.alerting(), tenant, &out.observed);
    Ok(Stored {
        accepted: out.accepted,
        refused: out.refused,
        ack: out.ack,
        now: out.now_ms,
        findings,
    })
}

fn store_error(d: Dialect, e: &pulsewire_tsdb::Error) -> IngestError {
    match e {
        pulsewire_tsdb::Error::Poisoned(_) | pulsewire_tsdb::Error::Closed => {
            IngestError::new(d, StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        _ => IngestError::new(d, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn wait_durable(d: Dialect, ack: Option<pulsewire_tsdb::Ack>) -> Result<(), IngestError> {
    let Some(ack) = ack else { return Ok(()) };
    match ack.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(store_error(d, &e)),
        Err(_) => Err(IngestError::new(
            d,
            StatusCode::SERVICE_UNAVAILABLE,
            "the store closed before the write was durable",
        )),
    }
}

/// 429 if the only refusals were the new-series rate limit or the tenant's series quota; for the 2.x API, 422 if every
/// refused line was well-formed but could not be stored (type conflict, retention, limits), as
/// InfluxDB 2.x answers; otherwise 400.
fn status_for(d: Dialect, refused: &[Refusal]) -> Option<StatusCode> {
    if refused.is_empty() {
        None
    } else if refused
        .iter()
        .all(|r| matches!(r.kind, RefusalKind::RateLimited | RefusalKind::Quota))
    {
        Some(StatusCode::TOO_MANY_REQUESTS)
    } else if d == Dialect::V2 && refused.iter().all(|r| r.kind != RefusalKind::Invalid) {
        Some(StatusCode::UNPROCESSABLE_ENTITY)
    } else {
        Some(StatusCode::BAD_REQUEST)
    }
}

/// InfluxDB's wording: `partial write: <first reasons> dropped=<n>`, naming each line.
fn partial_write_message(refused: &[Refusal]) -> String {
    const SHOWN: usize = 10;
    let mut msg = String::from("partial write: ");
    for (i, r) in refused.iter().take(SHOWN).enumerate() {
        if i > 0 {
            msg.push_str("; ");
        }
        msg.push_str(&format!("line {}: {}", r.line, r.message));
    }
    if refused.len() > SHOWN {
        msg.push_str(&format!("; and {} more", refused.len() - SHOWN));
    }
    msg.push_str(&format!(" dropped={}", refused.len()));
    msg
}

/// The body, gunzipped if it says so, within `ingest.max_body_bytes` (413 above).
async fn decode_body(
    state: &AppState,
    d: Dialect,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, IngestError> {
    let max = state.config().ingest.max_body_bytes;
    let too_large = || {
        state.limits().refused(Limit::ingest_body_bytes, &caller.actor);
        IngestError::new(
            d,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {max} bytes"),
        )
    };
    let body = axum::body::to_bytes(body, max).await.map_err(|e| {
        let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            too_large()
        } else {
            IngestError::new(d, StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))
        }
    })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body);
    }
    // Decompressing megabytes is CPU work: off the threads that serve connections.
    let out = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(body.len() * 4);
        let mut reader = flate2::read::MultiGzDecoder::new(&body[..]).take(max as u64 + 1);
        reader.read_to_end(&mut out).map(|_| out)
    })
    .await
    .map_err(|_| IngestError::new(d, StatusCode::INTERNAL_SERVER_ERROR, "ingest task failed"))?
    .map_err(|e| IngestError::new(d, StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(Bytes::from(out))
}

/// Writes points the server produces itself (the host collector, the demo fleet) the way an
/// HTTP write would: stored, published live on `metrics:<measurement>`, watched by live
/// analysis; waits until they are durable. Returns the refusals, if any.
pub async fn write_own(
    state: &AppState,
    tenant: &TenantId,
    db: &str,
    lines: Vec<Line<'static>>,
) -> Result<Vec<Refusal>, String> {
    let d = Dialect::Json;
    let hub_state = state.clone();
    let task_tenant = tenant.clone();
    let db = db.to_string();
    let numbered: Vec<(usize, Line<'static>)> = lines.into_iter().enumerate().collect();
    let (refused, ack, live, findings) = tokio::task::spawn_blocking(move || {
        let caller = Caller::server(task_tenant.clone());
        let stored = store_lines(&hub_state, d, &task_tenant, &caller, &db, Precision::Ms, &numbered)?;
        let live = LiveBatch::collect(
            &hub_state,
            &task_tenant,
            &numbered,
            &stored.accepted,
            Precision::Ms,
            stored.now,
        );
        Ok::<_, IngestError>((stored.refused, stored.ack, live, stored.findings))
    })
    .await
    .map_err(|_| "write task failed".to_string())?
    .map_err(|e| e.message)?;
    wait_durable(d, ack).await.map_err(|e| e.message)?;
    state.live().push(live);
    crate::watch::publish(state.hub(), tenant, findings).await;
    Ok(refused)
}
