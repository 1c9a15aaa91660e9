//! Alert rules end to end over real HTTP and WebSocket: a point written over `/write` that
//! crosses a rule's threshold fires an alert on the `alerts` channel; rules are managed over the
//! API with errors that name the field; acknowledgements, silences and the notification path to
//! a real webhook receiver; firing alerts survive a restart with their original `since`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use parking_lot::Mutex;
use pulsewire_server::WebhookConfig;
use pulsewire_testkit::{TestServer, WAIT, test_config};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn send_json(s: &TestServer, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let resp = s
        .http
        .request(method, s.url(path))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn write(s: &TestServer, body: &str) {
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .body(body.to_string())
        .send()
        .await
        .expect("write sent");
    assert_eq!(resp.status().as_u16(), 204);
}

fn high_cpu() -> Value {
    json!({
        "name": "high_cpu",
        "kind": "threshold",
        "expr": "max(cpu.usage{host=~\"web.*\"})",
        "window": "1m",
        "op": ">",
        "threshold": 90.0,
        "severity": "critical",
        "labels": {"team": "ops"},
        "annotations": {"summary": "CPU {{ $value }} on {{ $labels.host }}"}
    })
}

#[tokio::test]
async fn a_point_over_the_threshold_fires_on_the_alerts_channel() {
    let mut cfg = test_config();
    cfg.analysis.anomaly.enabled = false;
    let s = TestServer::start(cfg).await;
    let (status, body) = send_json(&s, reqwest::Method::POST, "/api/v1/rules", high_cpu()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], "api");
    let mut ws = s.ws().await;
    ws.subscribe(1, &["alerts"]).await;
    let t = now_ms();
    // Below the threshold, and a host the selector does not match: nothing.
    write(&s, &format!("cpu,host=web1 usage=50 {t}\ncpu,host=db1 usage=99 {t}\n")).await;
    ws.expect_silence(Duration::from_millis(300)).await;
    write(&s, &format!("cpu,host=web1 usage=95.5 {}\n", t + 1000)).await;
    let m = tokio::time::timeout(WAIT, ws.recv()).await.expect("alert event");
    assert_eq!(m["channel"], "alerts");
    let a = &m["data"];
    assert_eq!(a["state"], "firing", "{a}");
    assert_eq!(a["rule"], "high_cpu");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["value"], 95.5);
    assert_eq!(a["labels"]["host"], "web1");
    assert_eq!(a["labels"]["team"], "ops");
    assert_eq!(a["labels"]["__name__"], "cpu.usage");
    assert_eq!(a["annotations"]["summary"], "CPU 95.5 on web1");
    let id = a["id"].as_str().unwrap().to_string();

    let list = s.get_json("/api/v1/alerts?state=firing&severity=critical").await;
    assert_eq!(list["alerts"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["alerts"][0]["id"], id.as_str());
    let none = s.get_json("/api/v1/alerts?severity=info").await;
    assert_eq!(none["alerts"], json!([]));

    // Acknowledged: who, when, why.
    let (status, acked) = send_json(
        &s,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        json!({"by": "alice", "comment": "looking"}),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["ack"]["by"], "alice");
    assert_eq!(acked["ack"]["comment"], "looking");
    assert!(acked["ack"]["at"].as_i64().unwrap() >= t - 60_000);
    let (status, _) = send_json(&s, reqwest::Method::POST, "/api/v1/alerts/nope/ack", json!({"by": "a"})).await;
    assert_eq!(status, 404);

    // Deleting the rule resolves its alert, once.
    let resp = s.http.delete(s.url("/api/v1/rules/high_cpu")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let m = tokio::time::timeout(WAIT, ws.recv()).await.expect("resolved event");
    assert_eq!(
        (m["data"]["state"].as_str(), m["data"]["id"].as_str()),
        (Some("resolved"), Some(id.as_str()))
    );
    let stats = s.get_json("/api/v1/alerts/stats?range=1h").await;
    assert!(stats["stats"].is_object(), "{stats}");
    let text = stats.to_string();
    assert!(text.contains("high_cpu"), "{text}");
    let (status, _) = s.get_text("/api/v1/alerts/stats?range=soon").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn rules_are_validated_with_the_field_named() {
    let s = TestServer::start_default().await;
    let mut bad = high_cpu();
    bad["window"] = json!("0s");
    bad["expr"] = json!("mean(cpu.usage)");
    let (status, body) = send_json(&s, reqwest::Method::POST, "/api/v1/rules", bad).await;
    assert_eq!(status, 400, "{body}");
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"window") && paths.contains(&"expr"), "{body}");
    let (status, body) = send_json(&s, reqwest::Method::POST, "/api/v1/rules", json!({"name": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("kind"), "{body}");
    let mut wrong_type = high_cpu();
    wrong_type["threshold"] = json!("ninety");
    let (status, body) = send_json(&s, reqwest::Method::POST, "/api/v1/rules", wrong_type).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], "threshold", "{body}");
    let (status, _) = send_json(&s, reqwest::Method::POST, "/api/v1/rules", high_cpu()).await;
    assert_eq!(status, 201);
    let (status, body) = send_json(&s, reqwest::Method::POST, "/api/v1/rules", high_cpu()).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    // PUT replaces; a body naming another rule is refused.
    let mut changed = high_cpu();
    changed["threshold"] = json!(80.0);
    let (status, body) = send_json(&s, reqwest::Method::PUT, "/api/v1/rules/high_cpu", changed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get_json("/api/v1/rules/high_cpu").await["threshold"], 80.0);
    let (status, _) = send_json(&s, reqwest::Method::PUT, "/api/v1/rules/other", high_cpu()).await;
    assert_eq!(status, 400);
    let (status, _) = s.get_text("/api/v1/rules/missing").await;
    assert_eq!(status, 404);
    let (status, _) = s.get_text("/api/v1/alerts?state=burning").await;
    assert_eq!(status, 400);
    // Clients cannot pose as the server on its channels.
    for channel in ["alerts", "anomalies", "stats:cpu"] {
        let (status, body) = send_json(
            &s,
            reqwest::Method::POST,
            "/api/v1/publish",
            json!({"channel": channel, "data": {"state": "firing"}}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("bad_channel")),
            "{channel}: {body}"
        );
    }
}

#[tokio::test]
async fn a_firing_alert_survives_a_restart_with_its_since() {
    let mut cfg = test_config();
    cfg.analysis.anomaly.enabled = false;
    cfg.analysis.rules = vec![serde_json::from_value(high_cpu()).unwrap()];
    let s = TestServer::start(cfg.clone()).await;
    // A rule from the configuration file cannot be changed over the API.
    let (status, _) = send_json(&s, reqwest::Method::PUT, "/api/v1/rules/high_cpu", high_cpu()).await;
    assert_eq!(status, 409);
    assert_eq!(s.get_json("/api/v1/rules").await["rules"][0]["source"], "config");
    write(&s, &format!("cpu,host=web1 usage=99 {}\n", now_ms())).await;
    let before = s.get_json("/api/v1/alerts?state=firing").await;
    let since = before["alerts"][0]["since"].as_i64().expect("firing alert");
    let TestServer { server, .. } = s;
    server.shutdown();
    server.wait().await.unwrap();

    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = TestServer::start(cfg).await;
    let after = s.get_json("/api/v1/alerts?state=firing").await;
    assert_eq!(after["alerts"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["alerts"][0]["since"], since);
    assert_eq!(after["alerts"][0]["id"], before["alerts"][0]["id"]);
    // New points neither announce it again nor resolve it on a window that is still refilling
    // (the points before the restart are not in it).
    let mut ws = s.ws().await;
    ws.subscribe(1, &["alerts"]).await;
    write(
        &s,
        &format!(
            "cpu,host=web1 usage=99 {}
",
            now_ms()
        ),
    )
    .await;
    write(
        &s,
        &format!(
            "cpu,host=web1 usage=20 {}
",
            now_ms() + 1
        ),
    )
    .await;
    ws.expect_silence(Duration::from_millis(600)).await;
    let later = s.get_json("/api/v1/alerts?state=firing").await;
    assert_eq!(later["alerts"][0]["since"], since, "{later}");
}

type Got = Arc<Mutex<Vec<Value>>>;

async fn receive(State(got): State<Got>, body: axum::body::Bytes) -> axum::http::StatusCode {
    if let Ok(v) = serde_json::from_slice(&body) {
        got.lock().push(v);
    }
    axum::http::StatusCode::OK
}

#[tokio::test]
async fn silenced_alerts_are_not_notified_and_the_rest_reach_the_webhook() {
    let got: Got = Arc::default();
    let app = Router::new().route("/hook", post(receive)).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut cfg = test_config();
    cfg.analysis.anomaly.enabled = false;
    cfg.analysis.rules = vec![serde_json::from_value(high_cpu()).unwrap()];
    cfg.analysis.alerts.group_by = vec!["...".into()];
    cfg.analysis.alerts.group_wait = Duration::from_millis(100);
    cfg.analysis.alerts.tick = Duration::from_millis(50);
    cfg.analysis.notify.webhooks = vec![WebhookConfig {
        name: "ops".into(),
        url: hook,
        ..WebhookConfig::default()
    }];
    let s = TestServer::start(cfg).await;
    let (status, silence) = send_json(
        &s,
        reqwest::Method::POST,
        "/api/v1/silences",
        json!({
            "matchers": [{"name": "host", "op": "=", "value": "web2"}],
            "ends_at": now_ms() + 3_600_000,
            "created_by": "bob",
            "comment": "maintenance"
        }),
    )
    .await;
    assert_eq!(status, 201, "{silence}");
    let listed = s.get_json("/api/v1/silences").await;
    assert_eq!(listed["silences"][0]["active"], true);
    let t = now_ms();
    write(&s, &format!("cpu,host=web1 usage=97 {t}\ncpu,host=web2 usage=98 {t}\n")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.lock().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for a second (wrong) notification to arrive too, if one were sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let alerts = got[0]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{got:?}");
    assert_eq!(alerts[0]["labels"]["host"], "web1");
    assert_eq!(got[0]["status"], "firing");
    // Both alerts fire; only the notification is silenced.
    let firing = s.get_json("/api/v1/alerts?state=firing").await;
    assert_eq!(firing["alerts"].as_array().unwrap().len(), 2);
    let id = silence["id"].as_str().unwrap();
    let resp = s
        .http
        .delete(s.url(&format!("/api/v1/silences/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(s.get_json("/api/v1/silences").await["silences"][0]["active"], false);
}
