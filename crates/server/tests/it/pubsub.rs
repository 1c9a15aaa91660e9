//! Subscribe, publish and unsubscribe over WebSocket and HTTP; patterns; broadcast.

use pulsewire_testkit::TestServer;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn subscribe_publish_unsubscribe() {
    let s = TestServer::start_default().await;
    let mut a = s.ws().await;
    let mut b = s.ws().await;
    let reply = a.subscribe(1, &["news", "metrics:host1:cpu"]).await;
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["channels"]["news"]["offset"], 0);
    assert!(
        reply["channels"]["news"]["epoch"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert!(
        reply["channels"]["news"].get("recovered").is_none(),
        "no since, no recovered: {reply}"
    );
    b.subscribe(7, &["news"]).await;

    // Publish over HTTP.
    assert_eq!(s.publish("news", json!({"n": 1})).await, 1);
    // Publish over WebSocket, with a reply carrying the id.
    let mut aside = Vec::new();
    let reply = b
        .request(
            json!({"type":"publish","id":8,"channel":"news","data":{"n":2},"priority":"high"}),
            &mut aside,
        )
        .await;
    assert_eq!(reply["type"], "published");
    assert_eq!(reply["offset"], 2);

    let got = a.messages(2).await;
    assert_eq!(got[0]["channel"], "news");
    assert_eq!(got[0]["offset"], 1);
    assert_eq!(got[0]["data"], json!({"n": 1}));
    assert!(got[0]["ts"].as_u64().is_some());
    assert_eq!(got[1]["offset"], 2);
    assert_eq!(got[1]["priority"], "high");
    assert_eq!(got[0]["epoch"], reply["epoch"]);
    // b saw its own publication too (it may have arrived before the reply).
    let mut b_msgs: Vec<_> = aside.into_iter().filter(|f| f["type"] == "message").collect();
    if b_msgs.len() < 2 {
        b_msgs.extend(b.messages(2 - b_msgs.len()).await);
    }
    assert_eq!(
        b_msgs.iter().map(|m| m["offset"].as_u64().unwrap()).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // Unsubscribe stops delivery to a only.
    let reply = a
        .request(
            json!({"type":"unsubscribe","id":2,"channels":["news"]}),
            &mut Vec::new(),
        )
        .await;
    assert_eq!(reply["type"], "unsubscribed");
    s.publish("news", json!(3)).await;
    s.publish("metrics:host1:cpu", json!(4)).await;
    let m = a.recv().await;
    assert_eq!(
        (m["channel"].as_str(), m["data"].as_i64()),
        (Some("metrics:host1:cpu"), Some(4))
    );
    assert_eq!(b.recv().await["data"], 3);
    a.expect_silence(Duration::from_millis(200)).await;

    // Ping is answered with pong and the same id.
    let pong = a.request(json!({"type":"ping","id":99}), &mut Vec::new()).await;
    assert_eq!(pong, json!({"type":"pong","id":99}));
}

#[tokio::test]
async fn pattern_subscriptions_name_the_pattern() {
    let s = TestServer::start_default().await;
    let mut ws = s.ws().await;
    let reply = ws.subscribe(1, &["metrics:*:cpu", "logs:>"]).await;
    assert!(reply["channels"]["metrics:*:cpu"].is_object());
    for (ch, should) in [
        ("metrics:host1:cpu", true),
        ("metrics:host1:mem", false),
        ("metrics:host1:cpu:x", false),
        ("logs:a", true),
        ("logs:a:b:c", true),
        ("logs", false),
    ] {
        s.publish(ch, json!(ch)).await;
        if should {
            let m = ws.recv().await;
            assert_eq!(m["channel"], ch);
            let want = if ch.starts_with("logs") {
                "logs:>"
            } else {
                "metrics:*:cpu"
            };
            assert_eq!(m["pattern"], want, "{m}");
        }
    }
    ws.expect_silence(Duration::from_millis(200)).await;
    // A client subscribed to both a channel and a matching pattern gets one frame per subscription.
    let mut both = s.ws().await;
    both.subscribe(1, &["logs:x", "logs:>"]).await;
    s.publish("logs:x", json!(1)).await;
    let two = both.messages(2).await;
    let patterns: Vec<_> = two.iter().map(|m| m.get("pattern").cloned()).collect();
    assert!(
        patterns.contains(&None) && patterns.contains(&Some(json!("logs:>"))),
        "{two:?}"
    );
}

#[tokio::test]
async fn broadcast_publishes_to_every_channel() {
    let s = TestServer::start_default().await;
    let mut ws = s.ws().await;
    ws.subscribe(1, &["a", "b"]).await;
    let (status, body) = s
        .post("/api/v1/broadcast", r#"{"channels":["a","b"],"data":{"v":1}}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["channel"], "a");
    assert_eq!(body["results"][1]["offset"], 1);
    let got = ws.messages(2).await;
    let mut chans: Vec<_> = got.iter().map(|m| m["channel"].as_str().unwrap().to_owned()).collect();
    chans.sort();
    assert_eq!(chans, ["a", "b"]);
    // One bad name refuses the whole broadcast: nothing is published.
    let (status, body) = s
        .post("/api/v1/broadcast", r#"{"channels":["a","b c"],"data":1}"#)
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_channel")));
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn sse_receives_publications() {
    let s = TestServer::start_default().await;
    let mut sse = s.sse("channels=a,b", None).await;
    let first = sse.recv().await;
    assert_eq!(first.event, "subscribed");
    assert!(first.data["channels"]["a"]["epoch"].is_string());
    s.publish("a", json!({"x": 1})).await;
    s.publish("b", json!({"x": 2})).await;
    let got = sse.messages(2).await;
    assert_eq!(got[0].data["channel"], "a");
    assert_eq!(got[0].data["type"], "message");
    assert_eq!(got[1].data["data"], json!({"x": 2}));
    assert!(got[1].id.starts_with("v1."), "{}", got[1].id);
    assert_ne!(got[0].id, got[1].id);
}

#[tokio::test]
async fn sse_sends_retry_and_heartbeat_comments() {
    use futures_util::StreamExt;
    let mut cfg = pulsewire_testkit::test_config();
    cfg.sse.heartbeat = Duration::from_millis(100);
    cfg.sse.retry = Duration::from_millis(1500);
    let s = TestServer::start(cfg).await;
    let resp = s.http.get(s.url("/sse?channels=quiet")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while text.matches(": ping\n\n").count() < 2 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("heartbeats arrive")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("retry: 1500\n\n"), "{text}");
    assert!(text.contains("event: subscribed\n"), "{text}");
}

#[tokio::test]
async fn pretty_printed_payloads_stay_one_sse_event() {
    let s = TestServer::start_default().await;
    let mut sse = s.sse("channels=p", None).await;
    sse.recv().await;
    let pretty = "{\n  \"text\": \"line1\\nline2\",\n  \"n\": [1,\n 2]\n}";
    let (status, body) = s
        .post("/api/v1/publish", &format!(r#"{{"channel":"p","data":{pretty}}}"#))
        .await;
    assert_eq!(status, 200, "{body}");
    let ev = sse.recv().await;
    assert_eq!(ev.data["data"], json!({"text": "line1\nline2", "n": [1, 2]}));
}
