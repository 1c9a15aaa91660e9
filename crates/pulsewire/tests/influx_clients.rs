//! The official InfluxDB Python client libraries against the real `pulsewire` binary:
//! `influxdb-client` (2.x API, `/api/v2/write`) and `influxdb` (1.x API, `/write`) write points
//! with tags, every field type, ns/us/ms/s timestamps, escaped names and gzip bodies, plus a batch
//! with a type conflict whose error must reach the caller with Pulsewire's message
//! (`influx_clients.py` beside this file does the writing and checks what the libraries raise).
//! This test then reads everything back through `/api/v1/query` and `/api/v1/series`: every
//! point with its exact value and type, nothing more.
//!
//! The libraries come from a virtualenv with `requirements-influx.txt` installed. `.ci/run`
//! creates one in `target/ci-venv` and exports `PW_TEST_PYTHON`; for a local run:
//!
//! ```sh
//! python3 -m venv .venv-test && .venv-test/bin/pip install -r crates/pulsewire/tests/requirements-influx.txt
//! ```
//!
//! The interpreter is `$PW_TEST_PYTHON` if set, else `.venv-test/bin/python`, else
//! `target/ci-venv/bin/python` (both under the workspace root). Without the libraries the test
//! fails and says how to install them; it never skips. (The variable does not start with
//! `PULSEWIRE_`: the server reads every such variable as configuration.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

const PYTHON_VAR: &str = "PW_TEST_PYTHON";
const INSTALL: &str = "python3 -m venv .venv-test && \
                       .venv-test/bin/pip install -r crates/pulsewire/tests/requirements-influx.txt";
/// The libraries' own run: a debug server, two clients, a few hundred points.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the workspace root")
        .to_path_buf()
}

/// The interpreter with the client libraries; fails with the way to install them.
fn python() -> PathBuf {
    let root = workspace();
    let candidates: Vec<(PathBuf, String)> = match std::env::var_os(PYTHON_VAR) {
        Some(p) => vec![(PathBuf::from(p), format!("${PYTHON_VAR}"))],
        None => [".venv-test/bin/python", "target/ci-venv/bin/python"]
            .iter()
            .map(|rel| (root.join(rel), format!("<workspace>/{rel}")))
            .collect(),
    };
    let Some((python, _)) = candidates.iter().find(|(p, _)| p.exists()) else {
        panic!(
            "no Python with the InfluxDB client libraries: looked at {}.\nInstall them from the workspace root \
             with\n  {INSTALL}\nor point {PYTHON_VAR} at a Python that has them (.ci/run does both).",
            candidates
                .iter()
                .map(|(p, from)| format!("{from} ({})", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let check = Command::new(python)
        .args(["-c", "import influxdb, influxdb_client"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        check.status.success(),
        "{} lacks the InfluxDB client libraries:\n{}\nInstall them from the workspace root with\n  {INSTALL}\n\
         or point {PYTHON_VAR} at a Python that has them.",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    python.clone()
}

/// The server process, killed when dropped.
struct Node {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Node {
    fn start() -> (Node, SocketAddr) {
        let dir = std::env::temp_dir().join(format!(
            "pulsewire-influx-clients-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir_all(&dir).expect("create the data directory");
        let log = dir.join("server.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the server log");
        let err = out.try_clone().expect("clone the log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pulsewire"));
        // The server reads every PULSEWIRE_* variable as configuration: none of the caller's.
        for (key, _) in std::env::vars() {
            if key.starts_with("PULSEWIRE_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start the pulsewire binary");
        let mut node = Node { child, log, dir };
        let addr = node.wait_for_address();
        (node, addr)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_address(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self.log_text().lines().find_map(|l| {
                l.split_once("is serving on http://")
                    .and_then(|(_, a)| a.trim().parse().ok())
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited with {status}; its log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the server printed no address; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("server data and log kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A selector name in double quotes, so that any measurement or field name can be selected.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

type Tags = BTreeMap<String, String>;
/// Per database and measurement, per field and tags: the written type and points.
type Written = BTreeMap<(String, String), BTreeMap<(String, Tags), (String, BTreeMap<i64, Value>)>>;

fn tags_of(v: &Value) -> Tags {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// One stored series as the query API shows it.
#[derive(Default)]
struct Stored {
    kind: String,
    points: BTreeMap<i64, Value>,
}

/// Every series of one measurement in one database, by field and tags.
async fn stored(http: &reqwest::Client, base: &str, db: &str, measurement: &str) -> BTreeMap<(String, Tags), Stored> {
    let q = quoted(measurement);
    let get = |path: &str, extra: Vec<(&'static str, String)>| {
        let mut params = vec![("q", q.clone()), ("db", db.to_string())];
        params.extend(extra);
        http.get(format!("{base}{path}")).query(&params).send()
    };
    let to = (i64::from(u32::MAX) * 1_000).to_string();
    let resp = get("/api/v1/query", vec![("from", "0".into()), ("to", to)])
        .await
        .expect("query sent");
    assert_eq!(resp.status().as_u16(), 200, "query {q} in {db}");
    let body: Value = resp.json().await.expect("query answer is JSON");
    let mut out: BTreeMap<(String, Tags), Stored> = BTreeMap::new();
    for s in body["series"].as_array().into_iter().flatten() {
        let key = (s["field"].as_str().unwrap_or_default().to_string(), tags_of(&s["tags"]));
        let entry = out.entry(key).or_default();
        for p in s["points"].as_array().into_iter().flatten() {
            entry.points.insert(
                p[0].as_i64().expect("timestamp"),
                p.get(1).cloned().unwrap_or(Value::Null),
            );
        }
    }
    let resp = get("/api/v1/series", Vec::new()).await.expect("series query sent");
    assert_eq!(resp.status().as_u16(), 200, "series {q} in {db}");
    let body: Value = resp.json().await.expect("series answer is JSON");
    for s in body["series"].as_array().into_iter().flatten() {
        let key = (s["field"].as_str().unwrap_or_default().to_string(), tags_of(&s["tags"]));
        out.entry(key).or_default().kind = s["type"].as_str().unwrap_or_default().to_string();
    }
    out
}

/// Whether a stored value is the value written, compared as the written type.
fn same_value(kind: &str, written: &Value, stored: &Value) -> bool {
    match kind {
        "float" => written.as_f64().is_some_and(|w| stored.as_f64() == Some(w)),
        "integer" => written.as_i64().is_some_and(|w| stored.as_i64() == Some(w)),
        "boolean" => written.as_bool().is_some_and(|w| stored.as_bool() == Some(w)),
        "string" => written.as_str().is_some_and(|w| stored.as_str() == Some(w)),
        _ => false,
    }
}

#[tokio::test]
async fn official_influxdb_clients_write_through_both_endpoints() {
    let started = Instant::now();
    let python = python();
    let (node, addr) = Node::start();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    common::wait_ready(&http, &base, deadline, "server start", || node.log_text()).await;

    let written_path = node.dir.join("written.json");
    let script = workspace().join("crates/pulsewire/tests/influx_clients.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--url", &base, "--out"])
        .arg(&written_path)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within {SCRIPT_TIMEOUT:?}", script.display()))
        .expect("run the client script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stderr}\n{}\nserver log:\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        node.log_text()
    );
    // What the libraries raised for the type conflicts, for the record.
    eprint!("{stderr}");

    let written: Value = serde_json::from_slice(&fs::read(&written_path).expect("the script's output"))
        .expect("the script's output is JSON");
    let points = written["points"].as_array().cloned().unwrap_or_default();
    assert!(points.len() > 200, "the script wrote too little to check: {written}");

    // Group what was written by the series it lands in.
    let mut expected = Written::new();
    for p in &points {
        let db = p["db"].as_str().expect("db").to_string();
        let measurement = p["measurement"].as_str().expect("measurement").to_string();
        let field = p["field"].as_str().expect("field").to_string();
        let kind = p["type"].as_str().expect("type").to_string();
        let ts = p["ts"].as_i64().expect("ts");
        let series = expected
            .entry((db, measurement))
            .or_default()
            .entry((field, tags_of(&p["tags"])))
            .or_insert_with(|| (kind.clone(), BTreeMap::new()));
        assert_eq!(series.0, kind, "the script wrote two types to one series: {p}");
        series.1.insert(ts, p["value"].clone());
    }

    let mut checked = 0;
    let mut found = BTreeMap::new();
    for ((db, measurement), series) in &expected {
        let stored = stored(&http, &base, db, measurement).await;
        for ((field, tags), (kind, want)) in series {
            let Some(got) = stored.get(&(field.clone(), tags.clone())) else {
                panic!(
                    "{db}: no series {measurement}.{field} with tags {tags:?}; stored: {:?}",
                    stored.keys().collect::<Vec<_>>()
                );
            };
            assert_eq!(
                &got.kind, kind,
                "{db}: {measurement}.{field} {tags:?} is stored as {}, written as {kind}",
                got.kind
            );
            for (ts, value) in want {
                let Some(stored_value) = got.points.get(ts) else {
                    panic!("{db}: {measurement}.{field} {tags:?} has no point at {ts} (written: {value})");
                };
                assert!(
                    same_value(kind, value, stored_value),
                    "{db}: {measurement}.{field} {tags:?} at {ts}: written {value} ({kind}), stored {stored_value}"
                );
                checked += 1;
            }
            let extra: BTreeSet<&i64> = got.points.keys().filter(|ts| !want.contains_key(ts)).collect();
            assert!(
                extra.is_empty(),
                "{db}: {measurement}.{field} {tags:?} has points nobody wrote at {extra:?}"
            );
        }
        found.insert((db.clone(), measurement.clone()), stored);
    }
    assert_eq!(checked, points.len());

    // The refused line of each type-conflict batch is nowhere, under any type.
    let absent = written["absent"].as_array().cloned().unwrap_or_default();
    assert_eq!(absent.len(), 2, "one refused line per library: {written}");
    for a in &absent {
        let key = (
            a["db"].as_str().unwrap_or_default().to_string(),
            a["measurement"].as_str().unwrap_or_default().to_string(),
        );
        let field = a["field"].as_str().unwrap_or_default().to_string();
        let ts = a["ts"].as_i64().expect("ts");
        let tags = tags_of(&a["tags"]);
        let stored = found.get(&key).expect("the conflict's measurement was checked");
        for ((f, t), s) in stored {
            assert!(
                !(f == &field && t == &tags && s.points.contains_key(&ts)),
                "{key:?}: the refused point {field} {tags:?} at {ts} was stored anyway: {}",
                s.points[&ts]
            );
        }
    }
    eprintln!(
        "{checked} points written by {} checked in {:?}",
        written["libraries"],
        started.elapsed()
    );
}
