//! Metrics ingestion over real HTTP: InfluxDB 1.x and 2.x line protocol endpoints, the JSON
//! agent format, their error shapes and limits, gzip, and live publication of what was written.

use std::io::Write as _;
use std::time::Duration;

use pulsewire_testkit::{TestServer, WAIT, test_config};
use serde_json::{Value, json};

async fn post_raw(s: &TestServer, path: &str, body: Vec<u8>, gzip: bool) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = s.http.post(s.url(path)).body(body);
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body read");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn write(s: &TestServer, path: &str, body: &str) -> (u16, Value) {
    let (status, body, _) = post_raw(s, path, body.as_bytes().to_vec(), false).await;
    (status, body)
}

/// Raw points of one selector, as `(tags, field, points)`.
async fn query(s: &TestServer, q: &str) -> Vec<Value> {
    let url = format!("/api/v1/query?q={}&from=0&to=now%2B1d", urlencode(q));
    let v = s.get_json(&url).await;
    v["series"].as_array().cloned().unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn points_of<'a>(series: &'a [Value], field: &str, tag: (&str, &str)) -> &'a Value {
    &series
        .iter()
        .find(|s| s["field"] == field && s["tags"][tag.0] == tag.1)
        .unwrap_or_else(|| panic!("no series {field} {tag:?} in {series:?}"))["points"]
}

#[tokio::test]
async fn v1_write_stores_every_type_exactly() {
    let s = TestServer::start_default().await;
    let body = "# a comment\n\
                weather,city=Paris,kind=obs temp=12.5,hum=80i,count=7u,ok=true,note=\"a \\\"quoted\\\" word\" 1795600000\n\
                \n\
                weather,kind=obs,city=Berlin temp=-3 1795600010\n\
                weather,city=Paris,kind=obs temp=13.25 1795600020\n";
    let (status, reply) = write(&s, "/write?db=w&precision=s", body).await;
    assert_eq!(status, 204, "{reply}");
    let series = query(&s, "weather").await;
    assert_eq!(
        points_of(&series, "temp", ("city", "Paris")),
        &json!([[1795600000000i64, 12.5], [1795600020000i64, 13.25]])
    );
    assert_eq!(
        points_of(&series, "temp", ("city", "Berlin")),
        &json!([[1795600010000i64, -3.0]])
    );
    assert_eq!(
        points_of(&series, "hum", ("city", "Paris")),
        &json!([[1795600000000i64, 80]])
    );
    assert_eq!(
        points_of(&series, "count", ("city", "Paris")),
        &json!([[1795600000000i64, 7]])
    );
    assert_eq!(
        points_of(&series, "ok", ("city", "Paris")),
        &json!([[1795600000000i64, true]])
    );
    assert_eq!(
        points_of(&series, "note", ("city", "Paris")),
        &json!([[1795600000000i64, "a \"quoted\" word"]])
    );
    let listed = s
        .get_json("/api/v1/series?q=weather.temp%7Bcity%3D%22Paris%22%7D")
        .await;
    assert_eq!(
        listed["series"],
        json!([{"measurement":"weather","field":"temp","tags":{"city":"Paris","kind":"obs"},"db":"w","type":"float"}])
    );
}

#[tokio::test]
async fn v2_write_with_precisions_and_missing_timestamps() {
    let s = TestServer::start_default().await;
    let (status, reply) = write(
        &s,
        "/api/v2/write?org=o&bucket=b&precision=ms",
        "m,h=a v=1 1795600000123\n",
    )
    .await;
    assert_eq!(status, 204, "{reply}");
    let (status, _) = write(&s, "/api/v2/write?org=o&bucket=b", "m,h=a v=2 1795600001000000000\n").await;
    assert_eq!(status, 204);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (status, _) = write(&s, "/api/v2/write?org=o&bucket=b&precision=s", "m,h=b v=3\n").await;
    assert_eq!(status, 204);
    let series = query(&s, "m.v").await;
    assert_eq!(
        points_of(&series, "v", ("h", "a")),
        &json!([[1795600000123i64, 1.0], [1795600001000i64, 2.0]])
    );
    let t = points_of(&series, "v", ("h", "b"))[0][0].as_i64().unwrap();
    assert!((before..before + 5000).contains(&t), "server time {t} vs {before}");

    let (status, reply) = write(&s, "/api/v2/write?bucket=b", "m v=\n").await;
    assert_eq!((status, &reply["code"]), (400, &json!("invalid")));
    let (status, reply) = write(&s, "/api/v2/write?org=o&precision=s", "m v=1\n").await;
    assert_eq!(
        (status, reply),
        (400, json!({"code":"invalid","message":"bucket is required"}))
    );
    let (status, reply) = write(&s, "/api/v2/write?bucket=b&precision=n", "m v=1\n").await;
    assert_eq!(status, 400);
    assert_eq!(reply["code"], "invalid");
    let (status, reply) = write(&s, "/write?precision=s", "m v=1\n").await;
    assert_eq!((status, reply), (400, json!({"error":"database is required"})));
}

#[tokio::test]
async fn a_batch_with_bad_lines_writes_its_good_lines_and_names_the_bad_ones() {
    let s = TestServer::start_default().await;
    let (status, _) = write(&s, "/write?db=d&precision=s", "cpu,host=a usage=1 1795600000\n").await;
    assert_eq!(status, 204);
    let body = "cpu,host=a usage=2 1795600010\n\
                cpu,host=a usage=\"high\" 1795600020\n\
                cpu,host=a usage=\n\
                cpu,host=b usage=3 1795600030\n";
    let (status, reply) = write(&s, "/write?db=d&precision=s", body).await;
    assert_eq!(status, 400);
    let msg = reply["error"].as_str().unwrap();
    assert!(msg.starts_with("partial write: line 2: field type conflict"), "{msg}");
    assert!(msg.contains("line 3: "), "{msg}");
    assert!(msg.ends_with("dropped=2"), "{msg}");
    let series = query(&s, "cpu.usage").await;
    assert_eq!(
        points_of(&series, "usage", ("host", "a")),
        &json!([[1795600000000i64, 1.0], [1795600010000i64, 2.0]])
    );
    assert_eq!(
        points_of(&series, "usage", ("host", "b")),
        &json!([[1795600030000i64, 3.0]])
    );
    // The same through the 2.x endpoint: its error shape.
    let (status, reply) = write(
        &s,
        "/api/v2/write?bucket=d&precision=s",
        "cpu,host=a usage=true 1795600040\n",
    )
    .await;
    // Well-formed but not storable: 422 for the 2.x API (a malformed line is 400 there).
    assert_eq!(status, 422);
    assert_eq!(reply["code"], "unprocessable entity");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("line 1: field type conflict"),
        "{reply}"
    );
}

#[tokio::test]
async fn gzip_bodies_and_size_limits() {
    let mut cfg = test_config();
    cfg.ingest.max_body_bytes = 4096;
    cfg.ingest.max_line_bytes = 300;
    let s = TestServer::start(cfg).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"disk,host=a free=10i 1795600000\ndisk,host=a free=11i 1795600010\n")
        .unwrap();
    let (status, reply, _) = post_raw(&s, "/write?db=d&precision=s", gz.finish().unwrap(), true).await;
    assert_eq!(status, 204, "{reply}");
    assert_eq!(
        points_of(&query(&s, "disk").await, "free", ("host", "a"))
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (status, reply, _) = post_raw(&s, "/write?db=d", b"not gzip".to_vec(), true).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("gzip"), "{reply}");

    let big = "x v=1\n".repeat(1000);
    let (status, reply) = write(&s, "/api/v2/write?bucket=d", &big).await;
    assert_eq!(status, 413);
    assert_eq!(reply["code"], "request too large");
    // A body small on the wire but large once decompressed is refused too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let (status, reply, _) = post_raw(&s, "/write?db=d", gz.finish().unwrap(), true).await;
    assert_eq!(status, 413, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("4096"), "{reply}");

    let long = format!(
        "disk,host=a note=\"{}\" 1795600020\ndisk,host=a free=12i 1795600030\n",
        "y".repeat(400)
    );
    let (status, reply) = write(&s, "/write?db=d&precision=s", &long).await;
    assert_eq!(status, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("line 1: line is longer than the limit of 300 bytes"),
        "{reply}"
    );
    assert_eq!(
        points_of(&query(&s, "disk").await, "free", ("host", "a"))
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn new_series_rate_limit_answers_429_with_retry_after() {
    let mut cfg = test_config();
    cfg.tsdb.limits.max_new_series_per_minute = 3;
    let s = TestServer::start(cfg).await;
    let body: String = (0..5).map(|i| format!("m,h={i} v=1\n")).collect();
    let (status, reply, headers) = post_raw(&s, "/api/v2/write?bucket=b", body.into_bytes(), false).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["code"], "too many requests");
    assert_eq!(headers.get("retry-after").unwrap(), "60");
    assert_eq!(query(&s, "m.v").await.len(), 3);
}

#[tokio::test]
async fn json_agent_format() {
    let s = TestServer::start_default().await;
    let (status, reply) = s
        .post(
            "/api/v1/metrics/ingest",
            r#"{"source":"host-1","timestamp":1795600000000,"tags":{"dc":"x"},"metrics":{"cpu":75.5,"memory":82.3}}"#,
        )
        .await;
    assert_eq!((status, reply), (200, json!({"accepted":1,"rejected":[]})));
    let (status, reply) = s
        .post(
            "/api/v1/metrics/ingest",
            r#"[{"serverId":2,"timestamp":1795600001000,"metrics":{"cpu":10}},{"metrics":{"cpu":1}},{"source":"h","metrics":{"cpu":"busy"}}]"#,
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["accepted"], 1);
    let rejected = reply["rejected"].as_array().unwrap();
    assert_eq!(
        rejected
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    let series = query(&s, "agent.cpu").await;
    assert_eq!(
        points_of(&series, "cpu", ("source", "host-1")),
        &json!([[1795600000000i64, 75.5]])
    );
    assert_eq!(
        points_of(&series, "cpu", ("source", "2")),
        &json!([[1795600001000i64, 10.0]])
    );
    let (status, reply) = s.post("/api/v1/metrics/ingest", "not json").await;
    assert_eq!(status, 400);
    assert_eq!(reply["code"], "invalid");
}

#[tokio::test]
async fn ingested_points_are_published_live_and_coalesced() {
    let mut cfg = test_config();
    // Long enough that the two writes below always fall in one window.
    cfg.ingest.live_window = Duration::from_millis(300);
    let s = TestServer::start(cfg).await;
    let mut exact = s.ws().await;
    exact.subscribe(1, &["metrics:cpu"]).await;
    let mut pattern = s.ws().await;
    pattern.subscribe(1, &["metrics:*"]).await;
    let (status, _) = write(
        &s,
        "/write?db=d&precision=ms",
        "cpu,host=a usage=1 1795600000000\ncpu,host=b usage=2 1795600000000\n",
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = write(
        &s,
        "/write?db=d&precision=ms",
        "cpu,host=a usage=3 1795600001000\nmem,host=a used=5i 1795600001000\n",
    )
    .await;
    assert_eq!(status, 204);
    let m = tokio::time::timeout(WAIT, exact.recv()).await.expect("live message");
    assert_eq!(m["channel"], "metrics:cpu");
    assert_eq!(
        m["data"]["points"],
        json!([
            {"measurement":"cpu","tags":{"host":"a"},"fields":{"usage":1.0},"ts":1795600000000i64},
            {"measurement":"cpu","tags":{"host":"b"},"fields":{"usage":2.0},"ts":1795600000000i64},
            {"measurement":"cpu","tags":{"host":"a"},"fields":{"usage":3.0},"ts":1795600001000i64}
        ])
    );
    let mut got = [
        tokio::time::timeout(WAIT, pattern.recv())
            .await
            .expect("pattern message"),
        tokio::time::timeout(WAIT, pattern.recv())
            .await
            .expect("pattern message"),
    ];
    got.sort_by_key(|m| m["channel"].as_str().unwrap().to_string());
    assert_eq!(got[0]["channel"], "metrics:cpu");
    assert_eq!(got[0]["data"]["points"].as_array().unwrap().len(), 3);
    assert_eq!(got[1]["channel"], "metrics:mem");
    assert_eq!(
        got[1]["data"]["points"],
        json!([{"measurement":"mem","tags":{"host":"a"},"fields":{"used":5},"ts":1795600001000i64}])
    );
    exact.expect_silence(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn query_errors_point_at_the_problem() {
    let s = TestServer::start_default().await;
    write(
        &s,
        "/write?db=d&precision=s",
        "cpu,host=a usage=1,state=\"up\" 1795600000\n",
    )
    .await;
    for (q, want) in [
        ("/api/v1/query?q=cpu%7Bhost~%22a%22%7D", "q: "),
        ("/api/v1/query?q=cpu&step=fast", "step: "),
        ("/api/v1/query?q=cpu&step=1m&agg=mean", "agg: "),
        ("/api/v1/query?q=cpu&from=yesterday", "from: "),
        (
            "/api/v1/query?q=cpu&from=0&to=now%2B1d&step=1m&agg=avg",
            "holds strings",
        ),
        ("/api/v1/query", "q: missing"),
    ] {
        let (status, text) = s.get_text(q).await;
        assert_eq!(status, 400, "{q}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["message"].as_str().unwrap().contains(want), "{q}: {text}");
    }
}

#[tokio::test]
async fn aggregation_and_overviews() {
    let s = TestServer::start_default().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = (now / 60_000 - 10) * 60_000;
    let body: String = (0..120)
        .map(|i| format!("sys,host=h1 load={} {}\n", i % 60, t0 + i * 1000))
        .collect();
    let (status, _) = write(&s, "/write?db=d&precision=ms", &body).await;
    assert_eq!(status, 204);
    let v = s
        .get_json(&format!(
            "/api/v1/query?q=sys.load&from={t0}&to={}&step=1m&agg=max",
            t0 + 120_000
        ))
        .await;
    assert_eq!(v["series"][0]["points"], json!([[t0, 59.0], [t0 + 60_000, 59.0]]));
    // Today has no rollups: its raw points answer.
    assert_eq!(v["series"][0]["source"], "raw");
    let raw = s
        .get_json(&format!(
            "/api/v1/query?q=sys.load&from={t0}&to={}&step=1m&agg=max&tier=raw",
            t0 + 120_000
        ))
        .await;
    assert_eq!(
        (&raw["series"][0]["points"], &raw["series"][0]["source"]),
        (&v["series"][0]["points"], &json!("raw"))
    );
    // Sealed into parts, the answer is the same.
    let (status, _) = s.post("/api/v1/admin/checkpoint", "").await;
    assert_eq!(status, 200);
    let sealed = s
        .get_json(&format!(
            "/api/v1/query?q=sys.load&from={t0}&to={}&step=1m&agg=max",
            t0 + 120_000
        ))
        .await;
    assert_eq!(sealed["series"], v["series"]);
    let stats = s.get_json("/api/v1/stats").await;
    assert_eq!(
        (
            stats["tsdb"]["part_points"].as_u64(),
            stats["tsdb"]["head_points"].as_u64()
        ),
        (Some(120), Some(0))
    );
    let v = s
        .get_json(&format!(
            "/api/v1/query?q=sys.load&from={t0}&to={}&agg=count",
            t0 + 120_000
        ))
        .await;
    assert_eq!(v["series"][0]["points"], json!([[t0, 120.0]]));
    let v = s.get_json("/api/v1/metrics/realtime/h1?range=1h").await;
    let one = &v["series"][0];
    assert_eq!(
        (one["min"].as_f64(), one["max"].as_f64(), one["count"].as_u64()),
        (Some(0.0), Some(59.0), Some(120))
    );
    assert_eq!(one["last"], json!([t0 + 119_000, 59.0]));
    let v = s.get_json("/api/v1/metrics/dashboard?range=1h").await;
    assert_eq!(v["sources"][0]["source"], "h1");
    assert_eq!(v["sources"][0]["series"][0]["count"], 120);
}

#[tokio::test]
async fn line_numbers_count_the_physical_lines_of_multi_line_strings() {
    let mut cfg = test_config();
    cfg.ingest.max_line_bytes = 256;
    let s = TestServer::start(cfg).await;
    let long = "x".repeat(300);
    let body = format!(
        "log,h=a msg=\"first\nsecond\" 1795600000\nlog,h=a n=1 1795600010\nlog,h=a msg=1i 1795600020\nlog,h=b msg=\"a\n{long}\" 1795600030\nlog,h=c n=2 1795600040\n"
    );
    let (status, reply) = write(&s, "/write?db=d&precision=s", &body).await;
    assert_eq!(status, 400);
    let msg = reply["error"].as_str().unwrap();
    assert!(msg.contains("line 4: field type conflict"), "{msg}");
    assert!(
        msg.contains("line 5: line is longer than the limit of 256 bytes"),
        "{msg}"
    );
    assert!(msg.ends_with("dropped=2"), "{msg}");
    let series = query(&s, "log").await;
    assert_eq!(
        points_of(&series, "msg", ("h", "a")),
        &json!([[1795600000000i64, "first\nsecond"]])
    );
    assert_eq!(points_of(&series, "n", ("h", "c")), &json!([[1795600040000i64, 2.0]]));
    assert!(
        series.iter().all(|s| s["tags"]["h"] != "b"),
        "the long entry must not be stored: {series:?}"
    );
}

/// `/query` answers the `CREATE DATABASE` that Telegraf (as a form body) and the 1.x client
/// libraries (in the URL) send before writing, as InfluxDB does, and refuses other InfluxQL
/// in InfluxDB's error shape.
#[tokio::test]
async fn influxql_create_database_is_answered_and_other_statements_refused() {
    let s = TestServer::start_default().await;
    let resp = s
        .http
        .post(s.url("/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("q=CREATE+DATABASE+%22telegraf%22")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"results":[{"statement_id":0}]})
    );

    let v = s
        .get_json(&format!(
            "/query?q={}",
            urlencode("create database a; CREATE DATABASE \"b\" WITH DURATION 1d")
        ))
        .await;
    assert_eq!(v, json!({"results":[{"statement_id":0},{"statement_id":1}]}));

    let (status, body) = s
        .get_text(&format!("/query?q={}", urlencode("SELECT * FROM cpu")))
        .await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(msg.starts_with("unsupported statement \"SELECT * FROM cpu\""), "{msg}");
    assert!(msg.contains("GET /api/v1/query"), "{msg}");

    let (status, body) = s.get_text(&format!("/query?q={}", urlencode("CREATE DATABASE"))).await;
    assert_eq!(status, 400, "a name is required: {body}");
    let (status, body) = s.get_text("/query").await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"missing required parameter \"q\""}"#)
    );
    // Nothing was created: a database exists once something is written to it.
    let v = s.get_json("/api/v1/series?q=cpu&db=telegraf").await;
    assert_eq!(v["series"], json!([]));
}
