//! The slow-client policy: a client that stops reading is disconnected as a slow consumer while
//! fast clients on the same channel receive every publication.

use std::time::Duration;

use pulsewire_testkit::{TestServer, test_config};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_closed_and_fast_clients_get_everything() {
    let mut cfg = test_config();
    cfg.hub.queue.max_messages = 64;
    cfg.hub.queue.slow_timeout = Duration::from_millis(300);
    cfg.http.max_body_bytes = 1 << 20;
    let s = TestServer::start(cfg).await;

    let mut stalled = s.ws().await;
    stalled.subscribe(1, &["firehose"]).await;
    let stalled_id = s.get_json("/api/v1/clients").await["clients"][0]["id"].clone();

    const N: u64 = 600;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut ws = s.ws().await;
        ws.subscribe(1, &["firehose"]).await;
        readers.push(tokio::spawn(async move {
            let msgs = ws.messages(N as usize).await;
            (
                ws,
                msgs.iter().map(|m| m["offset"].as_u64().unwrap()).collect::<Vec<_>>(),
            )
        }));
    }
    // 600 x 32 KiB = ~19 MiB: far more than the stalled peer's socket buffers can take.
    let payload = "x".repeat(32 * 1024);
    for _ in 0..N {
        s.publish("firehose", json!(payload)).await;
    }
    let mut fast = Vec::new();
    for r in readers {
        let (ws, offsets) = r.await.unwrap();
        assert_eq!(
            offsets,
            (1..=N).collect::<Vec<_>>(),
            "a fast client missed or reordered something"
        );
        fast.push(ws);
    }
    let stats = s
        .wait_stats("the stalled client to be closed", |st| {
            st["slow_consumer_closes"] == 1 && st["connections"]["websocket"] == 3
        })
        .await;
    assert!(stats["dropped"]["queue_full"].as_u64().unwrap() > 0, "{stats}");
    // Every message owed to a subscriber was either written or counted as dropped.
    let dropped: u64 = ["queue_full", "closed", "unsubscribed"]
        .iter()
        .map(|r| stats["dropped"][r].as_u64().unwrap())
        .sum();
    assert_eq!(stats["delivered"].as_u64().unwrap() + dropped, 4 * N, "{stats}");
    let clients = s.get_json("/api/v1/clients").await;
    assert!(
        clients["clients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != stalled_id)
    );
    // The stalled client, reading at last, finds its connection ended.
    let (frames, _code) = stalled.recv_until_close().await;
    assert!(
        (frames.len() as u64) < N,
        "the stalled client cannot have received everything"
    );
    // The fast clients are still served.
    s.publish("firehose", json!("after")).await;
    for ws in &mut fast {
        assert_eq!(ws.recv().await["data"], "after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_sse_reader_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let mut cfg = test_config();
    cfg.http.tcp_user_timeout = Duration::from_secs(2);
    cfg.http.max_body_bytes = 1 << 20;
    cfg.hub.queue.slow_timeout = Duration::from_millis(300);
    let s = TestServer::start(cfg).await;
    // A raw HTTP client that asks for the stream and then never reads a byte.
    let mut stalled = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    stalled
        .write_all(b"GET /sse?channels=firehose HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    s.wait_stats("the SSE stream to open", |st| st["connections"]["sse"] == 1)
        .await;
    let mut fast = s.ws().await;
    fast.subscribe(1, &["firehose"]).await;
    let payload = "x".repeat(32 * 1024);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    // Keep publishing until the server gives up on the stalled reader.
    loop {
        s.publish("firehose", json!(payload)).await;
        sent += 1;
        fast.messages(1).await;
        let stats = s.get_json("/api/v1/stats").await;
        if stats["connections"]["sse"] == 0 {
            assert!(stats["dropped"]["queue_full"].as_u64().unwrap() > 0, "{stats}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled SSE reader still connected after {sent} publications: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(stalled);
}
