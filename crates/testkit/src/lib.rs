//! Test support: a real Pulsewire server on a loopback port 0, and thin real clients for it
//! (tokio-tungstenite for WebSocket, reqwest plus the eventsource-stream parser for SSE, reqwest
//! for HTTP). Nothing here stands in for the server; every call crosses a real socket.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt as _, Stream, StreamExt as _};
use pulsewire_server::{Config, Server};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should arrive promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// A config for tests: port 0 on loopback, a throwaway data directory, the host collector off
/// (its series would show up in every test's listings; its own test turns it on), and
/// retention of a century for every tier: the wire-format tests write fixed timestamps (from
/// 2026-11-25) and must pass on whatever day they run, where the default 7 days of raw
/// retention would refuse their points a week later. Retention itself is tested in the store
/// with a fixed clock.
pub fn test_config() -> Config {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: std::env::temp_dir().join(format!("pulsewire-test-{}-{}", std::process::id(), unique())),
        ..Config::default()
    };
    config.collector.enabled = false;
    let retention = &mut config.tsdb.retention;
    retention.raw = CENTURY;
    retention.rollup_1m = CENTURY;
    retention.rollup_5m = CENTURY;
    retention.rollup_1h = CENTURY;
    config
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub server: Server,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let server = Server::start(config).await.expect("server starts");
        TestServer {
            server,
            http: reqwest::Client::new(),
        }
    }

    pub async fn start_default() -> TestServer {
        Self::start(test_config()).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect(self.addr()).await
    }

    /// Opens a WebSocket to `/ws` plus `query` (e.g. `?token=...`) with an optional
    /// `Authorization` header; a refused upgrade gives its HTTP status and JSON body.
    pub async fn ws_with(&self, query: &str, authorization: Option<&str>) -> Result<Ws, (u16, Value)> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = format!("ws://{}/ws{query}", self.addr())
            .into_client_request()
            .expect("request");
        if let Some(a) = authorization {
            req.headers_mut()
                .insert("authorization", a.parse().expect("header value"));
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((inner, _)) => Ok(Ws { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(e) => panic!("websocket connect: {e}"),
        }
    }

    /// Opens an SSE stream with an optional `Authorization` header; a refusal gives its HTTP
    /// status and JSON body.
    pub async fn sse_with(
        &self,
        query: &str,
        authorization: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Sse, (u16, Value)> {
        let mut req = self.http.get(self.url(&format!("/sse?{query}")));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("sse request sent");
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.json().await.unwrap_or(Value::Null);
            return Err((status, body));
        }
        let stream = eventsource_stream::EventStream::new(resp.bytes_stream());
        Ok(Sse {
            stream: Box::pin(stream),
        })
    }

    /// Publishes over HTTP and returns (status, body).
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Publishes `data` to `channel` and returns the assigned offset.
    pub async fn publish(&self, channel: &str, data: Value) -> u64 {
        self.publish_reply(channel, data).await["offset"]
            .as_u64()
            .expect("offset in publish reply")
    }

    /// Publishes `data` to `channel` and returns the epoch it was given.
    pub async fn publish_position(&self, channel: &str, data: Value) -> String {
        let reply = self.publish_reply(channel, data).await;
        reply["epoch"].as_str().expect("epoch in publish reply").to_owned()
    }

    async fn publish_reply(&self, channel: &str, data: Value) -> Value {
        let body = serde_json::json!({"channel": channel, "data": data}).to_string();
        let (status, reply) = self.post("/api/v1/publish", &body).await;
        assert_eq!(status, 200, "publish failed: {reply}");
        reply
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.http.get(self.url(path)).send().await.expect("request sent");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("json body")
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.expect("request sent");
        (resp.status().as_u16(), resp.text().await.expect("body read"))
    }

    /// Waits until `f` holds for `/api/v1/stats`, or fails with the last stats seen.
    pub async fn wait_stats(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = self.get_json("/api/v1/stats").await;
            if f(&stats) {
                return stats;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; stats: {stats}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens an SSE stream; `query` is everything after `/sse?`.
    pub async fn sse(&self, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = self.http.get(self.url(&format!("/sse?{query}")));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("sse request sent");
        assert_eq!(resp.status().as_u16(), 200, "sse status");
        let stream = eventsource_stream::EventStream::new(resp.bytes_stream());
        Sse {
            stream: Box::pin(stream),
        }
    }
}

/// A WebSocket client speaking Pulsewire's JSON protocol.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a WebSocket read produced.
#[derive(Debug)]
pub enum WsEvent {
    Frame(Value),
    Closed(Option<(u16, String)>),
}

impl Ws {
    pub async fn connect(addr: SocketAddr) -> Ws {
        let (inner, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("ws connects");
        Ws { inner }
    }

    pub async fn send(&mut self, v: Value) {
        self.inner.send(Message::text(v.to_string())).await.expect("ws send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.inner.send(m).await.expect("ws send");
    }

    /// The next JSON frame or the close, skipping pings.
    pub async fn next_event(&mut self) -> anyhow::Result<WsEvent> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .context("timed out waiting for a frame")?;
            match msg {
                None => return Ok(WsEvent::Closed(None)),
                Some(Err(e)) => return Err(anyhow!("ws error: {e}")),
                Some(Ok(Message::Text(t))) => return Ok(WsEvent::Frame(serde_json::from_str(t.as_str())?)),
                Some(Ok(Message::Close(frame))) => {
                    return Ok(WsEvent::Closed(
                        frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string())),
                    ));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next JSON frame; fails on close.
    pub async fn recv(&mut self) -> Value {
        match self.next_event().await {
            Ok(WsEvent::Frame(v)) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads until the connection closes, returning the frames seen and the close code.
    pub async fn recv_until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            match self.next_event().await {
                Ok(WsEvent::Frame(v)) => frames.push(v),
                Ok(WsEvent::Closed(c)) => return (frames, c.map(|c| c.0)),
                Err(e) => {
                    eprintln!("connection ended without a close frame: {e}");
                    return (frames, None);
                }
            }
        }
    }

    /// Sends a command and waits for the frame answering its `id`, keeping other frames aside.
    pub async fn request(&mut self, v: Value, aside: &mut Vec<Value>) -> Value {
        let id = v["id"].clone();
        self.send(v).await;
        loop {
            let f = self.recv().await;
            if f["id"] == id && f["type"] != "message" {
                return f;
            }
            aside.push(f);
        }
    }

    /// Subscribes and returns the `subscribed` reply (panics on an error reply).
    pub async fn subscribe(&mut self, id: u64, channels: &[&str]) -> Value {
        let mut aside = Vec::new();
        let reply = self
            .request(
                serde_json::json!({"type":"subscribe","id":id,"channels":channels}),
                &mut aside,
            )
            .await;
        assert_eq!(reply["type"], "subscribed", "subscribe reply: {reply}");
        assert!(aside.is_empty(), "frames before the reply: {aside:?}");
        reply
    }

    /// Receives `n` message frames, failing on anything else.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let f = self.recv().await;
            assert_eq!(f["type"], "message", "expected a message, got {f}");
            out.push(f);
        }
        out
    }

    /// Asserts nothing but pings arrives for `d` (reading answers the pings).
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

/// One SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

pub struct Sse {
    #[allow(clippy::type_complexity)]
    stream: Pin<
        Box<
            dyn Stream<Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>>
                + Send,
        >,
    >,
}

impl Sse {
    /// An SSE stream over a response already received (any client, e.g. one speaking HTTPS).
    pub fn from_response(resp: reqwest::Response) -> Sse {
        Sse {
            stream: Box::pin(eventsource_stream::EventStream::new(resp.bytes_stream())),
        }
    }

    pub async fn next_event(&mut self) -> anyhow::Result<SseEvent> {
        let ev = tokio::time::timeout(WAIT, self.stream.next())
            .await
            .context("timed out waiting for an SSE event")?
            .ok_or_else(|| anyhow!("SSE stream ended"))??;
        let data = serde_json::from_str(&ev.data).with_context(|| format!("SSE data {:?}", ev.data))?;
        Ok(SseEvent {
            id: ev.id,
            event: ev.event,
            data,
        })
    }

    pub async fn recv(&mut self) -> SseEvent {
        self.next_event().await.expect("an SSE event")
    }

    /// Receives `n` message events.
    pub async fn messages(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let ev = self.recv().await;
            if ev.event != "message" {
                panic!("expected a message event, got {ev:?}");
            }
            out.push(ev);
        }
        out
    }

    /// Expects the stream to end (after any events), returning the events seen.
    pub async fn until_end(&mut self) -> anyhow::Result<Vec<SseEvent>> {
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.stream.next()).await {
                Err(_) => bail!("SSE stream did not end; saw {out:?}"),
                Ok(None) => return Ok(out),
                Ok(Some(Err(e))) => bail!("SSE error {e}; saw {out:?}"),
                Ok(Some(Ok(ev))) => out.push(SseEvent {
                    id: ev.id,
                    event: ev.event,
                    data: serde_json::from_str(&ev.data)?,
                }),
            }
        }
    }
}
