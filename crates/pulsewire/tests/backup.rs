//! `pulsewire backup` and `pulsewire restore` end to end: the source node runs in-process on a
//! loopback port (testkit), while backup, restore and the restored node are the real binary, so
//! the command lines, the HTTP snapshot endpoints and the data-directory lock are all exercised.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pulsewire_server::Config;
use pulsewire_testkit::TestServer;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_pulsewire");
/// Hosts written per request; each line carries two fields, so 2x as many series.
const HOSTS: u64 = 4;

async fn start(data_dir: &Path) -> TestServer {
    TestServer::start(Config {
        data_dir: data_dir.to_path_buf(),
        ..pulsewire_testkit::test_config()
    })
    .await
}

async fn stop(server: TestServer) {
    server.server.shutdown();
    server.server.wait().await.unwrap();
}

async fn pulsewire(args: &[&str]) -> Output {
    let run = Command::new(BIN).args(args).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("pulsewire finishes within a minute")
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn backup(server: &TestServer, out: &Path) -> Output {
    pulsewire(&["backup", "--server", &server.url(""), "--out", path(out)]).await
}

async fn restore(from: &Path, data_dir: &Path, force: bool) -> Output {
    let mut args = vec!["restore", "--from", path(from), "--data-dir", path(data_dir)];
    if force {
        args.push("--force");
    }
    pulsewire(&args).await
}

/// The line-protocol body of request `k`: one line per host, at `base + k` ms, with values
/// derived from `k` so any point can be checked without keeping a log.
fn request_body(base: i64, k: u64) -> String {
    (0..HOSTS)
        .map(|j| {
            format!(
                "bk,host=h{j} v={},n={}i {}\n",
                value_v(k, j),
                value_n(k, j),
                base + k as i64
            )
        })
        .collect()
}

fn value_v(k: u64, j: u64) -> f64 {
    k as f64 + j as f64 * 0.25
}

fn value_n(k: u64, j: u64) -> i64 {
    (k * 10 + j) as i64
}

async fn write(server: &TestServer, body: &str) {
    let resp = server
        .http
        .post(server.url("/write?db=bk&precision=ms"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204, "{}", resp.text().await.unwrap());
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One client writing request after request, each sent only once the previous one was
/// acknowledged, so request numbers order both sending and acknowledgement.
struct Writer {
    /// Requests sent so far (request `sent - 1` may still be in flight).
    sent: Arc<AtomicU64>,
    /// Requests acknowledged so far.
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Writer {
    fn spawn(server: &TestServer, base: i64) -> Writer {
        let sent = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (http, url) = (server.http.clone(), server.url("/write?db=bk&precision=ms"));
        let task = tokio::spawn({
            let (sent, acked, stop) = (sent.clone(), acked.clone(), stop.clone());
            async move {
                let mut k = 0;
                while !stop.load(Ordering::SeqCst) {
                    sent.store(k + 1, Ordering::SeqCst);
                    let resp = http.post(&url).body(request_body(base, k)).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 204, "write {k}: {}", resp.text().await.unwrap());
                    acked.store(k + 1, Ordering::SeqCst);
                    k += 1;
                }
            }
        });
        Writer {
            sent,
            acked,
            stop,
            task,
        }
    }

    async fn wait_acked(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(!self.task.is_finished(), "the writer stopped");
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} writes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops writing and returns how many requests were acknowledged.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.acked.load(Ordering::SeqCst)
    }
}

/// A `pulsewire serve` child process on a loopback port; killed when dropped.
struct Node {
    _child: Child,
    url: String,
}

async fn serve(data_dir: &Path) -> Node {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", path(data_dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, url)) = line.split_once("is serving on ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .expect("pulsewire serve starts within 20 s");
    let Some(url) = found else {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
        panic!("pulsewire serve did not start: {err}");
    };
    // Keep reading stdout so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Node { _child: child, url }
}

/// Points of field `field` per host, as `(ms, value)`, from a node's query API.
async fn query(url: &str, field: &str, from: i64, to: i64) -> BTreeMap<String, Vec<(i64, Value)>> {
    let resp = reqwest::get(format!("{url}/api/v1/query?db=bk&q=bk.{field}&from={from}&to={to}"))
        .await
        .unwrap();
    assert!(resp.status().is_success(), "query: {}", resp.status());
    let body: Value = resp.json().await.unwrap();
    let mut out = BTreeMap::new();
    for s in body["series"].as_array().unwrap() {
        let host = s["tags"]["host"].as_str().unwrap().to_owned();
        let points = s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].clone()))
            .collect();
        assert!(out.insert(host, points).is_none(), "one series per host");
    }
    out
}

fn snapshot_dirs(data_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data_dir.join("snapshots")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

fn index(backup: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(backup.join("BACKUP.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_writes_restores_a_consistent_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let (node_dir, out, restored) = (
        tmp.path().join("node"),
        tmp.path().join("backup"),
        tmp.path().join("restored"),
    );
    let server = start(&node_dir).await;
    let base = now_ms() - 60_000;
    let writer = Writer::spawn(&server, base);
    writer.wait_acked(100).await;
    // A part sealed before the backup's own checkpoint, so the backup holds both kinds.
    let store = server.server.state().store().clone();
    tokio::task::spawn_blocking(move || store.checkpoint())
        .await
        .unwrap()
        .unwrap();
    writer.wait_acked(200).await;

    let acked_before = writer.acked.load(Ordering::SeqCst);
    let result = backup(&server, &out).await;
    let sent_before_end = writer.sent.load(Ordering::SeqCst);
    assert!(result.status.success(), "backup failed: {}", stderr(&result));
    writer.wait_acked(sent_before_end + 20).await;
    let written = writer.finish().await;
    assert!(snapshot_dirs(&node_dir).is_empty(), "the snapshot was not deleted");
    stop(server).await;

    let log = stderr(&result);
    assert!(log.contains("backup [1/"), "no progress lines: {log}");
    let idx = index(&out);
    let files = idx["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"MANIFEST") && names.contains(&"series.log"),
        "{names:?}"
    );
    assert!(
        names.iter().filter(|n| n.starts_with("parts/")).count() >= 2,
        "{names:?}"
    );
    for f in files {
        let on_disk = std::fs::metadata(out.join(f["path"].as_str().unwrap())).unwrap().len();
        assert_eq!(Some(on_disk), f["bytes"].as_u64(), "{f}");
        assert_eq!(f["crc32"].as_str().unwrap().len(), 8, "{f}");
    }

    let result = restore(&out, &restored, false).await;
    assert!(result.status.success(), "restore failed: {}", stderr(&result));
    let node = serve(&restored).await;
    let v = query(&node.url, "v", base, base + 10_000_000).await;
    let n = query(&node.url, "n", base, base + 10_000_000).await;
    assert_eq!(v.len() as u64, HOSTS, "{:?}", v.keys());
    assert_eq!(n.len() as u64, HOSTS, "{:?}", n.keys());
    // One write request is one atomic store write, so the backup holds requests 0..count for
    // one count across every series: none after a gap, none torn between series.
    let count = v["h0"].len() as u64;
    assert!(
        (acked_before..=sent_before_end).contains(&count),
        "the backup holds {count} requests; {acked_before} were acknowledged before it started, \
         {sent_before_end} sent before it ended ({written} in all)"
    );
    for j in 0..HOSTS {
        let host = format!("h{j}");
        let expect_v: Vec<(i64, Value)> = (0..count)
            .map(|k| (base + k as i64, Value::from(value_v(k, j))))
            .collect();
        let expect_n: Vec<(i64, Value)> = (0..count)
            .map(|k| (base + k as i64, Value::from(value_n(k, j))))
            .collect();
        assert_eq!(v[&host], expect_v, "field v of {host}");
        assert_eq!(n[&host], expect_n, "field n of {host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_running_node_and_a_store_in_place_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let (node_dir, out) = (tmp.path().join("node"), tmp.path().join("backup"));
    let server = start(&node_dir).await;
    let base = now_ms() - 60_000;
    write(&server, &request_body(base, 0)).await;
    let result = backup(&server, &out).await;
    assert!(result.status.success(), "backup failed: {}", stderr(&result));

    let refused = restore(&out, &node_dir, true).await;
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(
        msg.contains(&format!(
            "data directory {} is in use by another Pulsewire process",
            node_dir.display()
        )),
        "{msg}"
    );
    // Written after the backup, so its absence shows the old store was replaced.
    write(&server, &request_body(base, 1)).await;
    stop(server).await;

    let refused = restore(&out, &node_dir, false).await;
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(msg.contains("already holds a store; pass --force"), "{msg}");

    let forced = restore(&out, &node_dir, true).await;
    assert!(forced.status.success(), "restore --force failed: {}", stderr(&forced));
    let aside: Vec<PathBuf> = std::fs::read_dir(&node_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("tsdb.before-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("MANIFEST").exists());
    let msg = stderr(&forced);
    assert!(
        msg.contains(&format!("moved the existing store aside to {}", aside[0].display())),
        "{msg}"
    );

    let node = serve(&node_dir).await;
    let v = query(&node.url, "v", base, base + 1000).await;
    assert_eq!(v["h0"], vec![(base, Value::from(value_v(0, 0)))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_corrupted_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (node_dir, out, target) = (
        tmp.path().join("node"),
        tmp.path().join("backup"),
        tmp.path().join("target"),
    );
    let server = start(&node_dir).await;
    let base = now_ms() - 60_000;
    for k in 0..20 {
        write(&server, &request_body(base, k)).await;
    }
    let result = backup(&server, &out).await;
    assert!(result.status.success(), "backup failed: {}", stderr(&result));
    stop(server).await;

    let idx = index(&out);
    let part = idx["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .find(|p| p.starts_with("parts/raw-"))
        .unwrap()
        .to_owned();
    let mut bytes = std::fs::read(out.join(&part)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(out.join(&part), &bytes).unwrap();

    let refused = restore(&out, &target, false).await;
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(msg.contains(&format!("checksum mismatch in {part}")), "{msg}");
    assert!(!target.join("tsdb").exists(), "a refused restore wrote a store");
    assert!(
        !target.join("tsdb.restoring").exists(),
        "a refused restore left its staging directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_refuses_a_non_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (node_dir, out) = (tmp.path().join("node"), tmp.path().join("backup"));
    let server = start(&node_dir).await;
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "not a backup").unwrap();

    let refused = backup(&server, &out).await;
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(msg.contains("exists and is not empty"), "{msg}");
    let left: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left, vec![out.join("keep.txt")]);
    assert!(snapshot_dirs(&node_dir).is_empty(), "a refused backup left a snapshot");
    stop(server).await;
}

#[tokio::test]
async fn restore_refuses_a_directory_without_a_backup_index() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = restore(tmp.path(), &tmp.path().join("target"), false).await;
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(msg.contains("is not a complete Pulsewire backup"), "{msg}");
    assert!(!tmp.path().join("target").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_cannot_open_a_data_directory_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let server = start(&node_dir).await;
    let second = pulsewire(&["serve", "--listen", "127.0.0.1:0", "--data-dir", path(&node_dir)]).await;
    assert!(!second.status.success());
    let msg = stderr(&second);
    assert!(
        msg.contains(&format!(
            "data directory {} is in use by another Pulsewire process",
            node_dir.display()
        )),
        "{msg}"
    );
    stop(server).await;
    // Released with the server: a node starts on it now.
    let node = serve(&node_dir).await;
    assert!(node.url.starts_with("http://127.0.0.1:"), "{}", node.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_node_with_auth_needs_an_admin_key_file() {
    use pulsewire_server::auth::{self, Scope};
    let tmp = tempfile::tempdir().unwrap();
    let node_dir = tmp.path().join("node");
    let mut config = Config {
        data_dir: node_dir.clone(),
        ..pulsewire_testkit::test_config()
    };
    config.auth.enabled = true;
    let keys = auth::keys_path(&config.auth, &node_dir);
    let (_, read_key) = auth::create_key(&keys, "r", "default", vec![Scope::Read]).unwrap();
    let (_, admin_key) = auth::create_key(&keys, "ops", "default", vec![Scope::Admin]).unwrap();
    let server = TestServer::start(config).await;
    let (read_file, admin_file) = (tmp.path().join("read.key"), tmp.path().join("admin.key"));
    std::fs::write(&read_file, format!("{read_key}\n")).unwrap();
    std::fs::write(&admin_file, format!("{admin_key}\n")).unwrap();

    let url = server.url("");
    for (key_file, want) in [(None, "401"), (Some(&read_file), "403")] {
        let out = tmp.path().join(format!("refused-{want}"));
        let mut args = vec!["backup", "--server", &url, "--out", path(&out)];
        if let Some(f) = key_file {
            args.extend(["--api-key-file", path(f)]);
        }
        let refused = pulsewire(&args).await;
        assert!(!refused.status.success());
        let msg = stderr(&refused);
        assert!(msg.contains(want), "{msg}");
    }
    let out = tmp.path().join("backup");
    let done = pulsewire(&[
        "backup",
        "--server",
        &url,
        "--out",
        path(&out),
        "--api-key-file",
        path(&admin_file),
    ])
    .await;
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(out.join("BACKUP.json").exists());
    stop(server).await;
}
