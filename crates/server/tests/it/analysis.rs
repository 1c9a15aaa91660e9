//! Live analysis over real HTTP and WebSocket: ingested points are scored as they arrive, an
//! anomaly is pushed on `anomalies` and its score is kept in the store beside the sample.

use pulsewire_testkit::{TestServer, WAIT};
use serde_json::Value;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A steady series with a little noise: `n` points one second apart ending before `end`.
fn steady(host: &str, n: i64, end: i64) -> String {
    (0..n)
        .map(|i| {
            let noise = ((i * 7919) % 13) as f64 / 10.0;
            format!("cpu,host={host} usage={} {}\n", 50.0 + noise, end - (n - i) * 1000)
        })
        .collect()
}

#[tokio::test]
async fn a_spike_is_pushed_on_anomalies_and_its_score_is_stored() {
    let mut cfg = pulsewire_testkit::test_config();
    // Score series are the server's, not the client's: the client's series limits leave them be.
    cfg.tsdb.limits.max_new_series_per_minute = 1;
    cfg.tsdb.limits.max_series_per_database = 1;
    let s = TestServer::start(cfg).await;
    let mut ws = s.ws().await;
    ws.subscribe(1, &["anomalies"]).await;
    let spike_at = now_ms() - 1000;
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .body(steady("a", 300, spike_at))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    // Nothing in the steady part is an anomaly (the detector's warm-up, then ordinary noise).
    ws.expect_silence(std::time::Duration::from_millis(300)).await;
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .body(format!("cpu,host=a usage=500 {spike_at}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let m = tokio::time::timeout(WAIT, ws.recv()).await.expect("anomaly event");
    assert_eq!(m["channel"], "anomalies");
    let ev = &m["data"];
    assert_eq!(
        (&ev["measurement"], &ev["field"], &ev["tags"]["host"], &ev["db"]),
        (
            &Value::from("cpu"),
            &Value::from("usage"),
            &Value::from("a"),
            &Value::from("d")
        )
    );
    assert_eq!(ev["ts"], spike_at);
    assert_eq!(ev["value"], 500.0);
    assert_eq!(ev["detector"], "surprise");
    assert!(ev["score"].as_f64().unwrap() >= 0.9, "{ev}");
    let (low, high) = (
        ev["expected"]["low"].as_f64().unwrap(),
        ev["expected"]["high"].as_f64().unwrap(),
    );
    assert!(low <= 50.0 && (51.0..500.0).contains(&high), "{ev}");

    // The score is kept beside the sample and queryable.
    let q = format!(
        "/api/v1/query?q=cpu%3Aanomaly.usage%7Bhost%3D%22a%22%7D&from={}&to={}",
        spike_at - 400_000,
        spike_at + 1
    );
    let v = s.get_json(&q).await;
    let points = v["series"][0]["points"].as_array().cloned().unwrap_or_default();
    let last = points.last().expect("stored scores");
    assert_eq!(last[0], spike_at);
    assert!(last[1].as_f64().unwrap() >= 0.9);
    // Only scores worth keeping are stored: far fewer than the points.
    assert!(points.len() < 100, "{} scores stored", points.len());

    // Overviews show what the source wrote, not the derived scores.
    let v = s.get_json("/api/v1/metrics/realtime/a?range=1h").await;
    let measurements: Vec<&str> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["measurement"].as_str().unwrap())
        .collect();
    assert_eq!(measurements, ["cpu"]);
    let stats = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["analysis"]["points_scored"], 301);
    assert_eq!(stats["analysis"]["anomalies"], 1);
    assert_eq!(stats["analysis"]["series_watched"], 1);
}

#[tokio::test]
async fn analysis_can_be_turned_off() {
    let mut cfg = pulsewire_testkit::test_config();
    cfg.analysis.anomaly.enabled = false;
    let s = TestServer::start(cfg).await;
    let t = now_ms() - 1000;
    let body = format!("{}cpu,host=a usage=500 {t}\n", steady("a", 300, t));
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let stats = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["analysis"]["points_scored"], 0);
    let v = s.get_json("/api/v1/series?q=cpu%3Aanomaly").await;
    assert_eq!(v["series"].as_array().map(Vec::len), Some(0), "{v}");
}
