//! `DELETE /api/v1/clients/{id}` over real clients: a WebSocket gets close code 4012 and an
//! SSE stream ends with a `close` event carrying it; both resume without loss; another
//! tenant's admin gets 404, a read-only key 403, and the action is in the audit log.

use std::path::Path;
use std::time::{Duration, Instant};

use pulsewire_server::audit::{self, Record};
use pulsewire_server::auth::{self, Scope};
use pulsewire_testkit::{TestServer, WAIT, WsEvent, test_config};
use serde_json::{Value, json};

async fn send(s: &TestServer, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = s.http.request(method, s.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The ids of the tenant's connected clients with this transport, as the API lists them.
async fn client_ids(s: &TestServer, transport: &str, key: Option<&str>) -> Vec<u64> {
    let (status, body) = send(s, "GET", "/api/v1/clients", key).await;
    assert_eq!(status, 200, "{body}");
    body["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter(|c| c["transport"] == transport)
        .map(|c| c["id"].as_u64().expect("id"))
        .collect()
}

/// Waits until the client is gone from the registry (its connection task has ended).
async fn wait_gone(s: &TestServer, id: u64, key: Option<&str>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = send(s, "GET", "/api/v1/clients", key).await;
        assert_eq!(status, 200, "{body}");
        if !body["clients"].as_array().unwrap().iter().any(|c| c["id"] == id) {
            return;
        }
        assert!(Instant::now() < deadline, "client {id} is still listed: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_disconnected_websocket_gets_4012_and_resumes_without_loss() {
    let s = TestServer::start_default().await;
    let mut ws = s.ws().await;
    let reply = ws.subscribe(1, &["k"]).await;
    let epoch = reply["channels"]["k"]["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        s.publish("k", json!(i)).await;
    }
    assert_eq!(ws.messages(3).await.len(), 3);
    let ids = client_ids(&s, "websocket", None).await;
    assert_eq!(ids.len(), 1, "{ids:?}");

    let (status, body) = send(&s, "DELETE", &format!("/api/v1/clients/{}", ids[0]), None).await;
    assert_eq!(status, 204, "{body}");
    match ws.next_event().await {
        Ok(WsEvent::Closed(Some((code, reason)))) => {
            assert_eq!(code, 4012, "{reason}");
            assert!(reason.contains("reconnect"), "{reason}");
        }
        other => panic!("expected close 4012, got {other:?}"),
    }
    wait_gone(&s, ids[0], None).await;
    // Gone: a second request finds nothing.
    let (status, body) = send(&s, "DELETE", &format!("/api/v1/clients/{}", ids[0]), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");

    // Published while disconnected, then resumed from the last offset seen: exact.
    for i in 4..=6 {
        s.publish("k", json!(i)).await;
    }
    let mut ws = s.ws().await;
    ws.send(json!({"type":"subscribe","id":2,"channels":["k"],"since":{"k":{"epoch":epoch,"offset":3}}}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["channels"]["k"]["recovered"], true, "{reply}");
    let offsets: Vec<u64> = ws
        .messages(3)
        .await
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5, 6]);
    ws.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_disconnected_sse_stream_ends_with_a_close_event_and_resumes() {
    let s = TestServer::start_default().await;
    let mut sse = s.sse("channels=k", None).await;
    let first = sse.recv().await;
    assert_eq!(first.event, "subscribed", "{first:?}");
    for i in 1..=2 {
        s.publish("k", json!(i)).await;
    }
    let seen = sse.messages(2).await;
    let last_id = seen[1].id.clone();
    let ids = client_ids(&s, "sse", None).await;
    assert_eq!(ids.len(), 1, "{ids:?}");

    let (status, body) = send(&s, "DELETE", &format!("/api/v1/clients/{}", ids[0]), None).await;
    assert_eq!(status, 204, "{body}");
    let rest = sse.until_end().await.expect("the stream ends");
    let close = rest.last().expect("a close event");
    assert_eq!(close.event, "close", "{rest:?}");
    assert_eq!(close.data["code"], 4012, "{rest:?}");
    wait_gone(&s, ids[0], None).await;

    s.publish("k", json!(3)).await;
    let mut sse = s.sse("channels=k", Some(&last_id)).await;
    let reply = sse.recv().await;
    assert_eq!(reply.event, "subscribed", "{reply:?}");
    assert_eq!(reply.data["channels"]["k"]["recovered"], true, "{reply:?}");
    let m = sse.messages(1).await;
    assert_eq!((m[0].data["offset"].as_u64(), &m[0].data["data"]), (Some(3), &json!(3)));
}

#[tokio::test]
async fn bad_and_unknown_ids_get_json_errors() {
    let s = TestServer::start_default().await;
    let (status, body) = send(&s, "DELETE", "/api/v1/clients/abc", None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = send(&s, "DELETE", "/api/v1/clients/987654", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("987654"), "{body}");
}

fn records(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Only an admin key of the client's own tenant may disconnect it: another tenant's admin gets
/// 404 (as if it did not exist), a read-only key 403; the action is audited.
#[tokio::test]
async fn only_an_admin_of_the_clients_tenant_may_disconnect_it() {
    let mut config = test_config();
    config.auth.enabled = true;
    let path = auth::keys_path(&config.auth, &config.data_dir);
    let key = |tenant: &str, scopes: &[Scope]| auth::create_key(&path, "ops", tenant, scopes.to_vec()).expect("key").1;
    let admin_a = key("a", &[Scope::Admin, Scope::Read]);
    let reader_a = key("a", &[Scope::Read]);
    let admin_b = key("b", &[Scope::Admin, Scope::Read]);
    let audit_file = audit::audit_path(&config.audit, &config.data_dir);
    let s = TestServer::start(config).await;

    let mut ws = s.ws_with(&format!("?token={reader_a}"), None).await.expect("connects");
    ws.subscribe(1, &["k"]).await;
    let ids = client_ids(&s, "websocket", Some(&admin_a)).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(client_ids(&s, "websocket", Some(&admin_b)).await.is_empty());
    let target = format!("/api/v1/clients/{}", ids[0]);

    let (status, body) = send(&s, "DELETE", &target, Some(&admin_b)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = send(&s, "DELETE", &target, Some(&reader_a)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = send(&s, "DELETE", &target, None).await;
    assert_eq!(status, 401, "{body}");
    // None of those touched the connection.
    let pong = ws.request(json!({"type":"ping","id":2}), &mut Vec::new()).await;
    assert_eq!(pong["type"], "pong", "{pong}");

    let (status, body) = send(&s, "DELETE", &target, Some(&admin_a)).await;
    assert_eq!(status, 204, "{body}");
    let (_, code) = ws.recv_until_close().await;
    assert_eq!(code, Some(4012));

    // Audited: the refused attempts and the action itself, with their statuses.
    let deadline = Instant::now() + WAIT;
    loop {
        let recs = records(&audit_file);
        let on_target: Vec<(&str, &str, u64)> = recs
            .iter()
            .filter(|r| r.detail["path"] == target.as_str() && r.detail["method"] == "DELETE")
            .map(|r| {
                (
                    r.event.as_str(),
                    r.outcome.as_str(),
                    r.detail["status"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let want = [
            ("admin.action", "failed", 404),
            ("permission.denied", "refused", 403),
            ("admin.action", "ok", 204),
        ];
        if want.iter().all(|w| on_target.contains(w)) {
            let ok = recs
                .iter()
                .find(|r| r.event == "admin.action" && r.detail["status"] == 204)
                .unwrap();
            assert_eq!(ok.tenant, "a");
            break;
        }
        assert!(Instant::now() < deadline, "audit records for {target}: {on_target:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
