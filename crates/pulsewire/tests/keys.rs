//! `pulsewire keys` and authentication end to end: keys created, listed and revoked by the real
//! binary, used against a real `pulsewire serve`, and the refusal to serve unauthenticated on a
//! non-loopback address unless `--insecure` is given.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_pulsewire");

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

async fn keys(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("keys")
        .args(args)
        .output()
        .await
        .expect("pulsewire keys runs")
}

/// Starts `pulsewire serve` and returns the child and the base URL it printed (with its port,
/// reached over loopback whatever address it listens on).
async fn serve(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pulsewire serve spawns");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, url)) = line.split_once("is serving on ") {
                return url.trim().to_owned();
            }
        }
        panic!("pulsewire serve ended without serving");
    })
    .await
    .expect("pulsewire serve starts within 20 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let port = url.rsplit(':').next().expect("port").to_owned();
    (child, format!("http://127.0.0.1:{port}"))
}

async fn write(http: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, String) {
    let mut req = http
        .post(format!("{url}/write?db=t&precision=s"))
        .body("cli,host=a v=1");
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("write sent");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn keys_created_by_the_cli_authenticate_against_a_served_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = keys(&[
        "create",
        "--data-dir",
        path(&data),
        "--tenant",
        "acme",
        "--scope",
        "ingest,read",
        "--name",
        "agent",
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).expect("utf-8").trim().to_owned();
    assert!(key.starts_with("pw_"), "{key}");
    let file = std::fs::read_to_string(data.join("auth").join("keys.json")).expect("keys file");
    assert!(!file.contains(&key), "the keys file holds the key itself: {file}");

    let out = keys(&["list", "--data-dir", path(&data)]).await;
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).expect("utf-8");
    let row = listed.lines().nth(1).expect("one key listed");
    assert!(
        row.contains("agent") && row.contains("acme") && row.contains("ingest,read") && row.ends_with("no"),
        "{listed}"
    );
    assert!(!listed.contains(&key) && !listed.contains("sha256"), "{listed}");
    let id = row.split_whitespace().next().expect("id").to_owned();

    let bad = keys(&[
        "create",
        "--data-dir",
        path(&data),
        "--tenant",
        "acme",
        "--scope",
        "ingest,write",
    ])
    .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope \"write\""));

    let (_node, url) = serve(
        &["--listen", "127.0.0.1:0", "--data-dir", path(&data)],
        &[("PULSEWIRE_AUTH__ENABLED", "true")],
    )
    .await;
    let http = reqwest::Client::new();
    assert_eq!(write(&http, &url, Some(&key)).await.0, 204);
    let (status, body) = write(&http, &url, None).await;
    assert_eq!(status, 401, "{body}");

    let out = keys(&["revoke", "--data-dir", path(&data), &id]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let start = Instant::now();
    loop {
        let (status, body) = write(&http, &url, Some(&key)).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 204, "{body}");
        assert!(start.elapsed() < Duration::from_secs(5), "the revoked key still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = keys(&["list", "--data-dir", path(&data)]).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("yes"))
    );
    let missing = keys(&["revoke", "--data-dir", path(&data), "nosuchid"]).await;
    assert!(!missing.status.success());

    // Both key changes are in the node's audit log, next to the server's own records, each
    // a whole JSON line.
    let log = std::fs::read_to_string(data.join("audit").join("audit.log")).expect("audit log");
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |event: &str| {
        records
            .iter()
            .find(|r| r["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in {log}"))
    };
    for event in ["key.created", "key.revoked"] {
        let r = find(event);
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(r["tenant"], "acme", "{r}");
        assert_eq!(r["detail"]["key"], id.as_str(), "{r}");
        assert_eq!(r["detail"]["name"], "agent", "{r}");
        assert!(r["who"].as_str().is_some_and(|w| w.starts_with("cli:")), "{r}");
        assert!(!log.contains(&key), "the key itself is never logged");
    }
    assert_eq!(find("server.start")["who"], "server");
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "auth.failure" && r["detail"]["path"] == "/write"),
        "{log}"
    );
}

#[tokio::test]
async fn serve_refuses_a_non_loopback_address_without_auth_unless_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir", path(&data)])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("a refused start ends at once")
        .expect("pulsewire serve runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve without authentication on 0.0.0.0:"),
        "{stderr}"
    );

    let (_node, url) = serve(&["--listen", "0.0.0.0:0", "--data-dir", path(&data), "--insecure"], &[]).await;
    let ready: serde_json::Value = reqwest::get(format!("{url}/ready"))
        .await
        .expect("ready answers")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        ready["warning"].as_str().is_some_and(|w| w.contains("--insecure")),
        "{ready}"
    );
}
