//! Crash safety of ingestion, end to end: the real `pulsewire` binary runs as a child process
//! while several writers post line protocol to `/write`, and is killed with SIGKILL at a random
//! moment (half the kills aim at the checkpoint that seals the head into parts a second after
//! the start), then restarted on the same data directory, many times over. After every
//! restart each point the server acknowledged with 204 must be there with its exact value, and
//! no point may carry a value that was never written; points whose write got no answer may or
//! may not be there. The server's log must show the WAL replay of every start. While the
//! writers run, a reader queries their series too: what was acknowledged before a query must be
//! in its answer, also when the query overlaps a checkpoint (it once missed the live head then).
//!
//! A run picks a random seed and prints it; `PW_CRASH_SEED=<n>` repeats a run's kill
//! delays and batch sizes (the interleaving with the server still differs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
mod common;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

/// Kill/restart cycles in one run.
const CYCLES: usize = 20;
/// Concurrent writers, each to its own series.
const WRITERS: usize = 4;
/// Every fifth cycle kills the server while it is still opening the store (replaying the WAL,
/// rewriting a torn series log, deleting leftover parts), before it answers anything.
const EARLY_KILL_EVERY: usize = 5;
/// How long a start may take to answer `/ready`: a debug build replaying a long WAL is slow.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const DB: &str = "crash";
const MEASUREMENT: &str = "crash";

/// The float value of `seq` of `writer`: a function of both, so that a point that lands in
/// another writer's series or at another timestamp shows up as a wrong value. Quarter steps are
/// exact in f64 and in JSON.
fn float_value(writer: usize, seq: u64) -> f64 {
    (seq as f64) * 0.25 + (writer as f64) * 1_000_000.0 + 0.125
}

fn int_value(writer: usize, seq: u64) -> i64 {
    (seq as i64) * 7 - (writer as i64) * 1_000_003
}

/// What one writer sent and what the server acknowledged, across all cycles.
struct WriterLog {
    writer: usize,
    /// The sequence number of the next point; its timestamp is `base + seq` (ms).
    next: u64,
    /// Acknowledged points: sequence number to the cycle whose 204 acknowledged it.
    acked: BTreeMap<u64, usize>,
}

/// The server process; killed (SIGKILL) when dropped, so a failing test leaves nothing running.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn spawn(data_dir: &Path, log: PathBuf) -> Node {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the server log");
        let err = out.try_clone().expect("clone the log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulsewire"));
        // The server reads every PULSEWIRE_* variable as configuration: only ours may reach it.
        for (key, _) in std::env::vars() {
            if key.starts_with("PULSEWIRE_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("PULSEWIRE_TSDB__CHECKPOINT_INTERVAL", "1s")
            .env("PULSEWIRE_LOG__LEVEL", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd.spawn().expect("start the pulsewire binary");
        Node { child, log }
    }

    fn log_text(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits for the address the server prints, then for `/ready` to answer 200.
    async fn wait_ready(&mut self, http: &reqwest::Client, cycle: usize) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(addr) = self.log_text().lines().find_map(served_addr) {
                break addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "cycle {cycle}: the server exited with {status} before serving; its log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: the server did not print its address within {START_TIMEOUT:?}; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        common::wait_ready(
            http,
            &format!("http://{addr}"),
            deadline,
            &format!("cycle {cycle}"),
            || self.log_text(),
        )
        .await;
        addr
    }

    fn kill(&mut self) {
        // `Child::kill` sends SIGKILL: no shutdown hook, no final checkpoint, no flush.
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes the data directory unless the test failed, so a failure can be examined.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("data directory and server logs kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// `Pulsewire 0.1.0 is serving on http://127.0.0.1:PORT` -> the address.
fn served_addr(line: &str) -> Option<SocketAddr> {
    line.split_once("is serving on http://")?.1.trim().parse().ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `points=` of the store's "store opened: WAL replayed" line, if the log has one.
fn replayed_points(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("store opened: WAL replayed"))?;
    let rest = line.split_once("points=")?.1;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// What a kill left on disk that only an interrupted checkpoint leaves: part files the manifest
/// does not name, a manifest not yet renamed into place, or WAL segments the manifest says are
/// already in parts.
fn interrupted_checkpoint(store: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if store.join("MANIFEST.tmp").exists() {
        found.push("MANIFEST.tmp".to_string());
    }
    let manifest: Value = fs::read(store.join("MANIFEST"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let live: BTreeSet<&str> = manifest["parts"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["file"].as_str()).collect())
        .unwrap_or_default();
    let names = |dir: &str| -> Vec<String> {
        fs::read_dir(store.join(dir))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names("parts") {
        if !live.contains(name.as_str()) {
            found.push(format!("parts/{name} (not in the manifest)"));
        }
    }
    let checkpoint = manifest["wal_checkpoint"].as_u64().unwrap_or(0);
    for name in names("wal") {
        if let Some(seq) = name.strip_suffix(".wal").and_then(|s| s.parse::<u64>().ok())
            && seq <= checkpoint
        {
            found.push(format!("wal/{name} (covered by the manifest)"));
        }
    }
    found
}

/// One writer's progress in the running cycle, shared with the reader that checks it while the
/// writes go on.
#[derive(Default)]
struct Progress {
    /// Every point below this has been sent (whether or not it was acknowledged).
    sent: AtomicU64,
    /// Every point from the cycle's first one up to this was acknowledged: a writer stops at its
    /// first failed request, so its acknowledged batches of one cycle are contiguous.
    acked: AtomicU64,
}

/// What the tasks of one cycle share.
#[derive(Clone)]
struct Run {
    http: reqwest::Client,
    addr: SocketAddr,
    base: i64,
    /// Set just before the SIGKILL: from then on, failed requests are expected.
    killing: Arc<AtomicBool>,
}

impl Run {
    fn killing(&self) -> bool {
        self.killing.load(Ordering::SeqCst)
    }
}

/// Writes batches until the kill; returns where the writer stopped and what was acknowledged.
/// Any refusal, or a failed request before the kill, fails the test.
async fn write_until_killed(
    run: Run,
    writer: usize,
    mut next: u64,
    seed: u64,
    progress: Arc<Progress>,
) -> (u64, Vec<u64>) {
    let Run { http, addr, base, .. } = run.clone();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    let url = format!("http://{addr}/write?db={DB}&precision=ms");
    while !run.killing() {
        let n = rng.random_range(1..=60u64);
        let mut body = String::new();
        for seq in next..next + n {
            body.push_str(&format!(
                "{MEASUREMENT},writer=w{writer} v={},n={}i {}\n",
                float_value(writer, seq),
                int_value(writer, seq),
                base + seq as i64
            ));
        }
        let first = next;
        next += n;
        progress.sent.store(next, Ordering::SeqCst);
        match http.post(&url).body(body).send().await {
            Ok(resp) if resp.status().as_u16() == 204 => {
                acked.extend(first..next);
                progress.acked.store(next, Ordering::SeqCst);
                // Paced, so that twenty cycles stay a few hundred thousand points that a debug
                // build verifies in seconds.
                tokio::time::sleep(Duration::from_millis(rng.random_range(2..8))).await;
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                // SIGKILL can cut an answer short, but never turn it into a refusal.
                panic!("writer {writer}: /write answered {status}: {text}");
            }
            Err(e) => {
                assert!(
                    run.killing(),
                    "writer {writer}: /write failed while the server was up: {e}"
                );
                break;
            }
        }
    }
    (next, acked)
}

/// Why a check of one series did not pass.
enum Problem {
    /// The query got no answer (expected once the server is being killed).
    Unreachable(String),
    /// The answer is wrong: lost, invented or altered points.
    Wrong(String),
}

/// Fetches every point of one writer's field.
async fn points(http: &reqwest::Client, addr: SocketAddr, series: &str, to: i64) -> Result<Vec<(i64, Value)>, Problem> {
    let unreachable = |e: reqwest::Error| Problem::Unreachable(format!("query {series}: {e}"));
    let resp = http
        .get(format!("http://{addr}/api/v1/query"))
        .query(&[("q", series), ("from", "0"), ("to", &to.to_string()), ("db", DB)])
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(unreachable)?;
    if status.as_u16() != 200 {
        return Err(Problem::Wrong(format!("query {series} answered {status}: {body}")));
    }
    let found = body["series"].as_array().cloned().unwrap_or_default();
    if found.len() > 1 {
        return Err(Problem::Wrong(format!("query {series} matched several series: {body}")));
    }
    found
        .first()
        .and_then(|s| s["points"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|p| match (p[0].as_i64(), p.get(1)) {
            (Some(ts), Some(v)) => Ok((ts, v.clone())),
            _ => Err(Problem::Wrong(format!("query {series}: malformed point {p}"))),
        })
        .collect()
}

/// Checks one field of one writer: every point in `acked` (sequence number to the cycle that
/// acknowledged it) is present, and every point present was written (below `written`) with the
/// value written. Returns how many points are present.
async fn check_series(
    http: &reqwest::Client,
    addr: SocketAddr,
    base: i64,
    writer: usize,
    field: &str,
    acked: &BTreeMap<u64, usize>,
    written: impl Fn() -> u64,
) -> Result<usize, Problem> {
    let series = format!("{MEASUREMENT}.{field}{{writer=\"w{writer}\"}}");
    let expected = |seq: u64| match field {
        "v" => Value::from(float_value(writer, seq)),
        _ => Value::from(int_value(writer, seq)),
    };
    let got = points(http, addr, &series, base + 1_000_000_000).await?;
    let written = written();
    let mut present = BTreeSet::new();
    for (ts, value) in &got {
        let seq = ts - base;
        if !(0..written as i64).contains(&seq) {
            return Err(Problem::Wrong(format!(
                "{series} has a point at ts={ts} (seq {seq}) that was never written"
            )));
        }
        let seq = seq as u64;
        if *value != expected(seq) {
            return Err(Problem::Wrong(format!(
                "{series} at ts={ts} (seq {seq}) holds {value}, but {} was written",
                expected(seq)
            )));
        }
        present.insert(seq);
    }
    let missing: Vec<(u64, usize)> = acked
        .iter()
        .filter(|(seq, _)| !present.contains(seq))
        .map(|(&seq, &c)| (seq, c))
        .collect();
    if let Some(&(seq, acked_in)) = missing.first() {
        let last = missing.last().map_or(seq, |m| m.0);
        return Err(Problem::Wrong(format!(
            "{series} lost {} acknowledged points; the first is ts={} (seq {seq}, acknowledged in cycle \
             {acked_in}), the last ts={} (seq {last}); {} of {} acknowledged points are present",
            missing.len(),
            base + seq as i64,
            base + last as i64,
            acked.len() - missing.len(),
            acked.len()
        )));
    }
    Ok(present.len())
}

/// Checks every writer's data after a restart.
async fn verify(http: &reqwest::Client, addr: SocketAddr, cycle: usize, base: i64, writers: &[WriterLog]) -> usize {
    let mut total = 0;
    for w in writers {
        for field in ["v", "n"] {
            match check_series(http, addr, base, w.writer, field, &w.acked, || w.next).await {
                Ok(n) => total += n,
                Err(Problem::Wrong(msg)) => panic!("cycle {cycle}, after the restart: {msg}"),
                Err(Problem::Unreachable(msg)) => panic!("cycle {cycle}, after the restart: {msg}"),
            }
        }
    }
    total
}

/// One writer as the reader of a running cycle sees it.
struct Watched {
    writer: usize,
    /// Acknowledged in earlier cycles.
    before: BTreeMap<u64, usize>,
    /// The writer's first sequence number in this cycle.
    start: u64,
    progress: Arc<Progress>,
}

/// While the writers run (and checkpoints with them), queries the writers' series in turn: what
/// was acknowledged before a query was sent must be in its answer. Returns the checks made.
async fn read_while_writing(run: Run, cycle: usize, watched: Vec<Watched>) -> usize {
    let mut checks = 0;
    for i in 0.. {
        if run.killing() {
            break;
        }
        let Some(w) = watched.get(i % watched.len()) else {
            break;
        };
        let field = if (i / watched.len()).is_multiple_of(2) {
            "v"
        } else {
            "n"
        };
        let mut acked = w.before.clone();
        acked.extend((w.start..w.progress.acked.load(Ordering::SeqCst)).map(|seq| (seq, cycle)));
        let written = || w.progress.sent.load(Ordering::SeqCst);
        match check_series(&run.http, run.addr, run.base, w.writer, field, &acked, written).await {
            Ok(_) => checks += 1,
            Err(Problem::Wrong(msg)) => panic!("cycle {cycle}, while writing: {msg}"),
            Err(Problem::Unreachable(msg)) => {
                assert!(run.killing(), "cycle {cycle}, while writing: {msg}");
                break;
            }
        }
    }
    checks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let seed = std::env::var("PW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("crash test seed: {seed} (PW_CRASH_SEED={seed} repeats its kill delays)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = DataDir(std::env::temp_dir().join(format!(
        "pulsewire-crash-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )));
    let data_dir = dir.0.join("data");
    fs::create_dir_all(&data_dir).expect("create the data directory");
    // Timestamps start ten minutes back: well inside the raw retention, and unique per writer.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - 600_000;
    let mut writers: Vec<WriterLog> = (0..WRITERS)
        .map(|writer| WriterLog {
            writer,
            next: 0,
            acked: BTreeMap::new(),
        })
        .collect();
    let mut checkpoints_before_kill = 0;
    let mut interrupted = Vec::new();
    let mut starts = 0;
    let mut reads_while_writing = 0;

    for cycle in 1..=CYCLES + 1 {
        starts += 1;
        let mut node = Node::spawn(&data_dir, dir.0.join(format!("server-{cycle:02}.log")));
        if cycle <= CYCLES && cycle % EARLY_KILL_EVERY == 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..80))).await;
            node.kill();
            continue;
        }
        // A fresh client per start: pooled connections to the killed process are dead.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let addr = node.wait_ready(&http, cycle).await;
        let log = node.log_text();
        let replayed = replayed_points(&log);
        assert!(
            replayed.is_some(),
            "cycle {cycle}: the log of this start has no \"store opened: WAL replayed\" line with points=:\n{log}"
        );
        let present = verify(&http, addr, cycle, base, &writers).await;
        if cycle > CYCLES {
            eprintln!(
                "final check after {CYCLES} kills: {} acknowledged points, {present} field values present, \
                 WAL replay of the last start: {} points",
                writers.iter().map(|w| w.acked.len()).sum::<usize>(),
                replayed.unwrap_or(0)
            );
            break;
        }

        let killing = Arc::new(AtomicBool::new(false));
        let progress: Vec<Arc<Progress>> = writers
            .iter()
            .map(|w| {
                let p = Progress::default();
                p.sent.store(w.next, Ordering::SeqCst);
                p.acked.store(w.next, Ordering::SeqCst);
                Arc::new(p)
            })
            .collect();
        let run = Run {
            http: http.clone(),
            addr,
            base,
            killing: killing.clone(),
        };
        let tasks: Vec<_> = writers
            .iter()
            .zip(&progress)
            .map(|(w, p)| {
                tokio::spawn(write_until_killed(
                    run.clone(),
                    w.writer,
                    w.next,
                    rng.random(),
                    p.clone(),
                ))
            })
            .collect();
        let watched = writers
            .iter()
            .zip(&progress)
            .map(|(w, p)| Watched {
                writer: w.writer,
                before: w.acked.clone(),
                start: w.next,
                progress: p.clone(),
            })
            .collect();
        let reader = tokio::spawn(read_while_writing(run, cycle, watched));
        // Half the cycles aim at the first checkpoint (due one second after the store opened,
        // checked every 200 ms); the others anywhere in the writing.
        let delay = if rng.random_bool(0.5) {
            rng.random_range(900..1_400)
        } else {
            rng.random_range(50..1_500)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        killing.store(true, Ordering::SeqCst);
        node.kill();
        reads_while_writing += reader.await.expect("reader task");
        for (w, task) in writers.iter_mut().zip(tasks) {
            let (next, acked) = task.await.expect("writer task");
            w.next = next;
            for seq in acked {
                w.acked.insert(seq, cycle);
            }
        }
        let store = data_dir.join("tsdb");
        let leftovers = interrupted_checkpoint(&store);
        if !leftovers.is_empty() {
            interrupted.push((cycle, leftovers));
        }
        if node.log_text().contains("checkpoint written") {
            checkpoints_before_kill += 1;
        }
    }
    eprintln!(
        "{starts} starts, {CYCLES} kills in {:?}; {reads_while_writing} series checked while writing; \
         {checkpoints_before_kill} runs completed a checkpoint before their kill; kills that interrupted a \
         checkpoint: {}",
        started.elapsed(),
        if interrupted.is_empty() {
            "none seen".to_string()
        } else {
            interrupted
                .iter()
                .map(|(c, l)| format!("cycle {c} ({})", l.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        }
    );
    assert!(
        writers.iter().all(|w| !w.acked.is_empty()),
        "every writer must have had writes acknowledged, or the test checked nothing"
    );
}

/// A firing alert and the rule that fired it survive SIGKILL: after the restart the alert is
/// listed as firing with its original id and `since`, and the rule (created over the API) is
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_survives_sigkill() {
    let dir = DataDir(std::env::temp_dir().join(format!("pulsewire-crash-alert-{}", std::process::id())));
    let _ = fs::remove_dir_all(&dir.0);
    let data_dir = dir.0.join("data");
    fs::create_dir_all(&data_dir).expect("create the data directory");
    let http = reqwest::Client::new();
    let mut node = Node::spawn(&data_dir, dir.0.join("server-1.log"));
    let addr = node.wait_ready(&http, 1).await;
    let rule = serde_json::json!({
        "name": "high_cpu", "kind": "threshold", "expr": "last(cpu.usage)", "window": "1m",
        "op": ">", "threshold": 90.0
    });
    let resp = http
        .post(format!("http://{addr}/api/v1/rules"))
        .json(&rule)
        .send()
        .await
        .expect("rule posted");
    assert_eq!(resp.status().as_u16(), 201);
    let resp = http
        .post(format!("http://{addr}/write?db=d"))
        .body("cpu,host=a usage=99")
        .send()
        .await
        .expect("write sent");
    assert_eq!(resp.status().as_u16(), 204);
    let firing = |addr: SocketAddr| {
        let http = http.clone();
        async move {
            let v: Value = http
                .get(format!("http://{addr}/api/v1/alerts?state=firing"))
                .send()
                .await
                .expect("alerts listed")
                .json()
                .await
                .expect("alerts JSON");
            v["alerts"].as_array().cloned().unwrap_or_default()
        }
    };
    let before = firing(addr).await;
    assert_eq!(before.len(), 1, "{before:?}");
    // The state is written within one alert tick (250 ms by default) of the change.
    tokio::time::sleep(Duration::from_millis(800)).await;
    node.kill();

    let mut node = Node::spawn(&data_dir, dir.0.join("server-2.log"));
    let addr = node.wait_ready(&http, 2).await;
    let after = firing(addr).await;
    assert_eq!(after.len(), 1, "{after:?}; log:\n{}", node.log_text());
    assert_eq!(
        (&after[0]["id"], &after[0]["since"]),
        (&before[0]["id"], &before[0]["since"])
    );
    let rules: Value = http
        .get(format!("http://{addr}/api/v1/rules/high_cpu"))
        .send()
        .await
        .expect("rule read")
        .json()
        .await
        .expect("rule JSON");
    assert_eq!(rules["source"], "api");
}
