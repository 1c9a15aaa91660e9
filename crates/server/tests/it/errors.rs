//! Bad input: every malformed frame or request gets its documented error, and the server keeps
//! serving everyone else.

use pulsewire_testkit::{TestServer, test_config};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn recoverable_errors_keep_the_connection_open() {
    let s = TestServer::start_default().await;
    let mut ws = s.ws().await;
    let cases: &[(&str, Option<u64>, &str)] = &[
        ("{not json", None, "bad_json"),
        (r#"{"type":"dance","id":3}"#, Some(3), "unknown_type"),
        (r#"{"id":4}"#, Some(4), "unknown_type"),
        (
            r#"{"type":"subscribe","id":5,"channels":["bad channel"]}"#,
            Some(5),
            "bad_channel",
        ),
        (
            r#"{"type":"subscribe","id":6,"channels":["a:*x"]}"#,
            Some(6),
            "bad_channel",
        ),
        (r#"{"type":"subscribe","id":7}"#, Some(7), "bad_request"),
        (r#"{"type":"publish","id":8,"channel":"a"}"#, Some(8), "bad_request"),
        (
            r#"{"type":"publish","id":9,"channel":"a:*","data":1}"#,
            Some(9),
            "bad_channel",
        ),
        (
            r#"{"type":"subscribe","id":10,"channels":["p:*"],"since":{"p:*":{"epoch":"e","offset":1}}}"#,
            Some(10),
            "bad_request",
        ),
        // Valid JSON of the wrong type is a bad request, not bad JSON; an escaped `type` is the
        // same type.
        (
            r#"{"type":"publish","id":11,"channel":"a","data":1,"priority":9}"#,
            Some(11),
            "bad_request",
        ),
        (
            r#"{"type":"subscrib\u0065","id":12,"channels":["bad channel"]}"#,
            Some(12),
            "bad_channel",
        ),
    ];
    for (frame, id, code) in cases {
        ws.send_raw(Message::text(*frame)).await;
        let err = ws.recv().await;
        assert_eq!(err["type"], "error", "{frame}: {err}");
        assert_eq!(err["code"], *code, "{frame}: {err}");
        assert_eq!(err.get("id").and_then(|v| v.as_u64()), *id, "{frame}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still subscribed to nothing, and fully usable.
    ws.subscribe(11, &["a"]).await;
    let dup = ws
        .request(json!({"type":"subscribe","id":12,"channels":["a"]}), &mut Vec::new())
        .await;
    assert_eq!(dup["code"], "already_subscribed");
    s.publish("a", json!(1)).await;
    assert_eq!(ws.recv().await["data"], 1);
}

#[tokio::test]
async fn fatal_errors_close_with_documented_codes() {
    let mut cfg = test_config();
    cfg.websocket.max_frame_bytes = 1024;
    let s = TestServer::start(cfg).await;
    let mut bystander = s.ws().await;
    bystander.subscribe(1, &["a"]).await;

    let mut big = s.ws().await;
    big.send_raw(Message::text(format!(
        r#"{{"type":"publish","channel":"a","data":"{}"}}"#,
        "x".repeat(2000)
    )))
    .await;
    let (frames, code) = big.recv_until_close().await;
    assert_eq!(code, Some(4009));
    assert_eq!(frames.last().map(|f| f["code"].clone()), Some(json!("frame_too_large")));

    // Far above the limit (over 16x) the transport's backstop cuts the frame off unread: the
    // connection is dropped; the client sees 4009 or, as its unread bytes are discarded, a reset.
    let mut huge = s.ws().await;
    huge.send_raw(Message::text("x".repeat(64 * 1024))).await;
    let (frames, code) = huge.recv_until_close().await;
    assert!(code == Some(4009) || code.is_none(), "{code:?}");
    assert!(frames.iter().all(|f| f["type"] == "error"), "{frames:?}");

    let mut bin = s.ws().await;
    bin.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let (frames, code) = bin.recv_until_close().await;
    assert_eq!(code, Some(4003));
    assert_eq!(
        frames.last().map(|f| f["code"].clone()),
        Some(json!("binary_unsupported"))
    );

    // Nothing of that was published, and the bystander is still served.
    s.publish("a", json!("after")).await;
    let m = bystander.recv().await;
    assert_eq!((m["data"].as_str(), m["offset"].as_u64()), (Some("after"), Some(1)));
}

#[tokio::test]
async fn http_errors_are_specific() {
    let mut cfg = test_config();
    cfg.http.max_body_bytes = 512;
    let s = TestServer::start(cfg).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/api/v1/publish", "{oops", 400, "bad_json"),
        ("/api/v1/publish", r#"{"channel":"a"}"#, 400, "bad_request"),
        (
            "/api/v1/publish",
            r#"{"channel":"a","data":1,"priority":"urgent"}"#,
            400,
            "bad_request",
        ),
        (
            "/api/v1/publish",
            r#"{"channel":"a","data":1,"priority":9}"#,
            400,
            "bad_request",
        ),
        ("/api/v1/publish", r#"{"channel":"a b","data":1}"#, 400, "bad_channel"),
        ("/api/v1/broadcast", r#"{"channels":[],"data":1}"#, 400, "bad_request"),
    ];
    for (path, body, status, code) in cases {
        let (got, json) = s.post(path, body).await;
        assert_eq!((got, json["code"].as_str()), (*status, Some(*code)), "{body}: {json}");
    }
    let big = format!(r#"{{"channel":"a","data":"{}"}}"#, "x".repeat(1000));
    let (status, json) = s.post("/api/v1/publish", &big).await;
    assert_eq!((status, json["code"].as_str()), (413, Some("frame_too_large")));
    // Nothing was published by any of them.
    let stats = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["publications"], 0);
}
