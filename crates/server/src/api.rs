//! Client commands (shared by the WebSocket transport) and the HTTP API: publish, broadcast,
//! history, and the operations endpoints (health, readiness, metrics, stats, channels, clients).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pulsewire_hub::{Client, Hub};

use pulsewire_model::{Position, Priority, TenantId};
use pulsewire_proto::{ClientCommand, ErrorCode, HistoryReply, PublishReply, encode_reply};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ApiError, AppState};

/// Runs one client command, queueing its reply on the client.
pub async fn execute(
    state: &AppState,
    client: &Arc<Client>,
    cmd: ClientCommand,
) -> Result<(), (Option<u64>, ApiError)> {
    let hub = state.hub();
    match cmd {
        ClientCommand::Subscribe { id, channels, since } => {
            hub.subscribe(client, id, &channels, &since)
                .await
                .map_err(|e| (id, e.into()))?;
            Ok(())
        }
        ClientCommand::Unsubscribe { id, channels } => {
            hub.unsubscribe(client, &channels)
                .map_err(|e| (id, ApiError::from(e)))?;
            #[derive(Serialize)]
            struct Reply<'a> {
                #[serde(rename = "type")]
                kind: &'static str,
                #[serde(skip_serializing_if = "Option::is_none")]
                id: Option<u64>,
                channels: &'a [String],
            }
            client.push_control(encode_reply(&Reply {
                kind: "unsubscribed",
                id,
                channels: &channels,
            }));
            Ok(())
        }
        ClientCommand::Publish {
            id,
            channel,
            data,
            priority,
        } => {
            server_owned(&channel).map_err(|e| (id, e))?;
            let p = hub
                .publish(&client.tenant, &channel, data, priority)
                .await
                .map_err(|e| (id, e.into()))?;
            client.push_control(encode_reply(&publish_reply(Some(id), &p)));
            Ok(())
        }
        ClientCommand::History {
            id,
            channel,
            limit,
            since,
        } => {
            let frame = history_frame(hub, &client.tenant, id, &channel, since.as_ref(), limit)
                .await
                .map_err(|e| (id, e))?;
            client.push_control(frame);
            Ok(())
        }
        ClientCommand::Presence { id, channel } => {
            let list = hub.presence(&client.tenant, &channel).map_err(|e| (id, e.into()))?;
            #[derive(Serialize)]
            struct Present<'a> {
                client: u64,
                #[serde(skip_serializing_if = "Option::is_none")]
                user: Option<&'a str>,
            }
            #[derive(Serialize)]
            struct Reply<'a> {
                #[serde(rename = "type")]
                kind: &'static str,
                #[serde(skip_serializing_if = "Option::is_none")]
                id: Option<u64>,
                channel: &'a str,
                clients: Vec<Present<'a>>,
            }
            client.push_control(encode_reply(&Reply {
                kind: "presence",
                id,
                channel: &channel,
                clients: list
                    .iter()
                    .map(|(c, u)| Present {
                        client: *c,
                        user: u.as_deref(),
                    })
                    .collect(),
            }));
            Ok(())
        }
        // The transport handles these before anything reaches here.
        ClientCommand::Connect { id, .. } | ClientCommand::Refresh { id, .. } => Err((
            id,
            ApiError::new(ErrorCode::BadRequest, "not accepted on this connection"),
        )),
        ClientCommand::Ping { id } => {
            #[derive(Serialize)]
            struct Pong {
                #[serde(rename = "type")]
                kind: &'static str,
                #[serde(skip_serializing_if = "Option::is_none")]
                id: Option<u64>,
            }
            client.push_control(encode_reply(&Pong { kind: "pong", id }));
            Ok(())
        }
    }
}

/// The `history` reply: publications as `message` frames, oldest first.
///
/// The reply holds at most `hub.queue.max_bytes` of publications: without `since` the newest
/// that fit, with `since` the oldest that fit (and then `recovered: false`, ask again from the
/// last one received).
async fn history_frame(
    hub: &Hub,
    tenant: &TenantId,
    id: Option<u64>,
    channel: &str,
    since: Option<&Position>,
    limit: Option<usize>,
) -> Result<Bytes, ApiError> {
    let slice = hub.history(tenant, channel, since, limit).await?;
    let budget = hub.config().queue.max_bytes;
    let mut frames: Vec<Box<RawValue>> = Vec::with_capacity(slice.publications.len());
    let mut used = 0;
    let mut truncated = false;
    let ordered: Box<dyn Iterator<Item = _>> = if since.is_some() {
        Box::new(slice.publications.iter())
    } else {
        Box::new(slice.publications.iter().rev())
    };
    for p in ordered {
        let frame = pulsewire_proto::encode_message(p, None);
        if used + frame.len() > budget {
            truncated = true;
            break;
        }
        used += frame.len();
        let text = String::from_utf8_lossy(&frame).into_owned();
        frames.push(RawValue::from_string(text).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?);
    }
    if since.is_none() {
        frames.reverse();
    }
    Ok(encode_reply(&HistoryReply {
        kind: "history",
        id,
        channel,
        epoch: &slice.top.epoch,
        offset: slice.top.offset,
        recovered: since.map(|_| slice.recovered && !truncated),
        publications: frames.iter().map(|b| &**b).collect(),
    }))
}

fn json_response(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Reads a request body, refusing one over `http.max_body_bytes` before it is all in memory.
async fn read_body(state: &AppState, caller: &crate::limits::Caller, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config().http.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        state
            .limits()
            .refused(crate::limits::Limit::http_body_bytes, &caller.actor);
        ApiError::new(
            ErrorCode::FrameTooLarge,
            format!("body exceeds the limit of {limit} bytes: {e}"),
        )
    })
}

/// Parses a JSON body. A body that is not JSON is `bad_json`, valid JSON of the wrong shape
/// `bad_request`, decided by reading the body as JSON without keeping it: serde_json reports
/// some type mismatches (a number where `priority`'s string belongs) as syntax errors.
fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let is_json =
            std::str::from_utf8(body).is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok());
        let code = if is_json {
            ErrorCode::BadRequest
        } else {
            ErrorCode::BadJson
        };
        ApiError::new(code, e.to_string())
    })
}

fn check_ready(state: &AppState) -> Result<(), ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "server is shutting down"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    priority: Priority,
}

pub async fn publish(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    caller: crate::limits::Caller,
    extensions: axum::http::Extensions,
    body: Body,
) -> Result<Response, ApiError> {
    check_ready(&state)?;
    let body = read_body(&state, &caller, body).await?;
    let req: PublishBody<'_> = parse_body(&body)?;
    server_owned(&req.channel)?;
    channel_rule(&state, &extensions, crate::permissions::Action::Publish, &req.channel)?;
    let data = Bytes::copy_from_slice(req.data.get().as_bytes());
    let p = state.hub().publish(&tenant, &req.channel, data, req.priority).await?;
    Ok(json_response(encode_reply(&publish_reply(None, &p))))
}

/// The namespace rules (`[[auth.namespaces]]`) for an HTTP request, as for a WebSocket or SSE
/// connection with the same API key: 403 `forbidden` naming the rule.
fn channel_rule(
    state: &AppState,
    extensions: &axum::http::Extensions,
    action: crate::permissions::Action,
    channel: &str,
) -> Result<(), ApiError> {
    use crate::permissions::Identity;
    let who = match (state.keys(), extensions.get::<crate::auth::Principal>()) {
        (None, _) => Identity::Open,
        (Some(_), Some(p)) => Identity::Key(p.clone()),
        (Some(_), None) => Identity::Anonymous(TenantId::new(&state.config().auth.anonymous_tenant)),
    };
    state
        .permissions()
        .check(&who, action, channel)
        .map_err(|why| ApiError::new(ErrorCode::Forbidden, why))
}

/// The answer to a publish: the reply frame on WebSocket (`kind` and `id` set), the body on HTTP.
fn publish_reply(ws_id: Option<Option<u64>>, p: &pulsewire_model::Publication) -> PublishReply {
    PublishReply {
        kind: ws_id.map(|_| "published".into()),
        id: ws_id.flatten(),
        channel: p.channel.as_str().to_owned(),
        epoch: p.epoch.to_string(),
        offset: p.offset,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody<'a> {
    channels: Vec<String>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    priority: Priority,
}

/// Refuses client publications to the channels the server itself publishes on (alert events,
/// anomalies, rolling statistics), so their subscribers can trust what arrives there.
fn server_owned(channel: &str) -> Result<(), ApiError> {
    let owned = channel == crate::alerting::ALERTS_CHANNEL
        || channel == crate::watch::ANOMALIES_CHANNEL
        || channel == crate::audit::AUDIT_CHANNEL
        || channel.starts_with("stats:");
    if owned {
        return Err(ApiError::new(
            ErrorCode::BadChannel,
            format!("{channel:?}: the server publishes on this channel; clients cannot"),
        ));
    }
    Ok(())
}

pub async fn broadcast(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    caller: crate::limits::Caller,
    body: Body,
) -> Result<Response, ApiError> {
    check_ready(&state)?;
    let body = read_body(&state, &caller, body).await?;
    let req: BroadcastBody<'_> = parse_body(&body)?;
    if req.channels.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "`channels` is empty"));
    }
    // All names are checked before anything is published: a bad name refuses the whole request.
    for name in &req.channels {
        pulsewire_model::ChannelName::parse(name)
            .map_err(|e| ApiError::new(ErrorCode::BadChannel, format!("{name:?}: {e}")))?;
        server_owned(name)?;
    }
    let data = Bytes::copy_from_slice(req.data.get().as_bytes());
    let mut results = Vec::with_capacity(req.channels.len());
    for name in &req.channels {
        let p = state.hub().publish(&tenant, name, data.clone(), req.priority).await?;
        results.push(publish_reply(None, &p));
    }
    Ok(Json(serde_json::json!({ "results": results })).into_response())
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    channel: String,
    limit: Option<usize>,
    since_epoch: Option<String>,
    since_offset: Option<u64>,
}

pub async fn history(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    extensions: axum::http::Extensions,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    // The audit channel's history is an admin's only, as its subscription is.
    let principal = extensions.get::<crate::auth::Principal>();
    let remote = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    if state.keys().is_some()
        && crate::audit::reaches_audit(&q.channel)
        && !principal.is_some_and(|p| p.scopes.contains(&crate::auth::Scope::Admin))
    {
        let message = format!(
            "{:?}: the audit channel needs an API key with the `admin` scope",
            q.channel
        );
        let actor = match principal {
            Some(p) => crate::audit::Actor::key(p, remote),
            None => crate::audit::Actor::anonymous(tenant.clone(), remote),
        };
        state.audit_record(
            crate::audit::event::PERMISSION_DENIED,
            crate::audit::outcome::REFUSED,
            &actor,
            serde_json::json!({ "method": "GET", "path": "/api/v1/history", "status": 403, "reason": message }),
        );
        return Err(ApiError::new(ErrorCode::Forbidden, message));
    }
    let since = match (q.since_epoch, q.since_offset) {
        (Some(epoch), Some(offset)) => Some(Position {
            epoch: epoch.into(),
            offset,
        }),
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "give both since_epoch and since_offset, or neither",
            ));
        }
    };
    channel_rule(&state, &extensions, crate::permissions::Action::History, &q.channel)?;
    let frame = history_frame(state.hub(), &tenant, None, &q.channel, since.as_ref(), q.limit).await?;
    Ok(json_response(frame))
}

/// Liveness, in the shape InfluxDB 2.x clients read from `/health` (they check `status`).
pub async fn health() -> Response {
    Json(serde_json::json!({
        "name": "pulsewire",
        "message": "ready for queries and writes",
        "status": "pass",
        "version": env!("CARGO_PKG_VERSION"),
        "checks": [],
    }))
    .into_response()
}

/// `GET|HEAD /ping`, which InfluxDB client libraries call before writing: 204 with the version
/// header they read.
pub async fn ping() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let version = header::HeaderValue::from_static(concat!("pulsewire-", env!("CARGO_PKG_VERSION")));
    resp.headers_mut().insert("x-influxdb-version", version.clone());
    resp.headers_mut()
        .insert("x-influxdb-build", header::HeaderValue::from_static("OSS"));
    resp
}

pub async fn ready(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "shutting_down"})),
        )
            .into_response()
    } else if state.exposure() == crate::auth::Exposure::Insecure {
        // Still 200, so health checks pass; the warning is for whoever looks.
        Json(serde_json::json!({
            "status": "ready",
            "warning": "serving without authentication on a non-loopback address (--insecure)"
        }))
        .into_response()
    } else {
        Json(serde_json::json!({"status": "ready"})).into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, state.registry())
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

pub async fn stats(State(state): State<AppState>) -> Response {
    use pulsewire_hub::{Transport, metrics_labels};
    let m = state.metrics();
    let conns = |t: Transport| m.connections.get_or_create(&metrics_labels(t)).get();
    let ws = conns(Transport::WebSocket);
    let sse = conns(Transport::Sse);
    let rates = state.rates();
    let (history_channels, history_kept) = state.hub().broker().history_stats();
    Json(serde_json::json!({
        "connections": { "websocket": ws, "sse": sse, "total": ws + sse },
        "channels": state.hub().channel_count(),
        "history": { "channels": history_channels, "publications": history_kept },
        "subscriptions": m.subscriptions.get(),
        "publications": m.publications.get(),
        "delivered": m.delivered.get(),
        "dropped": m.dropped_counts().into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect::<serde_json::Map<_, _>>(),
        "slow_consumer_closes": m.slow_consumer_closes.get(),
        "heartbeat_timeouts": m.heartbeat_timeouts.get(),
        "queued": m.queued.get(),
        "messages_in_per_sec": rates.in_per_sec,
        "messages_out_per_sec": rates.out_per_sec,
        "tsdb": state.store().stats(),
        "analysis": state.watch().stats(),
        "stats_ticks_computed": state.stats_counters().ticks_computed.get(),
        "stats_publications": state.stats_counters().publications.get(),
    }))
    .into_response()
}

/// `GET /api/v1/channels`: the channels of the key's tenant (an `admin` key administers its own
/// tenant only).
pub async fn channels(State(state): State<AppState>, crate::auth::Tenant(tenant): crate::auth::Tenant) -> Response {
    let mut list = state.hub().channels();
    list.retain(|c| c.tenant == tenant.as_str());
    Json(serde_json::json!({ "channels": list })).into_response()
}

/// `GET /api/v1/clients`: the connections of the key's tenant.
pub async fn clients(State(state): State<AppState>, crate::auth::Tenant(tenant): crate::auth::Tenant) -> Response {
    let list: Vec<serde_json::Value> = state
        .hub()
        .clients()
        .iter()
        .filter(|c| c.tenant == tenant)
        .map(|c| {
            let (depth, bytes) = c.queue_depth();
            serde_json::json!({
                "id": c.id,
                "tenant": c.tenant.as_str(),
                "transport": c.transport.as_str(),
                "remote_addr": c.remote.map(|a| a.to_string()),
                "subscriptions": c.subscriptions(),
                "queue_depth": depth,
                "queue_bytes": bytes,
                "delivered": c.delivered(),
                "dropped": c.dropped(),
                "connected_since": c.connected_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            })
        })
        .collect();
    Json(serde_json::json!({ "clients": list })).into_response()
}

/// `DELETE /api/v1/clients/{id}`: drops one connection of the caller's tenant. A WebSocket is
/// closed with 4012 (disconnected, reconnect), an SSE stream ends with a `close` event carrying
/// the same code; what is still queued for it is discarded, not flushed, since the client
/// recovers it by resubscribing from its last positions. Another tenant's client is answered
/// as one that does not exist.
pub async fn disconnect_client(
    State(state): State<AppState>,
    crate::auth::Tenant(tenant): crate::auth::Tenant,
    Path(id): Path<String>,
) -> Response {
    let Ok(n) = id.parse::<u64>() else {
        return ApiError::new(
            ErrorCode::BadRequest,
            format!("{id:?} is not a client id (a number, as GET /api/v1/clients lists them)"),
        )
        .into_response();
    };
    match state.hub().client(n).filter(|c| c.tenant == tenant) {
        Some(client) => {
            tracing::info!(
                client = n,
                tenant = tenant.as_str(),
                "disconnecting a client on request"
            );
            client.close(pulsewire_hub::CloseReason::Disconnected);
            StatusCode::NO_CONTENT.into_response()
        }
        None => ApiError::new(ErrorCode::NotFound, format!("no connected client {n}")).into_response(),
    }
}
