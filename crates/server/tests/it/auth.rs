//! API-key authentication over real HTTP: every accepted way of presenting a key, the 401 and
//! 403 answers in each endpoint's own error shape, revocation and new keys taking effect while
//! the server runs, tenant isolation of writes and queries, and the refusal to serve
//! unauthenticated on a non-loopback address.

use std::path::Path;
use std::time::Instant;

use pulsewire_server::Server;
use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, WAIT, test_config};
use serde_json::Value;

fn keys_file(s: &TestServer) -> std::path::PathBuf {
    let config = s.server.state().config();
    auth::keys_path(&config.auth, &config.data_dir)
}

fn create(path: &Path, tenant: &str, scopes: &[Scope]) -> (String, String) {
    let (record, key) = auth::create_key(path, "test", tenant, scopes.to_vec()).expect("key created");
    (record.id, key)
}

/// A server with auth enabled and a key per role: (server, ingest+read key of tenant a).
async fn start_with_auth() -> (TestServer, String) {
    let mut config = test_config();
    config.auth.enabled = true;
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (_, key) = create(&path, "a", &[Scope::Ingest, Scope::Read]);
    (TestServer::start(config).await, key)
}

async fn send(s: &TestServer, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = s.http.request(method, s.url(path)).body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn every_accepted_form_of_the_key_authenticates_a_write() {
    use base64::Engine as _;
    let (s, key) = start_with_auth().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{key}"))
    );
    let token = format!("Token {key}");
    let forms: [(&str, Option<&str>); 4] = [
        ("/write?db=t&precision=s", Some(&bearer(&key))),
        ("/write?db=t&precision=s", Some(&token)),
        ("/write?db=t&precision=s", Some(&basic)),
        (&format!("/write?db=t&precision=s&u=telegraf&p={key}"), None),
    ];
    for (i, (path, header)) in forms.iter().enumerate() {
        let (status, body) = send(&s, "POST", path, *header, &format!("cpu v={i} {}", 1_795_600_000 + i)).await;
        assert_eq!(status, 204, "form {i}: {body}");
    }
    let (status, body) = send(
        &s,
        "POST",
        "/api/v2/write?bucket=t&precision=s",
        Some(&token),
        "cpu v=9 1795600009",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = send(
        &s,
        "POST",
        "/api/v1/metrics/ingest",
        Some(&bearer(&key)),
        r#"{"source":"h","timestamp":1795600010000,"metrics":{"load":1}}"#,
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &Value::from(1)), "{body}");
    let (status, body) = send(
        &s,
        "GET",
        "/api/v1/query?q=cpu.v&from=0&to=now%2B1d",
        Some(&bearer(&key)),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let points: usize = body["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| s["points"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(points, 5, "{body}");
}

#[tokio::test]
async fn missing_unknown_and_revoked_keys_get_401_in_each_endpoints_shape() {
    let (s, key) = start_with_auth().await;
    let line = "cpu v=1 1795600000";
    // InfluxDB 1.x shape on /write, `{code, message}` on 2.x and on the rest of the API.
    for credentials in [None, Some("Bearer pw_unknown"), Some("Basic !!")] {
        let (status, body) = send(&s, "POST", "/write?db=t&precision=s", credentials, line).await;
        assert_eq!(status, 401, "{credentials:?}: {body}");
        assert!(body["error"].is_string() && body.get("code").is_none(), "{body}");
        for (method, path) in [
            ("POST", "/api/v2/write?bucket=t&precision=s"),
            ("POST", "/api/v1/metrics/ingest"),
            ("GET", "/api/v1/query?q=cpu.v"),
            ("GET", "/api/v1/series?q=cpu"),
            ("GET", "/api/v1/metrics/statistics?q=cpu"),
            ("POST", "/api/v1/publish"),
            ("GET", "/api/v1/clients"),
        ] {
            let (status, body) = send(&s, method, path, credentials, line).await;
            assert_eq!(status, 401, "{credentials:?} {path}: {body}");
            assert_eq!(body["code"], "unauthorized", "{path}: {body}");
            assert!(body["message"].is_string(), "{path}: {body}");
        }
    }
    // The open endpoints stay open.
    for path in ["/health", "/ping", "/ready", "/metrics"] {
        let (status, body) = send(&s, "GET", path, None, "").await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
    }
    // The server keeps serving a good key after the refusals.
    let (status, body) = send(&s, "POST", "/write?db=t&precision=s", Some(&bearer(&key)), line).await;
    assert_eq!(status, 204, "{body}");

    // Revoked while the server runs: refused within about a second.
    let path = keys_file(&s);
    let id = auth::read_keys(&path).expect("keys")[0].id.clone();
    assert!(auth::revoke_key(&path, &id).expect("revoked"));
    let start = Instant::now();
    loop {
        let (status, body) = send(&s, "POST", "/write?db=t&precision=s", Some(&bearer(&key)), line).await;
        if status == 401 {
            assert_eq!(body["error"], "the API key has been revoked", "{body}");
            break;
        }
        assert_eq!(status, 204, "{body}");
        assert!(start.elapsed() < WAIT, "the revoked key still works");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, body) = send(
        &s,
        "POST",
        "/api/v2/write?bucket=t&precision=s",
        Some(&bearer(&key)),
        line,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
}

#[tokio::test]
async fn a_key_without_the_needed_scope_gets_403_naming_it() {
    let (s, ingest_read) = start_with_auth().await;
    let path = keys_file(&s);
    // Created while the server runs: usable within about a second.
    let (_, read_only) = create(&path, "a", &[Scope::Read]);
    let (_, admin) = create(&path, "a", &[Scope::Admin]);
    let start = Instant::now();
    while send(&s, "GET", "/api/v1/series?q=cpu", Some(&bearer(&read_only)), "")
        .await
        .0
        != 200
    {
        assert!(start.elapsed() < WAIT, "a key created while running is not accepted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let publish = r#"{"channel":"news","data":{"x":1}}"#;
    let cases = [
        (&read_only, "POST", "/write?db=t&precision=s", "ingest", None),
        (
            &read_only,
            "POST",
            "/api/v2/write?bucket=t&precision=s",
            "ingest",
            Some("forbidden"),
        ),
        (&read_only, "POST", "/api/v1/publish", "publish", Some("forbidden")),
        (&ingest_read, "GET", "/api/v1/clients", "admin", Some("forbidden")),
        (&ingest_read, "POST", "/api/v1/broadcast", "admin", Some("forbidden")),
        (
            &ingest_read,
            "POST",
            "/api/v1/admin/checkpoint",
            "admin",
            Some("forbidden"),
        ),
        (&admin, "GET", "/api/v1/query?q=cpu.v", "read", Some("forbidden")),
    ];
    for (key, method, p, scope, code) in cases {
        let (status, body) = send(&s, method, p, Some(&bearer(key)), publish).await;
        assert_eq!(status, 403, "{p}: {body}");
        let message = match code {
            None => body["error"].as_str(),
            Some(c) => {
                assert_eq!(body["code"], c, "{p}: {body}");
                body["message"].as_str()
            }
        };
        assert!(
            message.is_some_and(|m| m.contains(&format!("`{scope}`"))),
            "{p}: {body}"
        );
    }
    let (status, body) = send(&s, "GET", "/api/v1/clients", Some(&bearer(&admin)), "").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_tenants_data_is_visible_only_with_its_own_keys() {
    let (s, key_a) = start_with_auth().await;
    let (_, key_b) = create(&keys_file(&s), "b", &[Scope::Ingest, Scope::Read]);
    let start = Instant::now();
    while send(&s, "GET", "/api/v1/series?q=x", Some(&bearer(&key_b)), "").await.0 != 200 {
        assert!(start.elapsed() < WAIT, "tenant b's key is not accepted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, body) = send(
        &s,
        "POST",
        "/write?db=t&precision=s",
        Some(&bearer(&key_a)),
        "secret,host=h1 v=42 1795600000",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let query = "/api/v1/query?q=secret.v&from=0&to=now%2B1d";
    let (status, seen_by_a) = send(&s, "GET", query, Some(&bearer(&key_a)), "").await;
    assert_eq!(status, 200, "{seen_by_a}");
    assert_eq!(seen_by_a["series"].as_array().map(Vec::len), Some(1), "{seen_by_a}");
    assert_eq!(seen_by_a["series"][0]["points"][0][1], 42.0, "{seen_by_a}");
    let (status, seen_by_b) = send(&s, "GET", query, Some(&bearer(&key_b)), "").await;
    assert_eq!(status, 200, "{seen_by_b}");
    assert_eq!(seen_by_b["series"].as_array().map(Vec::len), Some(0), "{seen_by_b}");
    for (key, want) in [(&key_a, 1), (&key_b, 0)] {
        let (status, body) = send(&s, "GET", "/api/v1/series?q=secret", Some(&bearer(key)), "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["series"].as_array().map(Vec::len), Some(want), "{body}");
    }
    // Tenant b writing the same series name gets its own series, not a's.
    let (status, body) = send(
        &s,
        "POST",
        "/write?db=t&precision=s",
        Some(&bearer(&key_b)),
        "secret,host=h1 v=7 1795600000",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (_, seen_by_a) = send(&s, "GET", query, Some(&bearer(&key_a)), "").await;
    assert_eq!(seen_by_a["series"][0]["points"][0][1], 42.0, "{seen_by_a}");
}

#[tokio::test]
async fn unauthenticated_non_loopback_serving_needs_insecure() {
    let mut config = test_config();
    config.listen = "0.0.0.0:0".parse().expect("address");
    let err = match Server::start(config.clone()).await {
        Ok(_) => panic!("started without authentication on 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("refusing to serve without authentication"), "{err}");
    assert!(!config.data_dir.exists(), "a refused start left a data directory");

    config.auth.insecure = true;
    let s = TestServer::start(config).await;
    let ready = s.get_json("/ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        ready["warning"]
            .as_str()
            .is_some_and(|w| w.contains("without authentication")),
        "{ready}"
    );
    // Loopback without auth: no warning, as before.
    let plain = TestServer::start_default().await;
    let ready = plain.get_json("/ready").await;
    assert!(ready.get("warning").is_none(), "{ready}");
}

/// Opens a WebSocket to `path` (with its query), returning the stream or the HTTP status of the
/// refused upgrade.
async fn ws_at(
    s: &TestServer,
    query: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, u16> {
    match tokio_tungstenite::connect_async(format!("ws://{}/ws{query}", s.addr())).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect: {e}"),
    }
}

async fn ws_request(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    frame: Value,
) -> Value {
    use futures_util::{SinkExt as _, StreamExt as _};
    ws.send(tokio_tungstenite::tungstenite::Message::text(frame.to_string()))
        .await
        .expect("frame sent");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a reply in time")
            .expect("connection open")
            .expect("frame read");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("JSON frame");
        }
    }
}

#[tokio::test]
async fn websocket_and_sse_need_a_key_and_act_for_its_tenant() {
    let mut config = test_config();
    config.auth.enabled = true;
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (_, read_key) = create(&path, "a", &[Scope::Read]);
    let (_, publish_b) = create(&path, "b", &[Scope::Read, Scope::Publish]);
    let s = TestServer::start(config).await;
    // An unknown key: the upgrade is refused. No key at all: the upgrade is accepted, since a
    // first `connect` frame may still authenticate, but any other first frame is refused and
    // the connection closed with 4001.
    assert_eq!(ws_at(&s, "?access_token=pw_nope").await.err(), Some(401));
    let mut anonymous = s.ws().await;
    anonymous
        .send(serde_json::json!({"type":"subscribe","id":1,"channels":["news"]}))
        .await;
    let (frames, code) = anonymous.recv_until_close().await;
    assert_eq!(code, Some(4001), "{frames:?}");
    assert_eq!(frames[0]["code"], "unauthorized", "{frames:?}");
    let (status, _) = send(&s, "GET", "/sse?channels=news", None, "").await;
    assert_eq!(status, 401);
    // A read-only key subscribes but cannot publish.
    let mut a = ws_at(&s, &format!("?access_token={read_key}"))
        .await
        .expect("connected");
    let reply = ws_request(
        &mut a,
        serde_json::json!({"type":"subscribe","id":1,"channels":["news"]}),
    )
    .await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let reply = ws_request(
        &mut a,
        serde_json::json!({"type":"publish","id":2,"channel":"news","data":{"x":1}}),
    )
    .await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{reply}"
    );
    // Tenant b's publication on `news` is b's channel: a's subscriber gets nothing, b's does.
    let mut b = ws_at(&s, &format!("?access_token={publish_b}"))
        .await
        .expect("connected");
    let reply = ws_request(
        &mut b,
        serde_json::json!({"type":"subscribe","id":1,"channels":["news"]}),
    )
    .await;
    assert_eq!(reply["type"], "subscribed");
    let (status, body) = send(
        &s,
        "POST",
        "/api/v1/publish",
        Some(&bearer(&publish_b)),
        r#"{"channel":"news","data":{"from":"b"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = ws_request(&mut b, serde_json::json!({"type":"ping","id":3})).await;
    assert_eq!(got["data"]["from"], "b", "{got}");
    {
        use futures_util::StreamExt as _;
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), a.next()).await;
        assert!(
            nothing.is_err(),
            "tenant a received tenant b's publication: {nothing:?}"
        );
    }
    // The history of `news` is per tenant too.
    let (status, body) = send(&s, "GET", "/api/v1/history?channel=news", Some(&bearer(&read_key)), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["publications"].as_array().map(Vec::len), Some(0), "{body}");
}

/// Node-wide operations (snapshots hold every tenant's data; node statistics count every
/// tenant) belong to the operator tenant's admin keys; another tenant's admin key gets 403,
/// and a read key 403 on the node statistics.
#[tokio::test]
async fn node_wide_endpoints_need_an_admin_key_of_the_operator_tenant() {
    let mut config = test_config();
    config.auth.enabled = true;
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (_, tenant_admin) = create(&path, "a", &[Scope::Admin, Scope::Read]);
    let (_, operator) = create(&path, "default", &[Scope::Admin]);
    let s = TestServer::start(config).await;
    for (method, endpoint) in [
        ("POST", "/api/v1/admin/snapshots"),
        ("POST", "/api/v1/admin/checkpoint"),
        ("POST", "/api/v1/admin/compact"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/notify/stats"),
    ] {
        let (status, body) = send(&s, method, endpoint, Some(&bearer(&tenant_admin)), "").await;
        assert_eq!(status, 403, "{endpoint}: {body}");
        assert_eq!(body["code"], "forbidden", "{endpoint}: {body}");
        assert!(body["message"].as_str().unwrap().contains("operator tenant"), "{body}");
    }
    // The tenant's admin key still administers its own tenant.
    assert_eq!(
        send(&s, "GET", "/api/v1/clients", Some(&bearer(&tenant_admin)), "")
            .await
            .0,
        200
    );
    for (method, endpoint) in [("POST", "/api/v1/admin/checkpoint"), ("GET", "/api/v1/stats")] {
        let (status, body) = send(&s, method, endpoint, Some(&bearer(&operator)), "").await;
        assert_eq!(status, 200, "{endpoint}: {body}");
    }
}

/// Without authentication the node serves loopback only, and only to requests that name a
/// loopback host: a page whose name was rebound to 127.0.0.1 sends its own name and is refused.
#[tokio::test]
async fn an_open_node_refuses_requests_naming_another_host() {
    let s = TestServer::start(test_config()).await;
    let get = |host: &'static str| s.http.get(s.url("/api/v1/series?q=cpu")).header("host", host).send();
    let resp = get("evil.example:8080").await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    for ok in ["localhost:8080", "127.0.0.1", "[::1]:80", "app.localhost"] {
        assert_eq!(get(ok).await.unwrap().status(), 200, "{ok}");
    }
}
