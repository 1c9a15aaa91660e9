//! History: the `history` command and endpoint, bounded by size and by time to live.

use pulsewire_hub::HistoryConfig;
use pulsewire_testkit::{TestServer, test_config};
use serde_json::json;
use std::time::Duration;

fn config() -> pulsewire_server::Config {
    let mut cfg = test_config();
    cfg.hub.namespaces.insert(
        "short".into(),
        HistoryConfig {
            size: 100,
            ttl: Duration::from_millis(700),
        },
    );
    cfg.hub.namespaces.insert(
        "tiny".into(),
        HistoryConfig {
            size: 3,
            ttl: Duration::from_secs(60),
        },
    );
    cfg
}

#[tokio::test]
async fn history_is_bounded_by_size() {
    let s = TestServer::start(config()).await;
    for i in 1..=10 {
        s.publish("tiny:x", json!(i)).await;
    }
    let mut ws = s.ws().await;
    let h = ws
        .request(json!({"type":"history","id":1,"channel":"tiny:x"}), &mut Vec::new())
        .await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["offset"], 10);
    let pubs = h["publications"].as_array().unwrap();
    assert_eq!(
        pubs.iter().map(|p| p["data"].as_i64().unwrap()).collect::<Vec<_>>(),
        [8, 9, 10]
    );
    assert!(pubs.iter().all(|p| p["type"] == "message" && p["channel"] == "tiny:x"));

    let h = ws
        .request(
            json!({"type":"history","id":2,"channel":"tiny:x","limit":2}),
            &mut Vec::new(),
        )
        .await;
    assert_eq!(h["publications"].as_array().unwrap().len(), 2);
    assert_eq!(h["publications"][1]["offset"], 10);

    let epoch = h["epoch"].clone();
    let h = ws
        .request(
            json!({"type":"history","id":3,"channel":"tiny:x","since":{"epoch":epoch,"offset":8}}),
            &mut Vec::new(),
        )
        .await;
    assert_eq!(h["recovered"], true);
    assert_eq!(h["publications"].as_array().unwrap().len(), 2);
    let h = ws
        .request(
            json!({"type":"history","id":4,"channel":"tiny:x","since":{"epoch":epoch,"offset":2}}),
            &mut Vec::new(),
        )
        .await;
    assert_eq!(h["recovered"], false);

    // The same over HTTP.
    let h = s.get_json("/api/v1/history?channel=tiny:x&limit=1").await;
    assert_eq!(h["publications"][0]["data"], 10);
    let (status, body) = s.get_text("/api/v1/history?channel=tiny:x&since_epoch=x").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn history_expires_after_ttl() {
    let s = TestServer::start(config()).await;
    let epoch = s.publish_position("short:x", json!(1)).await;
    s.publish("short:x", json!(2)).await;
    let h = s.get_json("/api/v1/history?channel=short:x").await;
    assert_eq!(h["publications"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let h = s.get_json("/api/v1/history?channel=short:x").await;
    assert_eq!(h["publications"].as_array().unwrap().len(), 0, "{h}");
    // Resuming from before the expired publications is not a recovery.
    let mut ws = s.ws().await;
    ws.send(json!({"type":"subscribe","id":1,"channels":["short:x"],"since":{"short:x":{"epoch":epoch,"offset":0}}}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["channels"]["short:x"]["recovered"], false, "{reply}");
}
