//! Limits over real sockets: each limit tripped with its exact status, code, `Retry-After` or
//! close code and its counter in `/metrics`, another client served afterwards; the keyed
//! limiters bounded under a flood of distinct addresses; browser origin checks; CORS preflight.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::SinkExt as _;
use pulsewire_server::Config;
use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, WAIT, Ws, test_config};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// `pulsewire_limit_refusals_total{limit="<limit>"}` as `/metrics` shows it now.
async fn refusals(s: &TestServer, limit: &str) -> u64 {
    let (status, text) = s.get_text("/metrics").await;
    assert_eq!(status, 200);
    let prefix = format!("pulsewire_limit_refusals_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .trim()
        .parse()
        .expect("a count")
}

/// A WebSocket handshake with extra headers: the connection, or the refusal's status,
/// `Retry-After` and JSON body.
async fn ws_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, (u16, Option<u64>, Value)> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            k.parse::<tokio_tungstenite::tungstenite::http::HeaderName>().unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((inner, _)) => Ok(Ws { inner }),
        Err(WsError::Http(resp)) => {
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
            let body = resp
                .body()
                .as_deref()
                .map_or(Value::Null, |b| serde_json::from_slice(b).unwrap());
            Err((resp.status().as_u16(), retry, body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn start(f: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = test_config();
    f(&mut config);
    TestServer::start(config).await
}

fn key(config: &Config, tenant: &str, scopes: &[Scope]) -> String {
    let path = auth::keys_path(&config.auth, &config.data_dir);
    auth::create_key(&path, "test", tenant, scopes.to_vec()).expect("key").1
}

/// A client that still gets answers: subscribes, publishes over HTTP, receives the message.
async fn still_served(s: &TestServer, headers: &[(&str, &str)]) {
    let mut ws = ws_with(s.addr(), headers).await.expect("another client connects");
    ws.subscribe(1, &["ok"]).await;
    ws.send(json!({"type":"ping","id":2})).await;
    assert_eq!(ws.recv().await["type"], "pong");
}

#[tokio::test]
async fn new_connections_per_user_are_rate_limited_per_key() {
    let mut config = test_config();
    config.auth.enabled = true;
    config.limits.new_connections_per_user_per_minute = 2;
    let a = key(&config, "t", &[Scope::Read]);
    let b = key(&config, "t", &[Scope::Read]);
    let s = TestServer::start(config).await;
    let auth_a = bearer(&a);
    let _c1 = ws_with(s.addr(), &[("authorization", &auth_a)]).await.expect("first");
    // SSE connections draw on the same budget.
    let resp = s
        .http
        .get(s.url("/sse?channels=x"))
        .header("authorization", &auth_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, retry, body) = ws_with(s.addr(), &[("authorization", &auth_a)])
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!((1..=60).contains(&retry.expect("Retry-After")), "{retry:?}");
    let resp = s
        .http
        .get(s.url("/sse?channels=x"))
        .header("authorization", &auth_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "rate_limited");
    assert_eq!(refusals(&s, "new_connections_per_user").await, 2);
    still_served(&s, &[("authorization", &bearer(&b))]).await;
}

#[tokio::test]
async fn new_connections_per_ip_are_rate_limited_and_other_addresses_pass() {
    let s = start(|c| {
        c.limits.exempt_loopback = false;
        c.limits.new_connections_per_ip_per_minute = 2;
        c.limits.new_connections_per_user_per_minute = 0;
    })
    .await;
    let _a = ws_with(s.addr(), &[]).await.expect("first");
    let _b = ws_with(s.addr(), &[]).await.expect("second");
    let (status, retry, body) = ws_with(s.addr(), &[]).await.err().expect("refused");
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(retry.expect("Retry-After") >= 1);
    assert_eq!(refusals(&s, "new_connections_per_ip").await, 1);
    // Another address (127.0.0.2 is loopback too) has its own budget.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let resp = other.get(s.url("/sse?channels=x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn open_connections_are_capped_per_user_and_per_tenant() {
    let mut config = test_config();
    config.auth.enabled = true;
    config.limits.max_connections_per_user = 2;
    config.limits.max_connections_per_tenant = 3;
    config.limits.new_connections_per_user_per_minute = 0;
    config.limits.new_connections_per_ip_per_minute = 0;
    let a1 = bearer(&key(&config, "t", &[Scope::Read]));
    let a2 = bearer(&key(&config, "t", &[Scope::Read]));
    let other_tenant = bearer(&key(&config, "u", &[Scope::Read]));
    let s = TestServer::start(config).await;
    let first = ws_with(s.addr(), &[("authorization", &a1)]).await.expect("1");
    let _second = ws_with(s.addr(), &[("authorization", &a1)]).await.expect("2");
    let (status, retry, body) = ws_with(s.addr(), &[("authorization", &a1)])
        .await
        .err()
        .expect("user cap");
    assert_eq!(
        (status, retry, body["code"].as_str()),
        (429, Some(5), Some("too_many_connections")),
        "{body}"
    );
    assert_eq!(refusals(&s, "connections_per_user").await, 1);
    let _third = ws_with(s.addr(), &[("authorization", &a2)])
        .await
        .expect("3 in the tenant");
    let (status, _, body) = ws_with(s.addr(), &[("authorization", &a2)])
        .await
        .err()
        .expect("tenant cap");
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_connections")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("tenant t"), "{body}");
    assert_eq!(refusals(&s, "connections_per_tenant").await, 1);
    still_served(&s, &[("authorization", &other_tenant)]).await;
    // A closed connection gives its place back once the server has seen it go.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ws_with(s.addr(), &[("authorization", &a1)]).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.0, 429);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the place was not given back: {e:?}"),
        }
    }
}

#[tokio::test]
async fn frames_over_the_rate_are_dropped_and_a_flood_is_closed() {
    let s = start(|c| {
        c.limits.messages_per_second = 5;
        c.limits.message_burst = 5;
        c.limits.flood_factor = 3;
        c.limits.flood_window = Duration::from_secs(4);
    })
    .await;
    let mut ws = s.ws().await;
    for i in 0..10 {
        ws.send(json!({"type":"ping","id":i})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..10 {
        let f = ws.recv().await;
        match f["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(f["code"], "rate_limited", "{f}");
                limited += 1;
            }
            _ => panic!("unexpected {f}"),
        }
    }
    assert_eq!((pongs, limited), (5, 5));
    assert_eq!(refusals(&s, "messages_per_connection").await, 5);
    // The connection stays open and is served again once its budget refills.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        ws.send(json!({"type":"ping","id":99})).await;
        let f = ws.recv().await;
        if f["type"] == "pong" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never served again: {f}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A flood: more than 3 x 5/s over the 4 s window closes the connection with 4029.
    for i in 0..80 {
        if ws
            .inner
            .send(Message::text(json!({"type":"ping","id":i}).to_string()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (frames, code) = ws.recv_until_close().await;
    assert_eq!(code, Some(4029));
    assert_eq!(frames.last().map(|f| f["code"].clone()), Some(json!("rate_limited")));
    assert_eq!(refusals(&s, "message_flood").await, 1);
    still_served(&s, &[]).await;
}

#[tokio::test]
async fn subscriptions_and_frame_sizes_are_counted() {
    let s = start(|c| {
        c.hub.max_subscriptions_per_client = 2;
        c.websocket.max_frame_bytes = 256;
    })
    .await;
    let mut ws = s.ws().await;
    ws.send(json!({"type":"subscribe","id":1,"channels":["a","b","c"]}))
        .await;
    let f = ws.recv().await;
    assert_eq!(f["code"], "too_many_subscriptions", "{f}");
    assert_eq!(refusals(&s, "subscriptions_per_connection").await, 1);
    // SSE: the same limit, refused before the stream starts.
    let resp = s.http.get(s.url("/sse?channels=a,b,c")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(refusals(&s, "subscriptions_per_connection").await, 2);
    ws.send_raw(Message::text("x".repeat(1000))).await;
    let (frames, code) = ws.recv_until_close().await;
    assert_eq!(code, Some(4009));
    assert_eq!(frames.last().map(|f| f["code"].clone()), Some(json!("frame_too_large")));
    assert_eq!(refusals(&s, "frame_bytes").await, 1);
    let (status, body) = s
        .post(
            "/api/v1/publish",
            &format!("{{\"channel\":\"a\",\"data\":\"{}\"}}", "x".repeat(70_000)),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (413, Some("frame_too_large")));
    assert_eq!(refusals(&s, "http_body_bytes").await, 1);
    still_served(&s, &[]).await;
}

async fn write(s: &TestServer, path: &str, auth: &str, body: String) -> (u16, Option<String>, Value) {
    let resp = s
        .http
        .post(s.url(path))
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn lines(n: usize, from: usize) -> String {
    (from..from + n)
        .map(|i| format!("cpu v={i} {}\n", 1_795_600_000 + i))
        .collect()
}

#[tokio::test]
async fn ingest_points_are_rate_limited_per_key_in_influxdb_shapes() {
    let mut config = test_config();
    config.auth.enabled = true;
    config.limits.ingest_points_per_second = 1;
    config.limits.ingest_points_burst = 10;
    let a = bearer(&key(&config, "t", &[Scope::Ingest]));
    let b = bearer(&key(&config, "t", &[Scope::Ingest]));
    let s = TestServer::start(config).await;
    // The whole burst at once, then nothing left for several seconds.
    let (status, _, body) = write(&s, "/api/v2/write?bucket=x&precision=s", &a, lines(10, 0)).await;
    assert_eq!(status, 204, "{body}");
    let (status, retry, body) = write(&s, "/api/v2/write?bucket=x&precision=s", &a, lines(8, 8)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too many requests")),
        "{body}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    let (status, retry, body) = write(&s, "/write?db=x&precision=s", &a, lines(8, 8)).await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    assert!(body["error"].as_str().unwrap().contains("ingest rate limit"), "{body}");
    let five: Vec<Value> = (0..5).map(|i| json!({"source":"h","metrics":{"cpu":i}})).collect();
    let (status, _, body) = write(&s, "/api/v1/metrics/ingest", &a, Value::from(five).to_string()).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert_eq!(refusals(&s, "ingest_points").await, 3);
    // Another key of the same tenant has its own budget.
    let (status, _, body) = write(&s, "/api/v2/write?bucket=x&precision=s", &b, lines(8, 20)).await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn the_series_quota_of_a_tenant_refuses_lines_over_it() {
    let mut config = test_config();
    config.auth.enabled = true;
    config.tsdb.limits.tenant_max_series = [("small".to_string(), 3)].into();
    let small = bearer(&key(&config, "small", &[Scope::Ingest]));
    let big = bearer(&key(&config, "big", &[Scope::Ingest]));
    let s = TestServer::start(config).await;
    let body: String = (0..5).map(|i| format!("cpu,host=h{i} v=1 1795600000\n")).collect();
    let (status, retry, resp) = write(&s, "/api/v2/write?bucket=x&precision=s", &small, body.clone()).await;
    assert_eq!(
        (status, resp["code"].as_str()),
        (429, Some("too many requests")),
        "{resp}"
    );
    assert_eq!(retry, None, "waiting does not free a quota");
    let msg = resp["message"].as_str().unwrap();
    assert!(
        msg.contains("series quota exceeded: tenant small holds 3 series, its quota is 3"),
        "{msg}"
    );
    assert!(msg.contains("dropped=2"), "{msg}");
    assert_eq!(refusals(&s, "series_per_tenant").await, 2);
    // Known series still take points; another database of the tenant shares the quota.
    let (status, _, _) = write(
        &s,
        "/api/v2/write?bucket=x&precision=s",
        &small,
        "cpu,host=h0 v=2 1795600001".into(),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) = write(
        &s,
        "/api/v2/write?bucket=y&precision=s",
        &small,
        "cpu,host=new v=2 1795600001".into(),
    )
    .await;
    assert_eq!(status, 429);
    let (status, _, resp) = write(&s, "/api/v2/write?bucket=x&precision=s", &big, body).await;
    assert_eq!(status, 204, "{resp}");
}

/// `tsdb.limits.max_tags_per_series`: a line with more tags is refused by number with the
/// reason (400 on 1.x, 422 on 2.x, as InfluxDB answers a partial write), the batch's other
/// lines are stored, and the refusal is counted.
#[tokio::test]
async fn lines_with_more_tags_than_the_limit_are_refused_and_the_rest_stored() {
    let s = start(|c| c.tsdb.limits.max_tags_per_series = 2).await;
    let body = "cpu,a=1,b=2,c=3 v=1\ncpu,a=1,b=2 v=2\n".to_string();
    let (status, resp) = s.post("/write?db=t", &body).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(
        resp["error"],
        "partial write: line 1: 3 tags exceed the limit of 2 per series dropped=1"
    );
    let (status, resp) = s.post("/api/v2/write?bucket=t2", &body).await;
    assert_eq!(
        (status, resp["code"].as_str()),
        (422, Some("unprocessable entity")),
        "{resp}"
    );
    assert_eq!(refusals(&s, "tags_per_series").await, 2);
    for db in ["t", "t2"] {
        let v = s.get_json(&format!("/api/v1/series?q=cpu&db={db}")).await;
        let series = v["series"].as_array().expect("a series list");
        assert_eq!(series.len(), 1, "{db}: {v}");
        assert_eq!(series[0]["tags"], json!({"a": "1", "b": "2"}), "{db}: {v}");
    }
}

#[tokio::test]
async fn keyed_limiters_stay_bounded_under_a_flood_of_distinct_addresses() {
    let s = start(|c| {
        c.limits.exempt_loopback = false;
        c.limits.max_tracked_keys = 20;
        c.limits.new_connections_per_ip_per_minute = 6000;
        c.limits.new_connections_per_user_per_minute = 6000;
        c.limits.prune_interval = Duration::from_millis(100);
    })
    .await;
    let limits = s.server.state().limits().clone();
    // 200 distinct loopback addresses, each opening (and at once dropping) an SSE stream.
    for i in 0..200u32 {
        let ip = IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8]);
        let client = reqwest::Client::builder().local_address(ip).build().unwrap();
        let resp = client.get(s.url("/sse?channels=x")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{ip}");
        for (name, n) in limits.tracked_keys() {
            assert!(n <= 21, "{name:?} tracks {n} keys after {i} addresses");
        }
    }
    // Pruning forgets every address whose budget is full again (one connection is back in 10 ms).
    let deadline = tokio::time::Instant::now() + WAIT;
    while limits.tracked_keys().iter().any(|(_, n)| *n > 0) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", limits.tracked_keys());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, text) = s.get_text("/metrics").await;
    assert!(
        text.contains("pulsewire_limiter_keys{limiter=\"new_connections_per_ip\"}"),
        "{text}"
    );
    still_served(&s, &[]).await;
}

#[tokio::test]
async fn browser_origins_are_checked_for_websocket_and_sse() {
    let s = TestServer::start_default().await;
    let (status, _, body) = ws_with(s.addr(), &[("origin", "https://evil.example")])
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed")),
        "{body}"
    );
    let resp = s
        .http
        .get(s.url("/sse?channels=x"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "origin_not_allowed");
    assert_eq!(refusals(&s, "origin").await, 2);
    // Loopback pages by default, and clients without Origin, pass.
    ws_with(s.addr(), &[("origin", "http://localhost:3000")])
        .await
        .expect("loopback origin");
    ws_with(s.addr(), &[]).await.expect("no origin");

    let s = start(|c| c.http.allowed_origins = vec!["https://app.example.com".into()]).await;
    ws_with(s.addr(), &[("origin", "https://app.example.com")])
        .await
        .expect("listed origin");
    let same = format!("http://{}", s.addr());
    ws_with(s.addr(), &[("origin", &same)]).await.expect("same origin");
    let (status, _, _) = ws_with(s.addr(), &[("origin", "http://localhost:3000")])
        .await
        .err()
        .expect("loopback not listed");
    assert_eq!(status, 403);
    still_served(&s, &[]).await;
}

#[tokio::test]
async fn cors_preflight_is_answered_before_authentication() {
    let mut config = test_config();
    config.auth.enabled = true;
    config.http.allowed_origins = vec!["https://app.example.com".into()];
    let k = bearer(&key(&config, "t", &[Scope::Read]));
    let s = TestServer::start(config).await;
    let preflight = |origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, s.url("/api/v1/series?q=cpu"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let resp = preflight("https://app.example.com").await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    let resp = preflight("https://evil.example").await.unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    // The request itself carries the header for an allowed origin.
    let resp = s
        .http
        .get(s.url("/api/v1/series?q=cpu"))
        .header("origin", "https://app.example.com")
        .header("authorization", &k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(
        resp.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("retry-after")
    );
}

#[tokio::test]
async fn limits_are_checked_at_start() {
    let mut config = test_config();
    config.http.allowed_origins = vec!["app.example.com".into()];
    config.limits.flood_factor = 1;
    config.tsdb.limits.active_series_window = std::time::Duration::from_secs(30);
    let problems = config.problems();
    assert!(
        problems.iter().any(|p| p.starts_with("http.allowed_origins[0]:")),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"limits.flood_factor: must be at least 2".to_string()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"tsdb.limits.active_series_window: must be between 1m and 1d".to_string()),
        "{problems:?}"
    );
}
