//! The operations endpoints report exactly what happened.

use pulsewire_testkit::TestServer;
use serde_json::json;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_match_what_happened() {
    let s = TestServer::start_default().await;
    let mut ws = Vec::new();
    for _ in 0..3 {
        let mut c = s.ws().await;
        c.subscribe(1, &["counted", "other"]).await;
        ws.push(c);
    }
    let mut sse1 = s.sse("channels=counted", None).await;
    let mut sse2 = s.sse("channels=counted,a:*", None).await;
    sse1.recv().await;
    sse2.recv().await;
    for i in 0..10 {
        s.publish("counted", json!(i)).await;
    }
    for c in &mut ws {
        c.messages(10).await;
    }
    sse1.messages(10).await;
    sse2.messages(10).await;

    let stats = s.wait_stats("all deliveries counted", |st| st["delivered"] == 50).await;
    assert_eq!(stats["connections"], json!({"websocket": 3, "sse": 2, "total": 5}));
    assert_eq!(stats["publications"], 10);
    assert_eq!(stats["subscriptions"], 3 * 2 + 1 + 2);
    assert_eq!(stats["channels"], 2, "counted and other have subscribers");
    assert_eq!(
        stats["dropped"],
        json!({"queue_full": 0, "closed": 0, "unsubscribed": 0})
    );

    let (status, text) = s.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "pulsewire_publications_total"), 10.0);
    assert_eq!(metric(&text, "pulsewire_messages_delivered_total"), 50.0);
    assert_eq!(metric(&text, "pulsewire_connections{transport=\"websocket\"}"), 3.0);
    assert_eq!(metric(&text, "pulsewire_connections{transport=\"sse\"}"), 2.0);
    assert_eq!(metric(&text, "pulsewire_subscriptions"), 9.0);
    assert!(metric(&text, "pulsewire_publish_to_write_seconds_count") >= 1.0);

    // A channel with history but nobody subscribed is listed too.
    s.publish("unwatched", json!(1)).await;
    s.publish("unwatched", json!(2)).await;
    let channels = s.get_json("/api/v1/channels").await;
    let channel = |name: &str| {
        channels["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    let unwatched = channel("unwatched");
    assert_eq!(
        (
            unwatched["subscribers"].as_u64(),
            unwatched["history_size"].as_u64(),
            unwatched["offset"].as_u64()
        ),
        (Some(0), Some(2), Some(2))
    );
    let counted = channel("counted");
    assert_eq!(
        (
            counted["subscribers"].as_u64(),
            counted["offset"].as_u64(),
            counted["history_size"].as_u64()
        ),
        (Some(5), Some(10), Some(10))
    );

    let clients = s.get_json("/api/v1/clients").await["clients"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(clients.len(), 5);
    assert_eq!(clients.iter().filter(|c| c["transport"] == "sse").count(), 2);
    assert!(
        clients
            .iter()
            .all(|c| c["remote_addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")))
    );
    let with_pattern = clients
        .iter()
        .find(|c| c["subscriptions"] == json!(["a:*", "counted"]))
        .expect("sse2 listed");
    assert_eq!(with_pattern["delivered"], 10);

    // Closing connections is counted too.
    drop(ws.pop());
    drop(sse1);
    let stats = s
        .wait_stats("two connections closed", |st| st["connections"]["total"] == 3)
        .await;
    assert_eq!(stats["subscriptions"], 2 * 2 + 2);
    let (_, text) = s.get_text("/metrics").await;
    assert_eq!(
        metric(&text, "pulsewire_connections_closed_total{transport=\"websocket\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "pulsewire_connections_opened_total{transport=\"websocket\"}"),
        3.0
    );
    assert_eq!(
        metric(&text, "pulsewire_connections_closed_total{transport=\"sse\"}"),
        1.0
    );

    let health = s.get_json("/health").await;
    assert_eq!(health["status"], "pass");
    let (status, _) = s.get_text("/ping").await;
    assert_eq!(status, 204);
    let ready = s.get_json("/ready").await;
    assert_eq!(ready["status"], "ready");
}
