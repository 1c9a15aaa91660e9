//! Heartbeats and graceful shutdown.

use std::time::{Duration, Instant};

use pulsewire_testkit::{TestServer, WsEvent, test_config};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_closed_after_heartbeat_timeout() {
    let mut cfg = test_config();
    cfg.websocket.ping_interval = Duration::from_millis(100);
    cfg.websocket.pong_timeout = Duration::from_millis(200);
    let s = TestServer::start(cfg).await;
    let mut silent = s.ws().await;
    silent.subscribe(1, &["hb"]).await;
    let mut alive = s.ws().await;
    alive.subscribe(1, &["hb"]).await;
    // `alive` keeps reading (which answers pings); `silent` is not polled at all.
    let reader = tokio::spawn(async move {
        alive.expect_silence(Duration::from_millis(1500)).await;
        alive
    });
    s.wait_stats("the heartbeat timeout", |st| {
        st["heartbeat_timeouts"] == 1 && st["connections"]["websocket"] == 1
    })
    .await;
    let mut alive = reader.await.unwrap();
    let stats = s.get_json("/api/v1/stats").await;
    assert_eq!(
        (
            stats["heartbeat_timeouts"].as_u64(),
            stats["connections"]["websocket"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // Reading at last, the silent peer finds its connection closed: with the 4005 close frame,
    // or, when its client library first tries to answer the queued pings on the dead socket,
    // with a write error.
    match silent.next_event().await {
        Ok(WsEvent::Closed(Some((code, _)))) => assert_eq!(code, 4005),
        Ok(WsEvent::Closed(None)) | Err(_) => {}
        Ok(WsEvent::Frame(f)) => panic!("expected the connection closed, got {f}"),
    }
    s.publish("hb", json!(1)).await;
    assert_eq!(alive.recv().await["data"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_and_closes_in_batches() {
    let mut cfg = test_config();
    cfg.shutdown.batch_size = 2;
    cfg.shutdown.batch_interval = Duration::from_millis(250);
    let s = TestServer::start(cfg).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut ws = s.ws().await;
        ws.subscribe(1, &["bye"]).await;
        clients.push(ws);
    }
    let mut sse = s.sse("channels=bye", None).await;
    assert_eq!(sse.recv().await.event, "subscribed");
    for i in 0..20 {
        s.publish("bye", json!(i)).await;
    }
    let started = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let (frames, code) = ws.recv_until_close().await;
                (frames.len(), code, started.elapsed())
            })
        })
        .collect();
    let addr = s.addr();
    let TestServer { server, .. } = s;
    server.shutdown();
    let events = sse.until_end().await.expect("sse stream ends");
    assert_eq!(events.iter().filter(|e| e.event == "message").count(), 20);
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), last.data["code"].as_u64()), ("close", Some(4010)));
    let mut times = Vec::new();
    for h in handles {
        let (n, code, at) = h.await.unwrap();
        assert_eq!(n, 20, "every queued message is flushed before the close");
        assert_eq!(code, Some(4010));
        times.push(at);
    }
    times.sort();
    // 5 clients in batches of 2, 250 ms apart: the last batch goes at least ~500 ms after the first.
    assert!(times[4] - times[0] >= Duration::from_millis(400), "{times:?}");
    tokio::time::timeout(Duration::from_secs(5), server.wait())
        .await
        .expect("bounded shutdown")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
