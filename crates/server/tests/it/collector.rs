//! The host collector: this machine's figures reach the store and the live channels.

use std::time::Duration;

use pulsewire_testkit::{TestServer, WAIT, test_config};
use serde_json::Value;

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[tokio::test]
async fn the_host_collector_records_cpu_memory_load_disk_and_network() {
    let mut cfg = test_config();
    cfg.collector.enabled = true;
    cfg.collector.interval = Duration::from_millis(200);
    cfg.ingest.live_window = Duration::from_millis(50);
    let s = TestServer::start(cfg).await;
    let mut ws = s.ws().await;
    ws.subscribe(1, &["metrics:cpu"]).await;
    // CPU shares need two readings: the first live message comes with the second.
    let m = tokio::time::timeout(WAIT, ws.recv()).await.expect("a live cpu message");
    assert_eq!(m["channel"], "metrics:cpu");
    let points = m["data"]["points"].as_array().expect("points");
    let total = points
        .iter()
        .find(|p| p["tags"]["cpu"] == "cpu-total")
        .expect("a cpu-total point");
    assert_eq!(total["tags"]["host"], host().as_str());
    let idle = total["fields"]["usage_idle"].as_f64().expect("usage_idle");
    let active = total["fields"]["usage_active"].as_f64().expect("usage_active");
    assert!(
        (0.0..=100.0).contains(&idle) && (0.0..=100.0).contains(&active),
        "{total}"
    );
    assert!(
        points.iter().any(|p| p["tags"]["cpu"] == "cpu0"),
        "per-core points: {points:?}"
    );

    // Stored: every measurement is queryable, with the documented fields.
    let deadline = tokio::time::Instant::now() + WAIT;
    let wanted = [
        ("mem.used_percent", ""),
        ("system.load1", ""),
        ("cpu.usage_user", "cpu-total"),
        ("net.bytes_recv_per_sec", ""),
        ("diskio.write_bytes", ""),
    ];
    for (selector, cpu) in wanted {
        loop {
            let q = format!("/api/v1/query?q={selector}&from=0&to=9999999999999");
            let v: Value = s.get_json(&q).await;
            let series = v["series"].as_array().cloned().unwrap_or_default();
            let found = series
                .iter()
                .filter(|x| cpu.is_empty() || x["tags"]["cpu"] == cpu)
                .any(|x| x["points"].as_array().is_some_and(|p| !p.is_empty()));
            // A machine without block devices in /proc/diskstats has no diskio series.
            let optional = selector.starts_with("diskio")
                && std::fs::read_to_string("/proc/diskstats").is_ok_and(|d| d.trim().is_empty());
            if found || optional {
                if let Some(x) = series.first() {
                    assert_eq!(x["tags"]["host"], host().as_str(), "{selector}: {x}");
                }
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{selector}: no points in {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let v: Value = s
        .get_json("/api/v1/query?q=mem.used_percent&from=0&to=9999999999999")
        .await;
    let used = v["series"][0]["points"][0][1].as_f64().expect("a value");
    assert!(used > 0.0 && used < 100.0, "{v}");
}

#[tokio::test]
async fn the_host_collector_can_be_turned_off() {
    // test_config() turns it off, as `collector.enabled = false` does.
    let s = TestServer::start(test_config()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v: Value = s.get_json("/api/v1/series?q=cpu").await;
    assert_eq!(v["series"].as_array().map(Vec::len), Some(0), "{v}");
}
