//! Resume after a dropped connection: exact no-loss, no-duplicate checks over WebSocket and
//! SSE, including publications racing the resubscribe; and `recovered: false` when it cannot be.

use pulsewire_hub::HistoryConfig;
use pulsewire_testkit::{TestServer, test_config};
use serde_json::{Value, json};
use std::time::Duration;

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["offset"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn websocket_resume_is_exact_while_publishing_races() {
    let s = TestServer::start_default().await;
    let mut ws = s.ws().await;
    let reply = ws.subscribe(1, &["r"]).await;
    let epoch = reply["channels"]["r"]["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        s.publish("r", json!(i)).await;
    }
    let seen = ws.messages(3).await;
    assert_eq!(offsets(&seen), [1, 2, 3]);
    drop(ws);
    for i in 4..=7 {
        s.publish("r", json!(i)).await;
    }

    // Resubscribe while another task keeps publishing: replay and live must meet exactly.
    let publisher = {
        let http = s.http.clone();
        let url = s.url("/api/v1/publish");
        tokio::spawn(async move {
            for i in 8..=207 {
                let r = http
                    .post(&url)
                    .body(json!({"channel":"r","data":i}).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        })
    };
    let mut ws = s.ws().await;
    ws.send(json!({"type":"subscribe","id":2,"channels":["r"],"since":{"r":{"epoch":epoch,"offset":3}}}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channels"]["r"]["recovered"], true, "{reply}");
    assert!(reply["channels"]["r"]["replayed"].as_u64().unwrap() >= 4);
    publisher.await.unwrap();
    let rest = ws.messages(204).await;
    assert_eq!(
        offsets(&rest),
        (4..=207).collect::<Vec<u64>>(),
        "no gap, no duplicate, in order"
    );
    assert_eq!(rest[0]["data"], 4);
    ws.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn resume_beyond_history_or_epoch_is_not_recovered() {
    let epoch = "E";
    let cases = [
        (json!({"epoch": epoch, "offset": 2}), false, 0),  // trimmed away
        (json!({"epoch": epoch, "offset": 14}), false, 0), // 15 is gone too (kept: 16..=20)
        (json!({"epoch": epoch, "offset": 15}), true, 5),  // exactly what is kept
        (json!({"epoch": epoch, "offset": 20}), true, 0),  // up to date
        (json!({"epoch": epoch, "offset": 21}), false, 0), // from the future
        (json!({"epoch": "other", "offset": 18}), false, 0),
    ];
    for (i, (since, recovered, replayed)) in cases.into_iter().enumerate() {
        // Each case runs on a fresh server state: re-create the channel's history as 1..=20.
        let s = TestServer::start({
            let mut cfg = test_config();
            cfg.hub.namespaces.insert(
                "small".into(),
                HistoryConfig {
                    size: 5,
                    ttl: Duration::from_secs(60),
                },
            );
            cfg
        })
        .await;
        let epoch = s.publish_position("small:c", json!(0)).await;
        for i in 2..=20 {
            s.publish("small:c", json!(i)).await;
        }
        let since = if since["epoch"] == "E" {
            json!({"epoch": epoch, "offset": since["offset"]})
        } else {
            since
        };
        let mut ws = s.ws().await;
        ws.send(json!({"type":"subscribe","id":i,"channels":["small:c"],"since":{"small:c":since}}))
            .await;
        let reply = ws.recv().await;
        let ch = &reply["channels"]["small:c"];
        assert_eq!(
            (ch["recovered"].as_bool(), ch["replayed"].as_u64()),
            (Some(recovered), Some(replayed)),
            "case {i}: {reply}"
        );
        assert_eq!(ch["offset"], 20);
        let replay = ws.messages(replayed as usize).await;
        assert_eq!(offsets(&replay), ((21 - replayed)..=20).collect::<Vec<_>>());
        s.publish("small:c", json!("live")).await;
        let live = ws.recv().await;
        assert_eq!(live["data"], "live", "case {i}");
    }
}

#[tokio::test]
async fn sse_resume_with_last_event_id() {
    let s = TestServer::start_default().await;
    let mut sse = s.sse("channels=b,a", None).await;
    let opened = sse.recv().await;
    assert_eq!(opened.event, "subscribed");
    s.publish("a", json!(1)).await;
    s.publish("b", json!(1)).await;
    s.publish("a", json!(2)).await;
    let seen = sse.messages(3).await;
    let last_id = seen[2].id.clone();
    drop(sse);
    s.publish("b", json!(2)).await;
    s.publish("a", json!(3)).await;
    s.publish("b", json!(3)).await;

    let mut again = s.sse("channels=a,b", Some(&last_id)).await;
    let opened = again.recv().await;
    assert_eq!(opened.event, "subscribed");
    assert_eq!(opened.data["channels"]["a"]["recovered"], true, "{:?}", opened.data);
    assert_eq!(opened.data["channels"]["b"]["recovered"], true);
    let replay = again.messages(3).await;
    let got: Vec<(String, u64)> = replay
        .iter()
        .map(|e| {
            (
                e.data["channel"].as_str().unwrap().to_owned(),
                e.data["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    // Per channel in order, nothing missing, nothing repeated.
    let a: Vec<u64> = got.iter().filter(|g| g.0 == "a").map(|g| g.1).collect();
    let b: Vec<u64> = got.iter().filter(|g| g.0 == "b").map(|g| g.1).collect();
    assert_eq!((a, b), (vec![3], vec![2, 3]));
    // Live continues after the replay, and the resume id tracks both channels.
    s.publish("a", json!(4)).await;
    let live = again.recv().await;
    assert_eq!(live.data["offset"], 4);
    let b_pos = &opened.data["channels"]["b"]["epoch"];
    assert!(
        live.id.ends_with(&format!("{}-3", b_pos.as_str().unwrap())),
        "{}",
        live.id
    );

    // First connection with the query parameter instead of the header.
    let mut q = s.sse(&format!("channels=a,b&last_event_id={}", live.id), None).await;
    let opened = q.recv().await;
    assert_eq!(opened.data["channels"]["a"]["recovered"], true);
    assert_eq!(opened.data["channels"]["a"]["replayed"], 0);

    // A garbage id says it could not recover.
    let mut g = s.sse("channels=a,b", Some("v1.nonsense")).await;
    let opened = g.recv().await;
    assert_eq!(opened.data["channels"]["a"]["recovered"], false);
    assert_eq!(opened.data["channels"]["b"]["recovered"], false);
}

#[tokio::test]
async fn a_restart_changes_the_epoch_so_old_positions_never_match() {
    let first = TestServer::start_default().await;
    let epoch = first.publish_position("r", json!(1)).await;
    first.publish("r", json!(2)).await;
    let TestServer { server, .. } = first;
    server.shutdown();
    server.wait().await.unwrap();

    // History was in memory: the channel starts again at offset 1, under a new epoch.
    let second = TestServer::start_default().await;
    let new_epoch = second.publish_position("r", json!("again")).await;
    assert_ne!(new_epoch, epoch);
    let mut ws = second.ws().await;
    ws.send(json!({"type":"subscribe","id":1,"channels":["r"],"since":{"r":{"epoch":epoch,"offset":1}}}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["channels"]["r"]["recovered"], false, "{reply}");
    assert_eq!(reply["channels"]["r"]["epoch"], new_epoch.as_str());
}
