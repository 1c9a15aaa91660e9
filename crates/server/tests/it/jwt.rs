//! JWT connection tokens and channel permissions over real WebSocket and SSE connections:
//! tokens by query, header and `connect` frame; every refusal with its code (HTTP 401 and a JSON
//! reason, close codes 4001, 4002, 4011, `forbidden` error frames, HTTP 403); JWKS rotation by
//! `kid`; expiry warnings, refresh and the close at expiry; namespace rules for subscribe,
//! publish, history and presence; and, after every refusal, another client still served.
//!
//! Keys are the test-only fixtures in `tests/fixtures/jwt/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use pulsewire_server::auth::{self, Scope};
use pulsewire_server::jwt::now_unix;
use pulsewire_server::{Access, Config, NamespacePermissions};
use pulsewire_testkit::{Sse, TestServer, WAIT, Ws, WsEvent, test_config};
use serde_json::{Value, json};

const SECRET: &str = "pulsewire-test-secret-of-at-least-32-bytes";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// Auth on, HS256 and RS256 keys, no leeway, anonymous connections in `acme`, and two namespaces: `public` (anyone subscribes
/// and reads history; publishing and presence need authentication) and `chat` (all by claim).
fn config() -> Config {
    let mut c = test_config();
    c.auth.enabled = true;
    c.auth.jwt.hmac_secret = SECRET.into();
    c.auth.jwt.rsa_public_key_file = fixture("rsa1.pub.pem");
    c.auth.jwt.leeway = Duration::ZERO;
    c.auth.anonymous_tenant = "acme".into();
    c.websocket.connect_timeout = Duration::from_millis(500);
    // These tests open many connections as one user; the limits have their own tests.
    c.limits.new_connections_per_user_per_minute = 10_000;
    c.limits.new_connections_per_ip_per_minute = 10_000;
    c.limits.max_connections_per_user = 1_000;
    let ns = |name: &str, subscribe, publish, history, presence| NamespacePermissions {
        name: name.into(),
        subscribe,
        publish,
        history,
        presence,
    };
    c.auth.namespaces = vec![
        ns(
            "public",
            Access::Any,
            Access::Authenticated,
            Access::Any,
            Access::Authenticated,
        ),
        ns("chat", Access::Claim, Access::Claim, Access::Claim, Access::Claim),
    ];
    c
}

/// Starts the server with a publishing API key of tenant `acme`, returned with it.
async fn start(config: Config) -> (TestServer, String) {
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let (_, key) = auth::create_key(&path, "publisher", "acme", vec![Scope::Publish, Scope::Read]).expect("key");
    (TestServer::start(config).await, key)
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "tenant": "acme", "exp": now_unix() + 600});
    c.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    c
}

fn hs256(c: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("signed")
}

fn rs256(c: &Value, key: &str, kid: Option<&str>) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    encode(&h, c, &EncodingKey::from_rsa_pem(&pem(key)).expect("rsa key")).expect("signed")
}

async fn publish(s: &TestServer, key: &str, channel: &str, data: Value) {
    let resp = s
        .http
        .post(s.url("/api/v1/publish"))
        .header("authorization", format!("Bearer {key}"))
        .body(json!({"channel": channel, "data": data}).to_string())
        .send()
        .await
        .expect("publish sent");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
}

async fn ws_token(s: &TestServer, token: &str) -> Ws {
    s.ws_with(&format!("?token={token}"), None).await.expect("upgrade")
}

/// Sends a command and returns the frame answering its id.
async fn ask(ws: &mut Ws, v: Value) -> Value {
    let mut aside = Vec::new();
    ws.request(v, &mut aside).await
}

fn assert_code(frame: &Value, kind: &str, code: &str) {
    assert_eq!(
        (frame["type"].as_str(), frame["code"].as_str()),
        (Some(kind), Some(code)),
        "{frame}"
    );
}

/// A connection that proves the server still serves: publishes on `chat:room1` and reads it back.
async fn still_served(s: &TestServer, key: &str, probe: &mut Ws, n: u64) {
    publish(s, key, "chat:room1", json!({"n": n})).await;
    let got = probe.messages(1).await;
    assert_eq!(got[0]["data"]["n"], n, "{got:?}");
}

async fn probe(s: &TestServer) -> Ws {
    let mut ws = ws_token(s, &hs256(&claims(json!({"sub": "probe", "channels": ["chat:room1"]})))).await;
    ws.subscribe(1, &["chat:room1"]).await;
    ws
}

#[tokio::test]
async fn hs256_and_rs256_tokens_by_query_header_and_on_sse() {
    let (s, key) = start(config()).await;
    let c = claims(json!({"channels": ["chat:room1"]}));
    let mut by_query = ws_token(&s, &hs256(&c)).await;
    by_query.subscribe(1, &["chat:room1"]).await;
    let mut by_header = s
        .ws_with("", Some(&format!("Bearer {}", rs256(&c, "rsa1.key.pem", None))))
        .await
        .expect("upgrade");
    by_header.subscribe(1, &["chat:room1"]).await;
    let mut sse = s
        .sse_with(
            &format!("channels=chat:room1&token={}", rs256(&c, "rsa1.key.pem", None)),
            None,
            None,
        )
        .await
        .expect("stream");
    assert_eq!(sse.recv().await.event, "subscribed");
    let mut sse_header = s
        .sse_with("channels=chat:room1", Some(&format!("Bearer {}", hs256(&c))), None)
        .await
        .expect("stream");
    assert_eq!(sse_header.recv().await.event, "subscribed");
    publish(&s, &key, "chat:room1", json!({"v": 1})).await;
    for ws in [&mut by_query, &mut by_header] {
        assert_eq!(ws.messages(1).await[0]["data"]["v"], 1);
    }
    for sse in [&mut sse, &mut sse_header] {
        assert_eq!(sse.messages(1).await[0].data["data"]["v"], 1);
    }
    // Presence names the token's subject.
    let reply = ask(&mut by_query, json!({"type":"presence","id":2,"channel":"chat:room1"})).await;
    assert_eq!(reply["type"], "presence", "{reply}");
    let users: Vec<&str> = reply["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter_map(|c| c["user"].as_str())
        .collect();
    // Two WebSockets and two SSE streams, all alice's.
    assert_eq!(users, ["alice"; 4], "{reply}");
}

#[tokio::test]
async fn refused_tokens_get_401_with_a_reason_and_others_keep_working() {
    let (s, key) = start(config()).await;
    let mut probe = probe(&s).await;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims(json!({})).to_string())
    );
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"not the server's secret, but long enough"),
    )
    .expect("signed");
    // HS256 signed with the RSA public key as the secret (the algorithm-confusion attack).
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(&pem("rsa1.pub.pem")),
    )
    .expect("signed");
    let mut tampered = hs256(&claims(json!({})))
        .split('.')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    tampered[1] = b64.encode(claims(json!({"tenant": "other"})).to_string());
    let cases = [
        (
            "expired",
            hs256(&claims(json!({"exp": now_unix() - 30}))),
            "token_expired",
        ),
        (
            "nbf in the future",
            hs256(&claims(json!({"nbf": now_unix() + 600}))),
            "unauthorized",
        ),
        ("forged signature", forged, "unauthorized"),
        ("tampered claims", tampered.join("."), "unauthorized"),
        ("wrong algorithm", confused, "unauthorized"),
        ("alg none", none, "unauthorized"),
        (
            "unknown kid",
            rs256(&claims(json!({})), "rsa1.key.pem", Some("nope")),
            "unauthorized",
        ),
        (
            "RS256 by another key",
            rs256(&claims(json!({})), "rsa2.key.pem", None),
            "unauthorized",
        ),
        (
            "no tenant",
            hs256(&json!({"sub": "a", "exp": now_unix() + 60})),
            "unauthorized",
        ),
        ("no exp", hs256(&json!({"sub": "a", "tenant": "acme"})), "unauthorized"),
    ];
    for (i, (what, token, code)) in cases.iter().enumerate() {
        let Err((status, body)) = s.ws_with(&format!("?token={token}"), None).await else {
            panic!("{what}: websocket upgrade accepted");
        };
        assert_eq!((status, body["code"].as_str()), (401, Some(*code)), "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
        let Err((status, body)) = s
            .sse_with("channels=chat:room1", Some(&format!("Bearer {token}")), None)
            .await
        else {
            panic!("{what}: SSE stream accepted");
        };
        assert_eq!((status, body["code"].as_str()), (401, Some(*code)), "{what}: {body}");
        still_served(&s, &key, &mut probe, i as u64).await;
    }
}

#[tokio::test]
async fn the_tenant_claim_decides_which_channels_a_connection_sees() {
    let (s, key) = start(config()).await;
    let mut acme = ws_token(&s, &hs256(&claims(json!({"tenant": "acme"})))).await;
    let mut other = ws_token(&s, &hs256(&claims(json!({"tenant": "other"})))).await;
    acme.subscribe(1, &["news"]).await;
    other.subscribe(1, &["news"]).await;
    // The API key is acme's: its publication on `news` is acme's channel only.
    publish(&s, &key, "news", json!({"for": "acme"})).await;
    assert_eq!(acme.messages(1).await[0]["data"]["for"], "acme");
    let reply = ask(&mut other, json!({"type":"history","id":2,"channel":"news"})).await;
    assert_eq!(reply["publications"].as_array().map(Vec::len), Some(0), "{reply}");
    other.expect_silence(Duration::from_millis(200)).await;
    // A missing tenant claim takes auth.jwt.default_tenant where one is configured.
    let mut cfg = config();
    cfg.auth.jwt.default_tenant = "acme".into();
    let (s2, key2) = start(cfg).await;
    let mut defaulted = ws_token(&s2, &hs256(&json!({"sub": "bob", "exp": now_unix() + 60}))).await;
    defaulted.subscribe(1, &["news"]).await;
    publish(&s2, &key2, "news", json!({"v": 2})).await;
    assert_eq!(defaulted.messages(1).await[0]["data"]["v"], 2);
}

#[tokio::test]
async fn jwks_keys_rotate_by_kid() {
    let mut cfg = config();
    let jwks = cfg.data_dir.join("jwks.json");
    std::fs::create_dir_all(&cfg.data_dir).expect("data dir");
    let jwk = |name: &str| serde_json::from_slice::<Value>(&pem(name)).expect("jwk");
    std::fs::write(&jwks, json!({"keys": [jwk("rsa1.jwk.json")]}).to_string()).expect("jwks written");
    cfg.auth.jwt.jwks_file = jwks.clone();
    let (s, _key) = start(cfg).await;
    let by = |kid: &str, key: &str| rs256(&claims(json!({})), key, Some(kid));
    assert!(
        s.ws_with(&format!("?token={}", by("rsa1", "rsa1.key.pem")), None)
            .await
            .is_ok()
    );
    let refused = s
        .ws_with(&format!("?token={}", by("rsa2", "rsa2.key.pem")), None)
        .await
        .err();
    assert_eq!(refused.map(|r| r.0), Some(401));
    // A kid's token signed by the other key: refused.
    let refused = s
        .ws_with(&format!("?token={}", by("rsa1", "rsa2.key.pem")), None)
        .await
        .err();
    assert_eq!(refused.map(|r| r.0), Some(401));

    // Rotation: both keys live at once, then only the new one.
    std::fs::write(
        &jwks,
        json!({"keys": [jwk("rsa1.jwk.json"), jwk("rsa2.jwk.json")]}).to_string(),
    )
    .expect("jwks written");
    accepted_within(&s, &by("rsa2", "rsa2.key.pem"), true).await;
    assert!(
        s.ws_with(&format!("?token={}", by("rsa1", "rsa1.key.pem")), None)
            .await
            .is_ok()
    );
    std::fs::write(&jwks, json!({"keys": [jwk("rsa2.jwk.json")]}).to_string()).expect("jwks written");
    accepted_within(&s, &by("rsa1", "rsa1.key.pem"), false).await;
    assert!(
        s.ws_with(&format!("?token={}", by("rsa2", "rsa2.key.pem")), None)
            .await
            .is_ok()
    );
}

/// Waits until the token is accepted (or refused) on upgrade; the JWKS file is re-read within
/// about a second of a change.
async fn accepted_within(s: &TestServer, token: &str, want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ok = s.ws_with(&format!("?token={token}"), None).await.is_ok();
        if ok == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "JWKS change not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn refresh_keeps_subscriptions_and_only_the_same_subject_may_refresh() {
    let mut cfg = config();
    cfg.auth.jwt.expiry_warning = Duration::from_millis(1500);
    let (s, key) = start(cfg).await;
    let exp = now_unix() + 3;
    let mut ws = ws_token(&s, &hs256(&claims(json!({"exp": exp, "channels": ["chat:room1"]})))).await;
    ws.subscribe(1, &["chat:room1"]).await;
    let warning = ws.recv().await;
    assert_eq!(warning["type"], "token_expiring", "{warning}");
    assert_eq!(warning["exp"], exp);
    assert!(warning["in_ms"].as_u64().is_some_and(|ms| ms <= 1500), "{warning}");
    // Refusals leave the connection and its token as they were.
    let other_sub = hs256(&claims(json!({"sub": "mallory", "exp": now_unix() + 600})));
    assert_code(
        &ask(&mut ws, json!({"type":"refresh","id":2,"token":other_sub})).await,
        "error",
        "forbidden",
    );
    let other_tenant = hs256(&claims(json!({"tenant": "other", "exp": now_unix() + 600})));
    assert_code(
        &ask(&mut ws, json!({"type":"refresh","id":3,"token":other_tenant})).await,
        "error",
        "forbidden",
    );
    let expired = hs256(&claims(json!({"exp": now_unix() - 30})));
    assert_code(
        &ask(&mut ws, json!({"type":"refresh","id":4,"token":expired})).await,
        "error",
        "token_expired",
    );
    let new_exp = now_unix() + 600;
    let fresh = hs256(&claims(json!({"exp": new_exp, "channels": ["chat:room1"]})));
    let reply = ask(&mut ws, json!({"type":"refresh","id":5,"token":fresh})).await;
    assert_eq!(
        (reply["type"].as_str(), reply["exp"].as_u64()),
        (Some("refreshed"), Some(new_exp)),
        "{reply}"
    );
    // Past the first token's expiry the connection is open and still subscribed.
    tokio::time::sleep(pulsewire_server::jwt::until_unix(exp) + Duration::from_millis(300)).await;
    publish(&s, &key, "chat:room1", json!({"after": "refresh"})).await;
    assert_eq!(ws.messages(1).await[0]["data"]["after"], "refresh");
}

#[tokio::test]
async fn a_connection_that_does_not_refresh_is_closed_at_expiry() {
    let mut cfg = config();
    cfg.auth.jwt.expiry_warning = Duration::from_secs(1);
    let (s, key) = start(cfg).await;
    let mut probe = probe(&s).await;
    let token = hs256(&claims(json!({"exp": now_unix() + 3, "channels": ["chat:room1"]})));
    let mut ws = ws_token(&s, &token).await;
    ws.subscribe(1, &["chat:room1"]).await;
    let (frames, code) = ws.recv_until_close().await;
    assert_eq!(code, Some(4002), "{frames:?}");
    assert_eq!(
        frames.first().map(|f| f["type"].clone()),
        Some(json!("token_expiring")),
        "{frames:?}"
    );
    assert_code(frames.last().expect("frames"), "error", "token_expired");
    // SSE cannot be told in advance: its stream ends with the reason, and the client reconnects
    // with a new token and the last event id it saw.
    let token = hs256(&claims(json!({"exp": now_unix() + 3, "channels": ["chat:room1"]})));
    let mut sse = s
        .sse_with(&format!("channels=chat:room1&token={token}"), None, None)
        .await
        .expect("stream");
    assert_eq!(sse.recv().await.event, "subscribed");
    publish(&s, &key, "chat:room1", json!({"n": 1})).await;
    let last = sse.messages(1).await.remove(0);
    let end = sse.until_end().await.expect("stream ends");
    let kinds: Vec<(&str, Value)> = end.iter().map(|e| (e.event.as_str(), e.data["code"].clone())).collect();
    assert_eq!(
        kinds,
        [("error", json!("token_expired")), ("close", json!(4002))],
        "{end:?}"
    );
    probe.messages(1).await;
    publish(&s, &key, "chat:room1", json!({"n": 2})).await;
    probe.messages(1).await;
    let fresh = hs256(&claims(json!({"channels": ["chat:room1"]})));
    let mut resumed = s
        .sse_with(&format!("channels=chat:room1&token={fresh}"), None, Some(&last.id))
        .await
        .expect("stream");
    let subscribed = resumed.recv().await;
    assert_eq!(
        subscribed.data["channels"]["chat:room1"]["recovered"], true,
        "{subscribed:?}"
    );
    assert_eq!(resumed.messages(1).await[0].data["data"]["n"], 2);
    still_served(&s, &key, &mut probe, 3).await;
}

#[tokio::test]
async fn connect_frame_authenticates_and_its_refusals_close_with_their_codes() {
    let (s, key) = start(config()).await;
    let mut probe = probe(&s).await;
    let mut ws = s.ws().await;
    let token = hs256(&claims(json!({"channels": ["chat:room1"]})));
    let reply = ask(&mut ws, json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(
        (reply["type"].as_str(), reply["user"].as_str(), reply["tenant"].as_str()),
        (Some("connected"), Some("alice"), Some("acme")),
        "{reply}"
    );
    assert!(reply["exp"].is_u64() && reply["client"].is_u64(), "{reply}");
    ws.subscribe(2, &["chat:room1"]).await;
    publish(&s, &key, "chat:room1", json!({"v": 1})).await;
    assert_eq!(ws.messages(1).await[0]["data"]["v"], 1);
    probe.messages(1).await;
    // A second `connect` is a mistake, not a re-authentication.
    assert_code(
        &ask(&mut ws, json!({"type":"connect","id":3,"token":token})).await,
        "error",
        "bad_request",
    );

    let refusals = [
        (hs256(&claims(json!({"exp": now_unix() - 30}))), "token_expired", 4002),
        (hs256(&claims(json!({"nbf": now_unix() + 600}))), "unauthorized", 4001),
        ("pw_unknown".to_string(), "unauthorized", 4001),
    ];
    for (i, (token, code, close)) in refusals.into_iter().enumerate() {
        let mut ws = s.ws().await;
        ws.send(json!({"type":"connect","id":9,"token":token})).await;
        let (frames, got) = ws.recv_until_close().await;
        assert_eq!(got, Some(close), "{frames:?}");
        assert_code(&frames[0], "error", code);
        still_served(&s, &key, &mut probe, 10 + i as u64).await;
    }
    // Where nothing is open to `any`, a first frame other than `connect` closes with 4001.
    // (This server opens `public` to anyone, so use one that does not.)
    let mut closed_cfg = config();
    closed_cfg.auth.namespaces.clear();
    let (closed, _) = start(closed_cfg).await;
    let mut ws = closed.ws().await;
    ws.send(json!({"type":"ping","id":1})).await;
    let (frames, got) = ws.recv_until_close().await;
    assert_eq!(got, Some(4001), "{frames:?}");
    assert_code(&frames[0], "error", "unauthorized");
    // Nothing at all within websocket.connect_timeout: 4011.
    let mut silent = s.ws().await;
    match silent.next_event().await {
        Ok(WsEvent::Frame(f)) => assert_code(&f, "error", "unauthorized"),
        other => panic!("expected the error frame, got {other:?}"),
    }
    match silent.next_event().await {
        Ok(WsEvent::Closed(Some((code, _)))) => assert_eq!(code, 4011),
        other => panic!("expected close 4011, got {other:?}"),
    }
    still_served(&s, &key, &mut probe, 20).await;
}

#[tokio::test]
async fn namespace_rules_refuse_with_forbidden_and_the_connection_stays_open() {
    let (s, key) = start(config()).await;
    let mut probe = probe(&s).await;
    let token = hs256(&claims(
        json!({"channels": ["chat:room1", "chat:team:>"], "publish": ["chat:room1"]}),
    ));
    let mut ws = ws_token(&s, &token).await;
    let refused = [
        json!({"type":"subscribe","id":1,"channels":["chat:room2"]}),
        json!({"type":"subscribe","id":2,"channels":["chat:room1","chat:room2"]}),
        json!({"type":"subscribe","id":3,"channels":["chat:*"]}),
        json!({"type":"subscribe","id":4,"channels":["*:room2"]}),
        json!({"type":"publish","id":5,"channel":"chat:room2","data":{}}),
        json!({"type":"publish","id":6,"channel":"chat:team:a","data":{}}),
        json!({"type":"history","id":7,"channel":"chat:room2"}),
        json!({"type":"presence","id":8,"channel":"chat:room2"}),
    ];
    for (i, cmd) in refused.into_iter().enumerate() {
        let reply = ask(&mut ws, cmd.clone()).await;
        assert_code(&reply, "error", "forbidden");
        assert!(
            reply["message"].as_str().is_some_and(|m| m.contains("claim")),
            "{cmd}: {reply}"
        );
        still_served(&s, &key, &mut probe, i as u64).await;
    }
    // What the claims cover works on the same connection.
    ws.subscribe(10, &["chat:room1", "chat:team:*"]).await;
    let reply = ask(
        &mut ws,
        json!({"type":"publish","id":11,"channel":"chat:room1","data":{"v":1}}),
    )
    .await;
    assert_eq!(reply["type"], "published", "{reply}");
    probe.messages(1).await;
    let reply = ask(&mut ws, json!({"type":"history","id":12,"channel":"chat:room1"})).await;
    assert_eq!(reply["type"], "history", "{reply}");
    let reply = ask(&mut ws, json!({"type":"presence","id":13,"channel":"chat:team:x"})).await;
    assert_eq!(reply["type"], "presence", "{reply}");
    // The server's channels stay closed to clients, even to an admin token.
    let mut admin = ws_token(&s, &hs256(&claims(json!({"roles": ["admin"]})))).await;
    for channel in ["alerts", "anomalies", "stats:cpu"] {
        let reply = ask(&mut admin, json!({"type":"publish","id":1,"channel":channel,"data":{}})).await;
        assert_code(&reply, "error", "bad_channel");
    }
    let reply = ask(
        &mut admin,
        json!({"type":"publish","id":2,"channel":"chat:any","data":{}}),
    )
    .await;
    assert_eq!(reply["type"], "published", "{reply}");

    // Without credentials: what `public` opens to anyone, and nothing else.
    let mut anon = s.ws().await;
    anon.subscribe(1, &["public:news"]).await;
    let reply = ask(&mut anon, json!({"type":"history","id":2,"channel":"public:news"})).await;
    assert_eq!(reply["type"], "history", "{reply}");
    for cmd in [
        json!({"type":"publish","id":3,"channel":"public:news","data":{}}),
        json!({"type":"presence","id":4,"channel":"public:news"}),
        json!({"type":"subscribe","id":5,"channels":["chat:room1"]}),
        json!({"type":"subscribe","id":6,"channels":["news"]}),
        json!({"type":"refresh","id":7,"token":token}),
    ] {
        let reply = ask(&mut anon, cmd.clone()).await;
        assert_eq!(reply["type"], "error", "{cmd}: {reply}");
    }
    publish(&s, &key, "public:news", json!({"v": 2})).await;
    assert_eq!(anon.messages(1).await[0]["data"]["v"], 2);

    // SSE: 403 with the reason where the rules refuse, a stream where they allow.
    let anon_sse: Result<Sse, _> = s.sse_with("channels=public:news", None, None).await;
    assert!(anon_sse.is_ok());
    for (query, auth) in [
        ("channels=public:news,chat:room1".to_string(), None),
        (format!("channels=chat:room2&token={token}"), None),
        ("channels=chat:>".to_string(), Some(format!("Bearer {token}"))),
    ] {
        let Err((status, body)) = s.sse_with(&query, auth.as_deref(), None).await else {
            panic!("{query}: stream accepted");
        };
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{query}: {body}"
        );
    }
    still_served(&s, &key, &mut probe, 100).await;
}

/// A connection that authenticates with a `connect` frame counts against the token's user and
/// tenant, not only as an anonymous client of its address: over the user's limit of open
/// connections it is refused with `too_many_connections` and closed with 4029.
#[tokio::test]
async fn a_connect_frame_connection_counts_against_the_tokens_user() {
    let mut c = config();
    c.limits.max_connections_per_user = 1;
    let (s, key) = start(c).await;
    let mut probe = probe(&s).await;
    let token = hs256(&claims(json!({"channels": ["chat:room1"]})));
    let mut first = s.ws().await;
    let reply = ask(&mut first, json!({"type":"connect","id":1,"token":token})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
    let mut second = s.ws().await;
    second.send(json!({"type":"connect","id":2,"token":token})).await;
    let (frames, close) = second.recv_until_close().await;
    assert_eq!(close, Some(4029), "{frames:?}");
    assert_code(&frames[0], "error", "too_many_connections");
    // Another user of the same tenant is still admitted, and others are served.
    let bob = hs256(&claims(json!({"sub": "bob", "channels": ["chat:room1"]})));
    let mut third = s.ws().await;
    let reply = ask(&mut third, json!({"type":"connect","id":3,"token":bob})).await;
    assert_eq!(reply["type"], "connected", "{reply}");
    still_served(&s, &key, &mut probe, 20).await;
}
