//! The audit log over real HTTP, WebSocket and SSE clients: each kind of event leaves a record
//! with its fields in the file, the file rotates at its size limit, the admin-only `audit`
//! channel delivers records live to an admin and refuses everyone else, `GET /api/v1/audit`
//! reads records back, and the server goes on serving throughout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use pulsewire_server::Config;
use pulsewire_server::audit::{self, Record};
use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, WAIT, test_config};
use serde_json::{Value, json};

const SECRET: &str = "audit-test-secret-of-at-least-32-bytes!";

fn audit_file(config: &Config) -> PathBuf {
    audit::audit_path(&config.audit, &config.data_dir)
}

fn key(config: &Config, name: &str, tenant: &str, scopes: &[Scope]) -> (String, String) {
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (rec, key) = auth::create_key(&path, name, tenant, scopes.to_vec()).expect("key");
    (rec.id, key)
}

fn records(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record ({e}): {l}")))
        .collect()
}

/// Waits until a record matching `f` is in the file, and returns it.
async fn wait_record(path: &Path, what: &str, f: impl Fn(&Record) -> bool) -> Record {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = records(path).into_iter().find(|r| f(r)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} record; the file has:\n{}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn bearer(k: &str) -> String {
    format!("Bearer {k}")
}

async fn get(s: &TestServer, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = s.http.get(s.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_shape(r: &Record) {
    assert_eq!(r.ts.len(), 24, "RFC 3339 with milliseconds: {r:?}");
    assert!(r.ts.ends_with('Z'), "{r:?}");
    assert!(
        time::OffsetDateTime::parse(&r.ts, &time::format_description::well_known::Rfc3339).is_ok(),
        "{r:?}"
    );
}

fn auth_config() -> Config {
    let mut c = test_config();
    c.auth.enabled = true;
    c.auth.jwt.hmac_secret = SECRET.into();
    c.websocket.connect_timeout = Duration::from_millis(500);
    c
}

fn token(sub: &str, tenant: &str, roles: &[&str], secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "tenant": tenant, "exp": exp, "roles": roles}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signed")
}

#[tokio::test]
async fn authentication_failures_refusals_and_admin_actions_are_recorded() {
    let config = auth_config();
    let file = audit_file(&config);
    let (admin_id, admin) = key(&config, "ops", "a", &[Scope::Read, Scope::Admin]);
    let (reader_id, reader) = key(&config, "dash", "a", &[Scope::Read]);
    let (revoked_id, revoked) = key(&config, "old", "a", &[Scope::Read]);
    let keys_path = auth::keys_path(&config.auth, &config.data_dir);
    auth::revoke_key(&keys_path, &revoked_id).expect("revoked");
    let s = TestServer::start(config).await;

    // Server start.
    let r = wait_record(&file, "server.start", |r| r.event == "server.start").await;
    assert_eq!((r.outcome.as_str(), r.who.as_str()), ("ok", "server"));
    assert_eq!(r.detail["listen"], s.addr().to_string());

    // 401 without a key, with an unknown key, with a revoked key.
    assert_eq!(get(&s, "/api/v1/query?q=x", None).await.0, 401);
    assert_eq!(get(&s, "/api/v1/series", Some("pw_nope")).await.0, 401);
    assert_eq!(get(&s, "/api/v1/stats", Some(&revoked)).await.0, 401);
    let r = wait_record(&file, "401 without key", |r| {
        r.event == "auth.failure" && r.detail["reason"] == "no API key"
    })
    .await;
    assert_shape(&r);
    assert_eq!(r.outcome, "refused");
    assert_eq!(r.who, "anonymous");
    assert_eq!(r.detail["status"], 401);
    assert_eq!(r.detail["method"], "GET");
    assert_eq!(r.detail["path"], "/api/v1/query");
    assert!(r.from.as_deref().is_some_and(|f| f.starts_with("127.0.0.1:")), "{r:?}");
    let r = wait_record(&file, "unknown key", |r| r.detail["reason"] == "unknown API key").await;
    assert_eq!(
        (r.event.as_str(), r.detail["path"].as_str()),
        ("auth.failure", Some("/api/v1/series"))
    );
    let r = wait_record(&file, "revoked key", |r| r.detail["path"] == "/api/v1/stats").await;
    assert_eq!(r.event, "auth.failure");
    assert_eq!(r.who, format!("key:{revoked_id} (old)"));
    assert_eq!(r.tenant, "a");

    // 403: a read key on an admin route.
    assert_eq!(get(&s, "/api/v1/clients", Some(&reader)).await.0, 403);
    let r = wait_record(&file, "403", |r| r.event == "permission.denied").await;
    assert_eq!(r.who, format!("key:{reader_id} (dash)"));
    assert_eq!((r.tenant.as_str(), r.detail["status"].as_u64()), ("a", Some(403)));
    assert_eq!(r.detail["path"], "/api/v1/clients");

    // An admin action, with its status.
    assert_eq!(get(&s, "/api/v1/channels", Some(&admin)).await.0, 200);
    let r = wait_record(&file, "admin action", |r| r.event == "admin.action").await;
    assert_eq!(r.who, format!("key:{admin_id} (ops)"));
    assert_eq!(r.outcome, "ok");
    assert_eq!(
        (
            r.detail["method"].as_str(),
            r.detail["path"].as_str(),
            r.detail["status"].as_u64()
        ),
        (Some("GET"), Some("/api/v1/channels"), Some(200))
    );
    assert!(r.from.is_some());

    // WebSocket: a `connect` frame with an unknown key, then one with a forged token.
    let mut ws = s.ws_with("", None).await.expect("upgrade");
    ws.send(json!({"type": "connect", "id": 1, "token": "pw_unknown"}))
        .await;
    let (_, code) = ws.recv_until_close().await;
    assert_eq!(code, Some(4001));
    let r = wait_record(&file, "connect frame", |r| r.detail["stage"] == "connect").await;
    assert_eq!((r.event.as_str(), r.who.as_str()), ("auth.failure", "anonymous"));
    assert_eq!(r.detail["reason"], "unknown API key");
    assert_eq!(r.detail["transport"], "websocket");
    let forged = token("mallory", "a", &["admin"], "some-other-secret-of-32-bytes-or-more");
    let Err((status, _)) = s.ws_with(&format!("?token={forged}"), None).await else {
        panic!("forged token accepted");
    };
    assert_eq!(status, 401);
    let r = wait_record(&file, "JWT refusal", |r| {
        r.event == "auth.failure" && r.detail["path"] == "/ws"
    })
    .await;
    assert_eq!(r.detail["status"], 401);

    // A refresh refused on an open token connection.
    let good = token("alice", "a", &[], SECRET);
    let mut ws = s
        .ws_with(&format!("?token={good}"), None)
        .await
        .expect("token accepted");
    ws.send(json!({"type": "refresh", "id": 2, "token": forged})).await;
    let reply = ws.recv().await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    let r = wait_record(&file, "refresh refusal", |r| r.detail["stage"] == "refresh").await;
    assert_eq!((r.who.as_str(), r.tenant.as_str()), ("sub:alice", "a"));

    // A channel refused on an open connection.
    ws.send(json!({"type": "subscribe", "id": 3, "channels": ["audit"]}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    let r = wait_record(&file, "command refusal", |r| {
        r.event == "permission.denied" && r.detail["command"] == "subscribe"
    })
    .await;
    assert_eq!(r.who, "sub:alice");

    // The server went on serving, and its stop is recorded too.
    assert_eq!(get(&s, "/api/v1/channels", Some(&admin)).await.0, 200);
    s.server.shutdown();
    s.server.wait().await.expect("clean stop");
    let all = records(&file);
    let last = all.last().expect("records");
    assert_eq!((last.event.as_str(), last.outcome.as_str()), ("server.stop", "ok"));
}

#[tokio::test]
async fn limit_trips_are_recorded_with_the_limit_and_the_user() {
    let mut config = auth_config();
    config.limits.max_connections_per_user = 1;
    let (id, k) = key(&config, "agent", "t", &[Scope::Read, Scope::Ingest]);
    let file = audit_file(&config);
    let s = TestServer::start(config).await;
    let _first = s.ws_with("", Some(&bearer(&k))).await.expect("first");
    let Err((status, body)) = s.ws_with("", Some(&bearer(&k))).await else {
        panic!("second connection allowed");
    };
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_connections")));
    let r = wait_record(&file, "limit", |r| r.event == "limit.refused").await;
    assert_shape(&r);
    assert_eq!(r.outcome, "refused");
    assert_eq!(r.detail["limit"], "connections_per_user");
    assert_eq!(r.detail["count"], 1);
    assert_eq!(
        (r.who.as_str(), r.tenant.as_str()),
        (format!("key:{id} (agent)").as_str(), "t")
    );
    assert!(r.from.as_deref().is_some_and(|f| f.starts_with("127.0.0.1:")));
    // Lines over the line limit: one record for the write, counting them.
    let long = format!(
        "m,t={} v=1 1\nm v=2 2\nm,t={} v=3 3\n",
        "x".repeat(70_000),
        "y".repeat(70_000)
    );
    let resp = s
        .http
        .post(s.url("/write?db=d"))
        .bearer_auth(&k)
        .body(long)
        .send()
        .await
        .expect("write");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let r = wait_record(&file, "line limit", |r| r.detail["limit"] == "ingest_line_bytes").await;
    assert_eq!(r.detail["count"], 2);
}

#[tokio::test]
async fn the_audit_channel_is_live_for_admins_only() {
    let config = auth_config();
    let (_, admin) = key(&config, "ops", "a", &[Scope::Read, Scope::Admin, Scope::Publish]);
    let (_, reader) = key(&config, "dash", "a", &[Scope::Read, Scope::Publish]);
    let (_, other_admin) = key(&config, "ops-b", "b", &[Scope::Read, Scope::Admin]);
    let s = TestServer::start(config).await;
    let mut ops = s.ws_with("", Some(&bearer(&admin))).await.expect("admin ws");
    ops.subscribe(1, &["audit"]).await;
    let mut ops_b = s.ws_with("", Some(&bearer(&other_admin))).await.expect("admin ws b");
    ops_b.subscribe(1, &[">"]).await;
    // A token with the admin role may subscribe too; one without may not, nor may a read key,
    // nor a pattern reaching `audit`.
    let admin_token = token("root", "a", &["admin"], SECRET);
    let mut root = s.ws_with(&format!("?token={admin_token}"), None).await.expect("token");
    root.subscribe(1, &["audit"]).await;
    let mut dash = s.ws_with("", Some(&bearer(&reader))).await.expect("reader ws");
    let mut aside = Vec::new();
    for (id, ch) in [(1, "audit"), (2, ">"), (3, "*")] {
        let reply = dash
            .request(json!({"type": "subscribe", "id": id, "channels": [ch]}), &mut aside)
            .await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{ch}: {reply}"
        );
    }
    // Nobody publishes on it, admin or not.
    let mut ops_aside = Vec::new();
    let reply = ops
        .request(
            json!({"type": "publish", "id": 9, "channel": "audit", "data": {}}),
            &mut ops_aside,
        )
        .await;
    assert_eq!(reply["code"], "bad_channel", "{reply}");
    let resp = s
        .http
        .post(s.url("/api/v1/publish"))
        .bearer_auth(&admin)
        .json(&json!({"channel": "audit", "data": {}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status(), 400);
    // History of `audit` over HTTP needs admin too.
    assert_eq!(get(&s, "/api/v1/history?channel=audit", Some(&reader)).await.0, 403);
    assert_eq!(get(&s, "/api/v1/history?channel=audit", Some(&admin)).await.0, 200);
    // The reader's refusals (tenant a) arrive live at tenant a's admins, as records.
    let mut seen = Vec::new();
    let mut ops_aside = ops_aside.into_iter();
    while seen.len() < 3 {
        let m = match ops_aside.next() {
            Some(m) => m,
            None => ops.recv().await,
        };
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["channel"], "audit");
        let r: Record = serde_json::from_value(m["data"].clone()).expect("a record");
        assert_eq!(r.tenant, "a");
        if r.event == "permission.denied" && r.who.contains("(dash)") {
            seen.push(r);
        }
    }
    let m = root.recv().await;
    assert_eq!(m["channel"], "audit", "{m}");
    // Tenant b's admin saw none of tenant a's records.
    ops_b.expect_silence(Duration::from_millis(200)).await;
    // The reader's connection still works.
    let reply = dash
        .request(json!({"type": "subscribe", "id": 7, "channels": ["news"]}), &mut aside)
        .await;
    assert_eq!(reply["type"], "subscribed");
}

#[tokio::test]
async fn records_are_read_back_per_tenant_by_admins() {
    let config = auth_config();
    let (_, admin) = key(&config, "ops", "a", &[Scope::Read, Scope::Admin]);
    let (_, reader) = key(&config, "dash", "a", &[Scope::Read]);
    let file = audit_file(&config);
    let s = TestServer::start(config).await;
    let before = audit::now();
    for _ in 0..3 {
        assert_eq!(get(&s, "/api/v1/clients", Some(&reader)).await.0, 403);
    }
    wait_record(&file, "403s", |r| r.event == "permission.denied").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(&s, &format!("/api/v1/audit?since={before}&limit=2"), Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
        let got = body["records"].as_array().expect("records").clone();
        if got.len() == 2 {
            for r in &got {
                assert_eq!(r["tenant"], "a", "{r}");
                assert!(r["ts"].as_str().expect("ts") >= before.as_str());
            }
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(&s, "/api/v1/audit", Some(&reader)).await.0, 403);
    assert_eq!(get(&s, "/api/v1/audit?since=yesterday", Some(&admin)).await.0, 400);
}

#[tokio::test]
async fn the_log_rotates_at_its_size_limit_and_keeps_so_many_files() {
    let mut config = test_config();
    config.audit.max_bytes = 4096;
    config.audit.keep = 2;
    let file = audit_file(&config);
    let s = TestServer::start(config).await;
    // Without authentication admin requests are still recorded (as anonymous).
    for _ in 0..60 {
        let resp = s.http.get(s.url("/api/v1/channels")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
    }
    let deadline = Instant::now() + WAIT;
    while !audit::rotated(&file, 2).exists() {
        assert!(Instant::now() < deadline, "no second rotated file");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !audit::rotated(&file, 3).exists(),
        "only audit.keep rotated files are kept"
    );
    for f in [file.clone(), audit::rotated(&file, 1), audit::rotated(&file, 2)] {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        assert!(len <= 4096, "{} is {len} bytes", f.display());
        for r in records(&f) {
            assert!(r.event == "admin.action" || r.event == "server.start", "{r:?}");
            if r.event == "admin.action" {
                assert_eq!(r.who, "anonymous");
            }
        }
    }
    let metrics = s.get_text("/metrics").await.1;
    assert!(metrics.contains("pulsewire_audit_dropped_total 0"), "{metrics}");
    assert!(metrics.contains("pulsewire_audit_records_total"), "{metrics}");
}

#[tokio::test]
async fn a_disabled_audit_log_writes_nothing() {
    let mut config = test_config();
    config.audit.enabled = false;
    let file = audit_file(&config);
    let s = TestServer::start(config).await;
    let resp = s.http.get(s.url("/api/v1/channels")).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    s.server.shutdown();
    s.server.wait().await.expect("stop");
    assert!(!file.exists());
}
