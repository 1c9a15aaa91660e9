//! The Server-Sent Events transport: `GET /sse?channels=a,b`.
//!
//! Each `message` event's `id:` is a resume position for every channel of the stream:
//! `v1.<fingerprint>` (8 hex digits naming the set of channels) then, for each non-pattern
//! channel in sorted name order, `.<epoch>-<offset>`. A reconnect that sends it back (the
//! `Last-Event-ID` header, or `last_event_id` in the query for a first connection) resumes each
//! channel with the same no-loss rule as WebSocket, and the `subscribed` event that opens every
//! stream says per channel whether it `recovered`.
//!
//! A peer that stops reading stalls the HTTP body, so the stream is not polled and cannot act on
//! the slow-consumer mark; its queue stays bounded (and counts drops) until the TCP user timeout
//! set on every accepted socket ends the connection.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use pulsewire_hub::{Client, CloseReason, Outbound, Transport};
use pulsewire_model::{ChannelName, Position, is_pattern};
use pulsewire_proto::{CloseCode, ErrorCode};
use serde::Deserialize;

use crate::permissions::Action;
use crate::transport::{DisconnectGuard, record_delivered};
use crate::{ApiError, AppState};

#[derive(Deserialize)]
pub struct SseQuery {
    channels: String,
    last_event_id: Option<String>,
}

/// Names a set of channels (sorted) in the resume id, so that an id is never applied to another
/// set: FNV-1a over the names, as 8 hex digits.
fn fingerprint(channels: &[ChannelName]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for c in channels {
        for b in c.as_str().bytes().chain(std::iter::once(b',')) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    format!("{h:08x}")
}

/// Encodes the resume id from the stream's positions.
fn encode_id(fingerprint: &str, positions: &[(ChannelName, Arc<str>, u64)]) -> String {
    let mut id = format!("v1.{fingerprint}");
    for (_, epoch, offset) in positions {
        let _ = write!(id, ".{epoch}-{offset}");
    }
    id
}

/// Decodes a resume id for the stream's channels (sorted). A malformed id or one for another
/// set of channels gives positions that cannot match, so every channel reports
/// `recovered: false` instead of silently starting fresh.
fn decode_id(id: &str, channels: &[ChannelName]) -> BTreeMap<String, Position> {
    let parsed: Option<Vec<Position>> = (|| {
        let mut parts = id.split('.');
        if parts.next()? != "v1" || parts.next()? != fingerprint(channels) {
            return None;
        }
        let v: Vec<Position> = parts
            .map(|p| {
                let (epoch, offset) = p.split_once('-')?;
                Some(Position {
                    epoch: epoch.into(),
                    offset: offset.parse().ok()?,
                })
            })
            .collect::<Option<_>>()?;
        (v.len() == channels.len()).then_some(v)
    })();
    let positions = parsed.unwrap_or_else(|| {
        channels
            .iter()
            .map(|_| Position {
                epoch: Arc::from(""),
                offset: 0,
            })
            .collect()
    });
    channels.iter().map(|c| c.as_str().to_owned()).zip(positions).collect()
}

pub async fn stream(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    crate::auth::Connection(identity): crate::auth::Connection,
    headers: HeaderMap,
    crate::limits::Permit(permit): crate::limits::Permit,
    Query(q): Query<SseQuery>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "server is shutting down"));
    }
    let names: Vec<String> = q
        .channels
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let actor = crate::audit::Actor::of_identity(&identity, Some(remote));
    for name in &names {
        state
            .permissions()
            .check(&identity, Action::Subscribe, name)
            .map_err(|m| {
                state.audit_record(
                    crate::audit::event::PERMISSION_DENIED,
                    crate::audit::outcome::REFUSED,
                    &actor,
                    serde_json::json!({ "transport": "sse", "command": "subscribe", "code": "forbidden", "reason": m }),
                );
                ApiError::new(ErrorCode::Forbidden, m)
            })?;
    }
    let mut channels = Vec::new();
    for name in names.iter().filter(|n| !is_pattern(n)) {
        channels.push(
            ChannelName::parse(name).map_err(|e| ApiError::new(ErrorCode::BadChannel, format!("{name:?}: {e}")))?,
        );
    }
    channels.sort();
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id);
    let since = last_id.map(|id| decode_id(&id, &channels)).unwrap_or_default();

    let client = state.hub().connect(identity.tenant(), Transport::Sse, Some(remote));
    if let Some(user) = identity.user() {
        let _ = client.user.set(Arc::from(user));
    }
    // A token's stream ends when the token expires (with the leeway): the client reconnects
    // with a new token and its last event id.
    let expires = identity.expires_at().map(|exp| {
        let leeway = state.jwt().map_or(std::time::Duration::ZERO, |v| v.leeway());
        tokio::time::Instant::now() + crate::jwt::until_unix(exp) + leeway
    });
    let guard = DisconnectGuard::new(state.hub().clone(), client.clone());
    let starts = state
        .hub()
        .subscribe(&client, None, &names, &since)
        .await
        .inspect_err(|e| {
            state
                .limits()
                .count_code(e.code, crate::limits::Limit::frame_bytes, &actor)
        })?;
    let starts: HashMap<ChannelName, Position> = starts.into_iter().collect();
    let positions: Vec<(ChannelName, Arc<str>, u64)> = channels
        .iter()
        .map(|c| {
            // Every channel of the stream was subscribed just above, so each has a start.
            let p = starts.get(c).cloned().unwrap_or(Position {
                epoch: Arc::from(""),
                offset: 0,
            });
            (c.clone(), p.epoch, p.offset)
        })
        .collect();
    let index = channels.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
    let cfg = &state.config().sse;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + cfg.heartbeat, cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = SseStream {
        state: state.clone(),
        client,
        in_flight: Vec::new(),
        _guard: guard,
        _permit: permit,
        fingerprint: fingerprint(&channels),
        positions,
        index,
        heartbeat,
        first: Some(format!("retry: {}\n\n", cfg.retry.as_millis())),
        done: false,
        expires,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        s.next_chunk().await.map(|chunk| (Ok::<Bytes, Infallible>(chunk), s))
    }));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

struct SseStream {
    state: AppState,
    client: Arc<Client>,
    /// The items of the chunk last handed to the HTTP body. They count as delivered when the
    /// body asks for the next chunk (the previous one was written), and as dropped if the
    /// stream is dropped first.
    in_flight: Vec<Outbound>,
    _guard: DisconnectGuard,
    /// The stream's place in the per-user and per-tenant connection counts.
    _permit: crate::limits::ConnectionPermit,
    fingerprint: String,
    positions: Vec<(ChannelName, Arc<str>, u64)>,
    index: HashMap<ChannelName, usize>,
    heartbeat: tokio::time::Interval,
    first: Option<String>,
    done: bool,
    /// When the connection token expires: the stream then ends with `token_expired`.
    expires: Option<tokio::time::Instant>,
}

/// The `type` of one of our JSON frames, which all begin with `{"type":"...`.
fn frame_type(frame: &[u8]) -> &str {
    frame
        .strip_prefix(b"{\"type\":\"")
        .and_then(|rest| rest.iter().position(|&b| b == b'"').map(|end| &rest[..end]))
        .and_then(|t| std::str::from_utf8(t).ok())
        .unwrap_or("message")
}

impl Drop for SseStream {
    fn drop(&mut self) {
        // The last chunk handed over may never have been written.
        self.client.abandon(&self.in_flight);
    }
}

impl SseStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let written = std::mem::take(&mut self.in_flight);
        record_delivered(&self.state, &self.client, &written);
        if let Some(first) = self.first.take() {
            return Some(Bytes::from(first));
        }
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                _ = self.client.ready() => {
                    let batch = self.client.take_batch(self.state.config().websocket.write_batch);
                    let mut out = BytesMut::new();
                    self.encode(&batch.items, &mut out);
                    self.in_flight = batch.items;
                    if let Some(reason) = batch.close {
                        if reason == CloseReason::Shutdown {
                            let rest = self.client.take_batch(usize::MAX);
                            self.encode(&rest.items, &mut out);
                            self.in_flight.extend(rest.items);
                        }
                        let code = match reason {
                            CloseReason::Shutdown => CloseCode::ShuttingDown,
                            CloseReason::SlowConsumer => CloseCode::SlowConsumer,
                            CloseReason::Disconnected => CloseCode::Disconnected,
                            CloseReason::Abort | CloseReason::HeartbeatTimeout => return None,
                        };
                        let close = format!(
                            "event: close\ndata: {{\"type\":\"close\",\"code\":{},\"reason\":\"{}\"}}\n\n",
                            code.code(),
                            code.reason()
                        );
                        out.put_slice(close.as_bytes());
                        self.done = true;
                    }
                    if !out.is_empty() {
                        return Some(out.freeze());
                    }
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": ping\n\n")),
                _ = tokio::time::sleep_until(self.expires.unwrap_or_else(tokio::time::Instant::now)), if self.expires.is_some() => {
                    self.done = true;
                    let code = CloseCode::TokenExpired;
                    let end = format!(
                        "event: error\ndata: {{\"type\":\"error\",\"code\":\"{}\",\"message\":\"the connection token expired; reconnect with a new token and Last-Event-ID\"}}\n\n\
                         event: close\ndata: {{\"type\":\"close\",\"code\":{},\"reason\":\"{}\"}}\n\n",
                        ErrorCode::TokenExpired.as_str(),
                        code.code(),
                        code.reason()
                    );
                    return Some(Bytes::from(end));
                }
            }
        }
    }

    fn encode(&mut self, items: &[Outbound], out: &mut BytesMut) {
        for item in items {
            let frame = item.frame();
            let kind = frame_type(frame);
            match item {
                Outbound::Message(m) => {
                    if let Some(&i) = self.index.get(&m.channel) {
                        self.positions[i].1 = m.epoch.clone();
                        self.positions[i].2 = m.offset;
                    }
                    out.put_slice(b"id: ");
                    out.put_slice(encode_id(&self.fingerprint, &self.positions).as_bytes());
                    out.put_u8(b'\n');
                }
                Outbound::Control(_) if kind == "subscribed" => {
                    out.put_slice(b"id: ");
                    out.put_slice(encode_id(&self.fingerprint, &self.positions).as_bytes());
                    out.put_u8(b'\n');
                }
                Outbound::Control(_) => {}
                // SSE connections are not probed; their heartbeat is the comment line.
                Outbound::Ping => continue,
            }
            out.put_slice(b"event: ");
            out.put_slice(kind.as_bytes());
            out.put_slice(b"\ndata: ");
            out.put_slice(frame);
            out.put_slice(b"\n\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_id_round_trips() {
        let a = ChannelName::parse("a").unwrap();
        let b = ChannelName::parse("b:c").unwrap();
        let fp = fingerprint(&[a.clone(), b.clone()]);
        assert_eq!(fp.len(), 8);
        assert_ne!(fp, fingerprint(&[a.clone(), ChannelName::parse("b:d").unwrap()]));
        let id = encode_id(&fp, &[(a.clone(), Arc::from("E1"), 4), (b.clone(), Arc::from("E2"), 0)]);
        assert_eq!(id, format!("v1.{fp}.E1-4.E2-0"));
        let since = decode_id(&id, &[a.clone(), b.clone()]);
        assert_eq!(
            since["a"],
            Position {
                epoch: Arc::from("E1"),
                offset: 4
            }
        );
        assert_eq!(
            since["b:c"],
            Position {
                epoch: Arc::from("E2"),
                offset: 0
            }
        );
        // Wrong channel count or set, or garbage: positions that cannot match.
        let other = fingerprint(&[a.clone(), ChannelName::parse("x").unwrap()]);
        for bad in [
            format!("v1.{fp}.E1-4"),
            "garbage".to_string(),
            format!("v2.{fp}.E1-4.E2-0"),
            format!("v1.{fp}.E1-x.E2-0"),
            format!("v1.{other}.E1-4.E2-0"),
            "v1.E1-4.E2-0".to_string(),
        ] {
            let since = decode_id(&bad, &[a.clone(), b.clone()]);
            assert_eq!(since["a"].epoch.as_ref(), "", "{bad}");
        }
    }

    #[test]
    fn frame_types() {
        assert_eq!(frame_type(br#"{"type":"subscribed","id":1}"#), "subscribed");
        assert_eq!(frame_type(br#"{"type":"error"}"#), "error");
    }
}
