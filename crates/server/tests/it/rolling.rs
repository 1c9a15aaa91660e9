//! Rolling statistics over real HTTP and WebSocket: points written through `/write` just before
//! now, their window statistics from `/api/v1/metrics/statistics` and `/summary` compared with
//! values computed here, the parameter errors, and the `stats:<measurement>` publications that
//! are computed only while someone subscribes.

use std::time::Duration;

use pulsewire_testkit::{TestServer, WAIT, test_config};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn write(s: &TestServer, body: &str) {
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await.unwrap());
}

/// What the server should answer for `points` (ascending by time) over a window of `window_s`.
fn expected(points: &[(i64, f64)], window_s: f64) -> Value {
    if points.is_empty() {
        return json!({"count":0,"min":null,"max":null,"avg":null,"median":null,"stddev":null,"p95":null,"p99":null,"rate":null,"last":null});
    }
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let n = values.len() as f64;
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let rank = |q: f64| sorted[(q * (n - 1.0)).floor() as usize];
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let increase: f64 = values
        .windows(2)
        .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
        .sum();
    let last = points[points.len() - 1];
    json!({
        "count": values.len(),
        "min": sorted[0],
        "max": sorted[sorted.len() - 1],
        "avg": mean,
        "median": rank(0.5),
        "stddev": var.sqrt(),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "rate": increase / window_s,
        "last": [last.0, last.1],
    })
}

/// Equal, numbers within a relative 1e-9 (the server sums in another order).
fn assert_stats(got: &Value, want: &Value, what: &str) {
    let (Some(g), Some(w)) = (got.as_object(), want.as_object()) else {
        panic!("{what}: {got} vs {want}");
    };
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{what}: {got}"
    );
    for (k, wv) in w {
        let gv = &g[k];
        match (gv.as_f64(), wv.as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}.{k}: {a} vs {b}"),
            _ => assert_eq!(gv, wv, "{what}.{k}"),
        }
    }
}

fn series<'a>(answer: &'a Value, field: &str, host: &str) -> &'a Value {
    answer["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["field"] == field && s["tags"]["host"] == host)
        .unwrap_or_else(|| panic!("no {field} of {host} in {answer}"))
}

/// Points of a gauge in the last minute, more between 5 and 1 minutes ago, a counter with a
/// reset in the last minute, and a series whose only point is half an hour old.
struct Written {
    now: i64,
    gauge: Vec<(i64, f64)>,
    counter: Vec<(i64, f64)>,
}

async fn write_points(s: &TestServer) -> Written {
    let now = now_ms();
    let mut gauge: Vec<(i64, f64)> = (0..40)
        .map(|i| (now - 290_000 + i * 5_000, f64::from((i * 13 % 17) as i32) - 3.5))
        .collect();
    gauge.extend((0..50).map(|i| (now - 55_000 + i * 1_000, f64::from((i * 37 % 101) as i32) / 4.0)));
    let counter: Vec<(i64, f64)> = [100, 150, 210, 20, 70, 95, 96, 5, 40]
        .iter()
        .enumerate()
        .map(|(i, &v)| (now - 50_000 + i as i64 * 5_000, f64::from(v)))
        .collect();
    let mut body = String::new();
    for (t, v) in &gauge {
        body.push_str(&format!("cpu,host=a usage={v} {t}\n"));
    }
    for (t, v) in &counter {
        body.push_str(&format!("reqs,host=a total={v}i {t}\n"));
    }
    body.push_str(&format!("cpu,host=old usage=1 {}\n", now - 1_800_000));
    body.push_str(&format!("cpu,host=a state=\"up\" {}\n", now - 10_000));
    write(s, &body).await;
    Written { now, gauge, counter }
}

fn within(points: &[(i64, f64)], from: i64) -> Vec<(i64, f64)> {
    points.iter().copied().filter(|p| p.0 >= from).collect()
}

#[tokio::test]
async fn statistics_per_window_match_the_points_written() {
    let s = TestServer::start_default().await;
    let w = write_points(&s).await;

    let one = s.get_json("/api/v1/metrics/statistics?q=cpu&window=1m").await;
    assert_eq!(one["window"], "1m");
    let (from, to) = (one["from"].as_i64().unwrap(), one["to"].as_i64().unwrap());
    assert_eq!(to - from, 60_000);
    assert!(to >= w.now && to < w.now + 5_000, "to {to}, written at {}", w.now);
    // The string field has no statistics and is left out.
    assert_eq!(one["series"].as_array().unwrap().len(), 2, "{one}");
    let a = series(&one, "usage", "a");
    assert_eq!(a["measurement"], "cpu");
    assert_stats(&a["stats"], &expected(&within(&w.gauge, from), 60.0), "cpu a 1m");
    assert_eq!(a["stats"]["count"], 50);
    // No point in the window: listed, with count 0 and nulls.
    assert_stats(
        &series(&one, "usage", "old")["stats"],
        &expected(&[], 60.0),
        "cpu old 1m",
    );

    // 5m is the default window.
    for path in [
        "/api/v1/metrics/statistics?q=cpu.usage%7Bhost%3D%22a%22%7D&window=5m",
        "/api/v1/metrics/statistics?q=cpu.usage%7Bhost%3D%22a%22%7D",
        "/api/v1/metrics/statistics?q=cpu.usage%7Bhost%3D%22a%22%7D&window=300s&db=d",
    ] {
        let five = s.get_json(path).await;
        assert_eq!(five["window"], "5m", "{path}");
        assert_eq!(five["series"].as_array().unwrap().len(), 1, "{path}: {five}");
        let from = five["from"].as_i64().unwrap();
        assert_stats(
            &series(&five, "usage", "a")["stats"],
            &expected(&within(&w.gauge, from), 300.0),
            path,
        );
        assert_eq!(series(&five, "usage", "a")["stats"]["count"], 90);
    }

    // The counter's rate counts the drops as resets: 50+60+20+50+25+1+5+35 = 246 over 60 s.
    let reqs = s.get_json("/api/v1/metrics/statistics?q=reqs.total&window=1m").await;
    let stats = &series(&reqs, "total", "a")["stats"];
    assert_stats(stats, &expected(&w.counter, 60.0), "reqs 1m");
    assert!((stats["rate"].as_f64().unwrap() - 246.0 / 60.0).abs() < 1e-9, "{stats}");

    let other_db = s.get_json("/api/v1/metrics/statistics?q=cpu&db=elsewhere").await;
    assert_eq!(other_db["series"], json!([]));

    let hour = s.get_json("/api/v1/metrics/statistics?q=cpu.usage&window=1h").await;
    assert_eq!(series(&hour, "usage", "old")["stats"]["count"], 1);
}

#[tokio::test]
async fn statistics_errors_name_the_parameter() {
    let s = TestServer::start_default().await;
    write_points(&s).await;
    for (path, want) in [
        (
            "/api/v1/metrics/statistics?q=cpu&window=2m",
            "window: 2m is not a configured window",
        ),
        ("/api/v1/metrics/statistics?q=cpu&window=soon", "window: "),
        ("/api/v1/metrics/statistics?q=cpu&window=0s", "window: "),
        ("/api/v1/metrics/statistics?q=cpu%7Bhost~%22a%22%7D", "q: "),
        ("/api/v1/metrics/statistics?window=1m", "q: missing"),
        ("/api/v1/metrics/statistics?q=", "q: missing"),
        ("/api/v1/metrics/summary?limit=0", "limit: "),
        ("/api/v1/metrics/summary?limit=many", "limit: "),
    ] {
        let (status, text) = s.get_text(path).await;
        assert_eq!(status, 400, "{path}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["code"], "bad_query", "{path}");
        let message = v["message"].as_str().unwrap();
        assert!(message.starts_with(want), "{path}: {message}");
        if path.contains("window=2m") {
            assert!(message.ends_with("1m, 5m, 1h"), "{message}");
        }
    }
}

#[tokio::test]
async fn summary_gives_every_series_latest_value_and_5m_statistics() {
    let s = TestServer::start_default().await;
    let w = write_points(&s).await;
    let v = s.get_json("/api/v1/metrics/summary").await;
    assert_eq!((&v["window"], &v["truncated"]), (&json!("5m"), &json!(false)));
    let all = v["series"].as_array().unwrap();
    // Sorted by measurement, field, tags.
    let names: Vec<String> = all
        .iter()
        .map(|s| {
            format!(
                "{}.{}/{}",
                s["measurement"].as_str().unwrap(),
                s["field"].as_str().unwrap(),
                s["tags"]["host"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["cpu.state/a", "cpu.usage/a", "cpu.usage/old", "reqs.total/a"]);
    let from = v["from"].as_i64().unwrap();
    let a = series(&v, "usage", "a");
    assert_eq!(a["db"], "d");
    let last = w.gauge[w.gauge.len() - 1];
    assert_eq!(a["latest"], json!([last.0, last.1]));
    assert_stats(&a["stats"], &expected(&within(&w.gauge, from), 300.0), "summary cpu a");
    // Older than the window but within the longest one: the latest value, and no statistics.
    let old = series(&v, "usage", "old");
    assert_eq!(old["latest"], json!([w.now - 1_800_000, 1.0]));
    assert_eq!(old["stats"]["count"], 0);
    let state = series(&v, "state", "a");
    assert_eq!(
        (&state["latest"], &state["stats"]),
        (&json!([w.now - 10_000, "up"]), &Value::Null)
    );

    let cut = s.get_json("/api/v1/metrics/summary?limit=2").await;
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["series"].as_array().unwrap().len(), 2);
    let none = s.get_json("/api/v1/metrics/summary?db=elsewhere").await;
    assert_eq!((&none["series"], &none["truncated"]), (&json!([]), &json!(false)));
}

async fn counters(s: &TestServer) -> (u64, u64) {
    let st = s.get_json("/api/v1/stats").await;
    (
        st["stats_ticks_computed"].as_u64().unwrap(),
        st["stats_publications"].as_u64().unwrap(),
    )
}

/// The next message on `channel`, skipping others.
async fn message_on(ws: &mut pulsewire_testkit::Ws, channel: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no message on {channel}");
        let m = ws.recv().await;
        if m["type"] == "message" && m["channel"] == channel {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_channels_publish_window_summaries_only_while_subscribed() {
    let mut cfg = test_config();
    cfg.analysis.stats_interval = Duration::from_millis(200);
    let s = TestServer::start(cfg).await;
    let w = write_points(&s).await;
    write(&s, &format!("mem,host=a used=5i {}\n", w.now - 1_000)).await;

    // Nobody listens: several intervals pass and nothing is computed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(counters(&s).await, (0, 0));

    let mut exact = s.ws().await;
    exact.subscribe(1, &["stats:cpu"]).await;
    let mut pattern = s.ws().await;
    pattern.subscribe(1, &["stats:*"]).await;

    let m = message_on(&mut exact, "stats:cpu").await;
    let data = &m["data"];
    assert_eq!(data["measurement"], "cpu");
    assert_eq!(data["interval_ms"], 200);
    assert_eq!(data["window_ms"], json!({"1m": 60_000, "5m": 300_000, "1h": 3_600_000}));
    assert_eq!(data["truncated"], false);
    let at = data["at"].as_i64().unwrap();
    assert!(at >= w.now, "at {at}");
    let list = data["series"].as_array().unwrap();
    assert_eq!(list.len(), 2, "the string field has no statistics: {data}");
    let a = list.iter().find(|s| s["tags"]["host"] == "a").unwrap();
    assert_eq!((&a["field"], &a["db"]), (&json!("usage"), &json!("d")));
    assert!(a.get("measurement").is_none(), "{a}");
    for (name, secs) in [("1m", 60), ("5m", 300), ("1h", 3600)] {
        let from = at - secs * 1000;
        assert_stats(
            &a["windows"][name],
            &expected(&within(&w.gauge, from), secs as f64),
            &format!("stats:cpu {name}"),
        );
    }
    let old = list.iter().find(|s| s["tags"]["host"] == "old").unwrap();
    assert_eq!(
        (&old["windows"]["1m"]["count"], &old["windows"]["1h"]["count"]),
        (&json!(0), &json!(1))
    );

    // The pattern subscriber gets the same publication (one computation for both) and mem's.
    let same = loop {
        let p = message_on(&mut pattern, "stats:cpu").await;
        if p["offset"] == m["offset"] {
            break p;
        }
        assert!(
            p["offset"].as_u64() < m["offset"].as_u64(),
            "missed offset {}",
            m["offset"]
        );
    };
    assert_eq!(same["data"], m["data"]);
    let mem = message_on(&mut pattern, "stats:mem").await;
    assert_eq!(
        mem["data"]["series"][0]["windows"]["1m"]["last"],
        json!([w.now - 1_000, 5.0])
    );

    // Through the pattern, cpu, mem and reqs each get one publication per tick.
    let (ticks, publications) = counters(&s).await;
    assert!(ticks >= 1);
    assert!(
        publications <= 3 * ticks && publications + 3 >= 3 * ticks,
        "ticks {ticks}, publications {publications}"
    );

    let (_, text) = s.get_text("/metrics").await;
    for name in [
        "pulsewire_stats_ticks_computed_total ",
        "pulsewire_stats_publications_total ",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} in /metrics:\n{text}");
    }

    // Everyone leaves: the ticks stop computing.
    drop(exact);
    drop(pattern);
    s.wait_stats("subscribers gone", |st| st["subscriptions"] == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = counters(&s).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(counters(&s).await, before);
}
