//! `bench query`: query latency over one stored series. Loads one day of 1 s data for one
//! series (86,400 points) through `/write`, seals it and builds its rollups
//! (`POST /api/v1/admin/rollup`; with `--no-rollup` only seals and merges it,
//! `POST /api/v1/admin/compact`), then
//! times `GET /api/v1/query` aggregating the day to 1-minute steps (`--step`), from raw points
//! (`tier=raw`) and from the coarsest rollup tier that answers the step, and prints latency
//! percentiles. `--target victoriametrics` loads the same series into VictoriaMetrics (its
//! `/write` takes line protocol), flushes and force-merges it, and times the same aggregation
//! there: `query_range` of `<agg>_over_time(qbench_v{host="q1"}[step])` with `nocache=1`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::stats::{LatencySummary, latency_histogram};

/// Arguments of `bench query`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Queries timed per case (after 20 untimed ones).
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Points of the series, one per second, ending now.
    #[arg(long, default_value_t = 86_400)]
    pub points: usize,
    /// Aggregation to time.
    #[arg(long, default_value = "avg")]
    pub agg: String,
    /// Step of the aggregation (`1m`: from the 1m tier; `1h` over `--points 600000`: a week's
    /// dashboard view from the 1h tier).
    #[arg(long, default_value = "1m")]
    pub step: String,
    /// Leave the rollups unbuilt (as for recent days, within `tsdb.retention.rollup_after`): the
    /// tier case is then answered from the raw points (up to the raw-read limit) or summaries
    /// of them.
    #[arg(long)]
    pub no_rollup: bool,
    /// The server at `--addr`: `pulsewire`, or `victoriametrics` for the same series and
    /// aggregation side by side.
    #[arg(long, default_value = "pulsewire", value_parser = ["pulsewire", "victoriametrics"])]
    pub target: String,
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", args.addr);
    let now_s = (crate::stats::now_us() / 1_000_000) as i64;
    let first = now_s - args.points as i64;
    // A gauge with two decimals and noise, like a CPU percentage.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 100.0
    };
    let loading = Instant::now();
    for chunk in (0..args.points).collect::<Vec<_>>().chunks(10_000) {
        let mut body = String::with_capacity(chunk.len() * 48);
        for &i in chunk {
            let v = 40.0 + 10.0 * ((i as f64) / 3600.0).sin() + noise();
            body.push_str(&format!("qbench,host=q1 v={v:.2} {}\n", first + i as i64));
        }
        let resp = http
            .post(format!("{base}/write?db=qbench&precision=s"))
            .body(body)
            .send()
            .await?;
        if resp.status().as_u16() != 204 {
            bail!(
                "write failed: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
    }
    let from_ms = first * 1000;
    let to_ms = (first + args.points as i64) * 1000;
    let vm = args.target == "victoriametrics";
    let cases: Vec<(String, String)> = if vm {
        let func = match args.agg.as_str() {
            "avg" | "min" | "max" | "sum" | "count" | "last" => format!("{}_over_time", args.agg),
            other => bail!("--agg {other}: not timed against VictoriaMetrics (avg, min, max, sum, count, last)"),
        };
        let query = format!("{func}(qbench_v{{host=\"q1\"}}[{}])", args.step);
        let url = reqwest::Url::parse_with_params(
            &format!("{base}/api/v1/query_range"),
            &[
                ("query", query.as_str()),
                ("start", &first.to_string()),
                ("end", &now_s.to_string()),
                ("step", &args.step),
                ("nocache", "1"),
            ],
        )?;
        // Until a query sees the series: VictoriaMetrics makes written points searchable
        // within seconds, not at once.
        http.get(format!("{base}/internal/force_flush")).send().await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while buckets_in(&http.get(url.as_str()).send().await?.json().await?) == 0 {
            if Instant::now() > deadline {
                bail!("VictoriaMetrics did not show the written series within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Merged into as few parts as it will go, as Pulsewire's compaction merges a day's
        // parts (bench/run-ingest.sh does the same): a force merge leaves out parts that a
        // background merge holds, so twice, with a pause. Queried straight after loading, a
        // week's query took about three times as long at p50.
        for _ in 0..2 {
            http.get(format!("{base}/internal/force_merge")).send().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        println!(
            "loaded              {} points of one series (1 s apart) in {:.1} s, flushed and merged",
            args.points,
            loading.elapsed().as_secs_f64()
        );
        vec![("victoriametrics".into(), url.into())]
    } else {
        // Without rollups the day is still sealed into one merged part, as a recent day is.
        let admin = if args.no_rollup { "compact" } else { "rollup" };
        let resp = http.post(format!("{base}/api/v1/admin/{admin}")).send().await?;
        if !resp.status().is_success() {
            bail!("{admin} failed: {}", resp.status());
        }
        println!(
            "loaded              {} points of one series (1 s apart) in {:.1} s{}",
            args.points,
            loading.elapsed().as_secs_f64(),
            if args.no_rollup {
                ", sealed into one part, rollups not built"
            } else {
                ", sealed into parts with their rollups"
            }
        );
        let url = |extra: &str| {
            format!(
                "{base}/api/v1/query?q=qbench.v%7Bhost%3D%22q1%22%7D&from={from_ms}&to={to_ms}&step={}&agg={}{extra}",
                args.step, args.agg
            )
        };
        vec![
            ("raw".into(), url("&tier=raw")),
            (format!("{} tier", args.step), url("")),
        ]
    };
    let mut summary = serde_json::Map::new();
    for (case, url) in &cases {
        let mut hist = latency_histogram();
        let mut buckets = 0;
        let mut source = String::new();
        for i in 0..args.queries + 20 {
            let start = Instant::now();
            let resp = http.get(url).send().await.context("query")?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.context("query body")?;
            let took = start.elapsed();
            if !status.is_success() {
                bail!("query failed: {status} {body}");
            }
            if i >= 20 {
                hist.record(took.as_micros().max(1) as u64)?;
            }
            buckets = buckets_in(&body);
            source = body["series"][0]["source"]
                .as_str()
                .unwrap_or(if vm { "victoriametrics" } else { "" })
                .to_string();
        }
        let lat = LatencySummary::from_us(&hist);
        println!("{case:<19} {} buckets from {source}: {}", buckets, lat.line());
        summary.insert(case.replace(' ', "_"), serde_json::to_value(&lat)?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    summary.insert("bench".into(), "query".into());
    summary.insert("points".into(), args.points.into());
    summary.insert("agg".into(), args.agg.clone().into());
    summary.insert("step".into(), args.step.clone().into());
    summary.insert("target".into(), args.target.clone().into());
    println!("{}", serde_json::Value::Object(summary));
    Ok(())
}

/// Buckets of the first series of an answer, Pulsewire's or VictoriaMetrics'.
fn buckets_in(body: &serde_json::Value) -> usize {
    body["series"][0]["points"]
        .as_array()
        .or_else(|| body["data"]["result"][0]["values"].as_array())
        .map_or(0, Vec::len)
}
