//! The `ingest` scenario: `--writers` concurrent HTTP writers POST InfluxDB
//! line protocol (`--batch` lines per request) to one write URL: Pulsewire's
//! `/write` or `/api/v2/write`, VictoriaMetrics' `/write`, InfluxDB 1.x's
//! `/write?db=`. The data is `--series` host-metric series with `--fields`
//! fields each, one line per series per `--interval` of simulated time (see
//! [`crate::lineproto`]), so a "sample" is one field value: lines x fields.
//!
//! Request bodies are produced by one dedicated generator thread ahead of the
//! writers (a queue of two bodies per writer), so formatting (and gzip) never
//! sits inside a measured request, and that thread's own CPU time is reported
//! apart from the HTTP client's. Only 2xx responses count as accepted; the
//! rate is over requests completed inside the measured window, after the
//! warm-up. With `--server-pid` the server's CPU in that window and its RSS
//! (sampled, and its kernel-recorded peak) are added.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::lineproto::{Generator, Precision};
use crate::procstat::{Proc, machine_cpu};
use crate::stats::{LatencySummary, latency_histogram};

/// Arguments of `bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Full write URL; its `precision=` (s, ms, us, ns; absent = ns) sets the timestamp unit written.
    #[arg(long, default_value = "http://127.0.0.1:8080/write?db=bench&precision=s")]
    pub url: String,
    /// Name of the server under test, for the report only (pulsewire, victoriametrics, influxdb...).
    #[arg(long, default_value = "pulsewire")]
    pub target: String,
    /// Concurrent HTTP writers (one request in flight each).
    #[arg(short = 'w', long, default_value_t = 4)]
    pub writers: usize,
    /// Lines per request.
    #[arg(short = 'b', long, default_value_t = 5000)]
    pub batch: usize,
    /// Active series (measurement + tag set); each gets one line per round.
    #[arg(short = 's', long, default_value_t = 10_000)]
    pub series: usize,
    /// Fields per line; samples = lines x fields.
    #[arg(short = 'f', long, default_value_t = 10)]
    pub fields: usize,
    /// Measured seconds (after the warm-up).
    #[arg(short = 'd', long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds of writing before measuring (not counted in the rates).
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Gzip request bodies (`Content-Encoding: gzip`).
    #[arg(long)]
    pub gzip: bool,
    /// Gzip level (1 fastest .. 9 smallest).
    #[arg(long, default_value_t = 1)]
    pub gzip_level: u32,
    /// Seconds of simulated time between two lines of the same series.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// The first round's timestamp lies this many seconds before now. Rounds then advance by
    /// --interval as fast as the server accepts them but never past now (the run ends early
    /// if they would), so keep it well inside the targets' retention.
    #[arg(long, default_value_t = 2 * 86_400)]
    pub start_ago: u64,
    /// Stop after this many rounds (every series once per round; 0 = no limit): gives every
    /// target exactly the same data, for comparing sizes on disk. The run then ends when the
    /// last body is accepted, or at --duration.
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// Seed of the value generator (same seed, same data).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds before one request is abandoned (counted as a transport error).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// PID of the server process: adds its CPU time and RSS to the report.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Tokio worker threads of the HTTP writers (the generator has its own thread).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Allow a write URL that is not a loopback address.
    #[arg(long)]
    pub allow_non_loopback: bool,
}

/// One request body, ready to send.
struct Body {
    data: Vec<u8>,
    lines: u64,
    raw_bytes: u64,
}

/// What the generator thread did.
struct GenReport {
    cpu: Option<Duration>,
    wall: Duration,
    lines: u64,
    raw_bytes: u64,
    wire_bytes: u64,
    first_ts: i64,
    last_ts: i64,
    rounds: u64,
    /// Simulated time caught up with now and the stream ended.
    reached_now: bool,
    /// The stream ended after --rounds rounds.
    exhausted: bool,
}

/// Accepted traffic.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    requests: u64,
    lines: u64,
    raw_bytes: u64,
    wire_bytes: u64,
}

impl Tally {
    fn add(&mut self, lines: u64, raw_bytes: u64, wire_bytes: u64) {
        self.requests += 1;
        self.lines += lines;
        self.raw_bytes += raw_bytes;
        self.wire_bytes += wire_bytes;
    }
}

/// Outcome counters shared by the writers.
struct Stats {
    /// Accepted requests that completed inside the measured window.
    measured: Tally,
    /// Accepted requests of the whole run (warm-up and tail included): what the server stores.
    total: Tally,
    /// Latency (µs) of the measured accepted requests.
    hist: Histogram<u64>,
    failed_measured: u64,
    failed_total: u64,
    /// Failures by kind (`HTTP 400`, `transport`), whole run.
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
    /// Time writers spent waiting for the generator during the window.
    waited: Duration,
}

/// Start and end of the measured window.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.from && t <= self.to
    }
}

/// CPU samples at one edge of the window.
struct Edge {
    at: Instant,
    self_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
    /// Whole machine (busy, total) CPU time.
    machine: Option<(Duration, Duration)>,
}

fn edge(server: Option<Proc>) -> Edge {
    Edge {
        at: Instant::now(),
        self_cpu: Proc::Myself.cpu(),
        server_cpu: server.and_then(Proc::cpu),
        machine: machine_cpu(),
    }
}

fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Refuses a URL that resolves to anything but loopback, unless allowed.
fn check_loopback(url: &reqwest::Url, allow: bool) -> anyhow::Result<()> {
    let addrs = url.socket_addrs(|| Some(80))?;
    anyhow::ensure!(!addrs.is_empty(), "cannot resolve {url}");
    if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback())
        && !allow
    {
        anyhow::bail!("{a} is not a loopback address; pass --allow-non-loopback to load it anyway");
    }
    Ok(())
}

/// Body of the generator thread: fills bodies of `batch` lines until the
/// receiver is gone, `stop` is set, or simulated time reaches now.
fn generate(args: &IngestArgs, precision: Precision, tx: mpsc::Sender<Body>, stop: &AtomicBool) -> GenReport {
    let cpu_start = Proc::ThisThread.cpu();
    let started = Instant::now();
    let interval = args.interval as i64;
    let start = (unix_now_s() - args.start_ago as i64).div_euclid(interval) * interval;
    let mut g = Generator::new(args.series, args.fields, start, interval, precision, args.seed);
    let mut rep = GenReport {
        cpu: None,
        wall: Duration::ZERO,
        lines: 0,
        raw_bytes: 0,
        wire_bytes: 0,
        first_ts: start,
        last_ts: start,
        rounds: 0,
        reached_now: false,
        exhausted: false,
    };
    g.limit_rounds(args.rounds);
    let mut capacity = 256 * args.batch;
    while !stop.load(Ordering::Relaxed) {
        let mut raw = Vec::with_capacity(capacity);
        let lines = g.fill(&mut raw, args.batch, unix_now_s());
        if lines == 0 {
            rep.exhausted = g.rounds_exhausted();
            rep.reached_now = !rep.exhausted;
            break;
        }
        capacity = capacity.max(raw.len() + raw.len() / 16);
        rep.last_ts = g.round_ts();
        rep.lines += lines as u64;
        rep.raw_bytes += raw.len() as u64;
        let raw_bytes = raw.len() as u64;
        let data = if args.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 4),
                flate2::Compression::new(args.gzip_level.min(9)),
            );
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&raw);
            enc.finish().unwrap_or_default()
        } else {
            raw
        };
        rep.wire_bytes += data.len() as u64;
        let body = Body {
            data,
            lines: lines as u64,
            raw_bytes,
        };
        if tx.blocking_send(body).is_err() {
            break;
        }
    }
    rep.rounds = g.rounds_started;
    rep.wall = started.elapsed();
    rep.cpu = match (cpu_start, Proc::ThisThread.cpu()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    rep
}

/// One writer: takes the next body, POSTs it, records the outcome; stops
/// taking bodies at the end of the window.
async fn writer(
    client: reqwest::Client,
    url: reqwest::Url,
    gzip: bool,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Body>>>,
    stats: Arc<Mutex<Stats>>,
    window: Window,
) {
    loop {
        let wait_start = Instant::now();
        if wait_start >= window.to {
            return;
        }
        let next = tokio::time::timeout_at(window.to.into(), async { queue.lock().await.recv().await }).await;
        let Ok(Some(Body { data, lines, raw_bytes })) = next else {
            return;
        };
        let sent = Instant::now();
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let wire = data.len() as u64;
        let outcome = match req.body(data).send().await {
            Ok(resp) if resp.status().is_success() => {
                let _ = resp.bytes().await;
                Ok(())
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                Err((
                    format!("HTTP {}", status.as_u16()),
                    format!("HTTP {status}: {}", text.trim().chars().take(300).collect::<String>()),
                ))
            }
            Err(e) => Err(("transport".to_string(), error_chain(&e))),
        };
        let done = Instant::now();
        let mut s = stats.lock().expect("stats lock");
        if window.contains(wait_start) {
            s.waited += sent - wait_start;
        }
        let measured = window.contains(done);
        match outcome {
            Ok(()) => {
                s.total.add(lines, raw_bytes, wire);
                if measured {
                    s.measured.add(lines, raw_bytes, wire);
                    s.hist.saturating_record((done - sent).as_micros() as u64);
                }
            }
            Err((kind, message)) => {
                s.failed_total += 1;
                if measured {
                    s.failed_measured += 1;
                }
                *s.errors.entry(kind).or_default() += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(message);
                }
            }
        }
    }
}

/// `error: cause: cause...` for an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn rfc3339(ts: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm), to
    // show the simulated range without a date-time dependency.
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.writers > 0, "--writers must be positive");
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    anyhow::ensure!(args.series > 0, "--series must be positive");
    anyhow::ensure!(args.fields > 0, "--fields must be positive");
    anyhow::ensure!(args.interval > 0, "--interval must be positive");
    anyhow::ensure!(args.duration > 0, "--duration must be positive");
    let url = reqwest::Url::parse(&args.url)?;
    check_loopback(&url, args.allow_non_loopback)?;
    let precision = Precision::from_url(&url)?;
    let server = args.server_pid.map(Proc::Pid);
    eprintln!(
        "ingest: target={} url={url} writers={} batch={} series={} fields={} interval={}s gzip={} warmup={}s duration={}s",
        args.target,
        args.writers,
        args.batch,
        args.series,
        args.fields,
        args.interval,
        args.gzip,
        args.warmup,
        args.duration
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.writers)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(args.timeout))
        // The targets are local: never route them through a proxy from the environment.
        .no_proxy()
        .build()?;

    let server_rss_before = server.and_then(Proc::rss_kib);
    let (tx, rx) = mpsc::channel::<Body>(2 * args.writers);
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let args = args.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("ingest-gen".into())
            .spawn(move || generate(&args, precision, tx, &stop))?
    };
    // Let the generator fill the queue before the clock starts, so the first
    // requests do not wait for the generator's start-up.
    let queue = Arc::new(tokio::sync::Mutex::new(rx));
    let fill_deadline = Instant::now() + Duration::from_secs(10);
    while queue.lock().await.len() < args.writers && Instant::now() < fill_deadline && !generator.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let start = Instant::now();
    let window = Window {
        from: start + Duration::from_secs(args.warmup),
        to: start + Duration::from_secs(args.warmup + args.duration),
    };
    let stats = Arc::new(Mutex::new(Stats {
        measured: Tally::default(),
        total: Tally::default(),
        hist: latency_histogram(),
        failed_measured: 0,
        failed_total: 0,
        errors: BTreeMap::new(),
        first_error: None,
        waited: Duration::ZERO,
    }));
    let mut writers = JoinSet::new();
    for _ in 0..args.writers {
        writers.spawn(writer(
            client.clone(),
            url.clone(),
            args.gzip,
            queue.clone(),
            stats.clone(),
            window,
        ));
    }

    // Server RSS between samples, and progress lines on stderr.
    let rss_peak = Arc::new(AtomicU64::new(server_rss_before.unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (rss_peak, sampling, stats) = (rss_peak.clone(), sampling.clone(), stats.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut n = 0u64;
            while sampling.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(r) = server.and_then(Proc::rss_kib) {
                    rss_peak.fetch_max(r, Ordering::Relaxed);
                }
                n += 1;
                if n.is_multiple_of(20) {
                    let s = stats.lock().expect("stats lock");
                    eprintln!(
                        "ingest: {:.0} s: accepted {} requests, {} lines; {} failed",
                        start.elapsed().as_secs_f64(),
                        s.total.requests,
                        s.total.lines,
                        s.failed_total
                    );
                }
            }
        })
    };

    // The window ends at its deadline, or earlier if every writer is done
    // (the generator ran out of rounds or of simulated time). `finished_early`
    // also records that `all_done` completed and must not be polled again.
    let all_done = async { while writers.join_next().await.is_some() {} };
    tokio::pin!(all_done);
    let mut finished_early = false;
    tokio::select! {
        _ = tokio::time::sleep_until(window.from.into()) => {}
        _ = &mut all_done => finished_early = true,
    }
    let from = edge(server);
    if !finished_early {
        tokio::select! {
            _ = tokio::time::sleep_until(window.to.into()) => {}
            _ = &mut all_done => finished_early = true,
        }
    }
    let to = edge(server);
    let server_rss_end = server.and_then(Proc::rss_kib);
    // Requests in flight at the end complete (they count in the totals, not the rates).
    if !finished_early {
        all_done.await;
    }
    stop.store(true, Ordering::Relaxed);
    drop(queue);
    let gen_rep = tokio::task::spawn_blocking(move || generator.join())
        .await?
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))?;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let server_rss_hwm = server.and_then(Proc::rss_peak_kib);
    let server_rss_peak = server.map(|_| rss_peak.load(Ordering::Relaxed).max(server_rss_end.unwrap_or(0)));
    let self_rss = Proc::Myself.rss_kib();

    let s = stats.lock().expect("stats lock");
    let fields = args.fields as u64;
    let wall = (to.at - from.at).as_secs_f64().max(1e-9);
    let lines_per_s = s.measured.lines as f64 / wall;
    let samples_per_s = lines_per_s * fields as f64;
    let cpu_secs = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let self_cpu = cpu_secs(from.self_cpu, to.self_cpu);
    let server_cpu = cpu_secs(from.server_cpu, to.server_cpu);
    let self_cpu_pct = self_cpu.map(|c| 100.0 * c / wall);
    // Machine busy time in the window, and the part neither the server nor
    // the generator used (other processes: the disturbance). Both in % of one
    // core, like the other CPU figures.
    let (machine_busy_pct, machine_cores) = match (from.machine, to.machine) {
        (Some((b0, t0)), Some((b1, t1))) => {
            let total = t1.saturating_sub(t0).as_secs_f64();
            let cores = (total / wall).round().max(1.0);
            (Some(100.0 * b1.saturating_sub(b0).as_secs_f64() / wall), Some(cores))
        }
        _ => (None, None),
    };
    let others_cpu_pct = machine_busy_pct
        .map(|m| (m - self_cpu.unwrap_or(0.0) * 100.0 / wall - server_cpu.unwrap_or(0.0) * 100.0 / wall).max(0.0));
    let server_cpu_pct = server_cpu.map(|c| 100.0 * c / wall);
    let measured_samples = s.measured.lines * fields;
    let server_ns_per_sample = server_cpu
        .filter(|_| measured_samples > 0)
        .map(|c| c * 1e9 / measured_samples as f64);
    let gen_cpu = gen_rep.cpu.map(|c| c.as_secs_f64());
    let gen_cpu_pct = gen_cpu.map(|c| 100.0 * c / gen_rep.wall.as_secs_f64().max(1e-9));
    let gen_ns_per_line = gen_cpu
        .filter(|_| gen_rep.lines > 0)
        .map(|c| c * 1e9 / gen_rep.lines as f64);
    let wait_pct = 100.0 * s.waited.as_secs_f64() / (wall * args.writers as f64);
    let latency = LatencySummary::from_us(&s.hist);
    let line_bytes = if s.total.lines > 0 {
        s.total.raw_bytes as f64 / s.total.lines as f64
    } else {
        0.0
    };
    let request_wire_kib = if s.total.requests > 0 {
        s.total.wire_bytes as f64 / s.total.requests as f64 / 1024.0
    } else {
        0.0
    };
    let rounds_done = if args.series > 0 {
        s.total.lines / args.series as u64
    } else {
        0
    };

    // Human report.
    println!("== Pulsewire bench: ingest ({}) ==", args.target);
    println!("target              {url}");
    println!(
        "load                {} writers x {} lines/request, {} series x {} fields, {} s interval, gzip {}",
        args.writers,
        args.batch,
        args.series,
        args.fields,
        args.interval,
        if args.gzip {
            format!("level {}", args.gzip_level)
        } else {
            "off".into()
        }
    );
    println!(
        "accepted            {samples_per_s:.0} samples/s = {lines_per_s:.0} lines/s  ({} requests, {} lines, {} samples in {wall:.1} s after {} s warm-up; {:.1} MB/s of line protocol)",
        s.measured.requests,
        s.measured.lines,
        measured_samples,
        args.warmup,
        s.measured.raw_bytes as f64 / wall / 1e6
    );
    println!("request latency     {}", latency.line());
    if s.failed_total == 0 {
        println!("rejected            none (every response 2xx)");
    } else {
        let kinds: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!(
            "rejected            {} requests ({} in the window): {}",
            s.failed_total,
            s.failed_measured,
            kinds.join(", ")
        );
        if let Some(e) = &s.first_error {
            println!("first error         {e}");
        }
    }
    println!(
        "whole run           {} requests accepted = {} lines = {} samples (warm-up and tail included; divide on-disk bytes by this)",
        s.total.requests,
        s.total.lines,
        s.total.lines * fields
    );
    println!(
        "data                {} .. {} simulated ({} rounds of {} series), {line_bytes:.0} bytes/line, {request_wire_kib:.0} KiB/request on the wire",
        rfc3339(gen_rep.first_ts),
        rfc3339(gen_rep.first_ts + rounds_done.saturating_sub(1) as i64 * args.interval as i64),
        rounds_done,
        args.series
    );
    if gen_rep.exhausted {
        println!(
            "note                all {} rounds were written; the window is the time that took (rates over it)",
            args.rounds
        );
    } else if gen_rep.reached_now || finished_early {
        println!(
            "note                simulated time reached now and the run ended early: raise --start-ago (was {} s)",
            args.start_ago
        );
    }
    println!(
        "generator thread    cpu {:.2} s for {} lines = {:.0} ns/line ({:.0}% of one core over its {:.1} s); writers waited for bodies {wait_pct:.1}% of the window",
        gen_cpu.unwrap_or(f64::NAN),
        gen_rep.lines,
        gen_ns_per_line.unwrap_or(f64::NAN),
        gen_cpu_pct.unwrap_or(f64::NAN),
        gen_rep.wall.as_secs_f64()
    );
    if let Some(c) = self_cpu {
        println!(
            "generator process   cpu {c:.2} s over {wall:.1} s = {:.0}% (generator thread + {} HTTP worker thread(s)), rss {} MiB",
            self_cpu_pct.unwrap_or(0.0),
            args.threads,
            self_rss.unwrap_or(0) / 1024
        );
    }
    if let (Some(busy), Some(others), Some(cores)) = (machine_busy_pct, others_cpu_pct, machine_cores) {
        println!(
            "machine             busy {busy:.0}% of {:.0}% ({cores} cores) in the window; other processes {others:.0}%{}",
            cores * 100.0,
            if others > 20.0 {
                "  << other processes took CPU: figures are skewed"
            } else {
                ""
            }
        );
    }
    if let Some(pid) = args.server_pid {
        println!(
            "server pid {pid}      cpu {:.2} s = {:.0}%, {:.0} ns/sample; rss {} MiB before -> {} MiB end, peak {} MiB sampled / {} MiB VmHWM",
            server_cpu.unwrap_or(f64::NAN),
            server_cpu_pct.unwrap_or(f64::NAN),
            server_ns_per_sample.unwrap_or(f64::NAN),
            server_rss_before.unwrap_or(0) / 1024,
            server_rss_end.unwrap_or(0) / 1024,
            server_rss_peak.unwrap_or(0) / 1024,
            server_rss_hwm.unwrap_or(0) / 1024
        );
    }

    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    // Two halves: one json! literal of this size exceeds the macro recursion limit.
    let mut summary = serde_json::json!({
        "bench": "ingest",
        "target": args.target,
        "url": url.as_str(),
        "writers": args.writers,
        "batch": args.batch,
        "series": args.series,
        "fields": args.fields,
        "interval_s": args.interval,
        "gzip": args.gzip,
        "gzip_level": args.gzip.then_some(args.gzip_level),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "window_s": round(wall),
        "ended_early": finished_early,
        "rounds_limit": args.rounds,
        "rounds_exhausted": gen_rep.exhausted,
        "reached_now": gen_rep.reached_now,
        "requests_ok": s.measured.requests,
        "requests_failed": s.failed_measured,
        "lines_ok": s.measured.lines,
        "samples_ok": measured_samples,
        "lines_per_s": lines_per_s.round(),
        "samples_per_s": samples_per_s.round(),
        "latency_ms": latency,
        "errors": s.errors,
        "first_error": s.first_error,
        "total_requests_ok": s.total.requests,
        "total_requests_failed": s.failed_total,
        "total_lines_accepted": s.total.lines,
        "total_samples_accepted": s.total.lines * fields,
    });
    let rest = serde_json::json!({
        "bytes_per_line": line_bytes.round(),
        "wire_kib_per_request": request_wire_kib.round(),
        "sim_first_ts": gen_rep.first_ts,
        "sim_rounds": rounds_done,
        "generator_thread_cpu_s": gen_cpu.map(round),
        "generator_thread_cpu_pct": gen_cpu_pct.map(f64::round),
        "generator_ns_per_line": gen_ns_per_line.map(f64::round),
        "generator_lines": gen_rep.lines,
        "generator_raw_bytes": gen_rep.raw_bytes,
        "generator_wire_bytes": gen_rep.wire_bytes,
        "writer_wait_pct": round(wait_pct),
        "generator_threads": args.threads,
        "generator_cpu_s": self_cpu.map(round),
        "generator_cpu_pct": self_cpu_pct.map(f64::round),
        "generator_rss_kib": self_rss,
        "machine_busy_pct": machine_busy_pct.map(f64::round),
        "machine_cores": machine_cores,
        "others_cpu_pct": others_cpu_pct.map(f64::round),
        "server_cpu_s": server_cpu.map(round),
        "server_cpu_pct": server_cpu_pct.map(f64::round),
        "server_cpu_ns_per_sample": server_ns_per_sample.map(f64::round),
        "server_rss_kib_before": server_rss_before,
        "server_rss_kib_end": server_rss_end,
        "server_rss_kib_peak": server_rss_peak,
        "server_rss_kib_hwm": server_rss_hwm,
    });
    if let (Some(a), serde_json::Value::Object(b)) = (summary.as_object_mut(), rest) {
        a.extend(b);
    }
    println!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn refuses_remote_targets() {
        let local = reqwest::Url::parse("http://127.0.0.1:8428/write").unwrap();
        assert!(check_loopback(&local, false).is_ok());
        let remote = reqwest::Url::parse("http://192.0.2.1:8428/write").unwrap();
        assert!(check_loopback(&remote, false).is_err());
        assert!(check_loopback(&remote, true).is_ok());
    }
}
