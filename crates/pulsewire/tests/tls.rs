//! TLS with the real binary: `pulsewire serve --tls-cert --tls-key` serves HTTPS, SIGHUP swaps
//! the certificate for new connections (compared by the peer certificate each client sees), a
//! garbage file on SIGHUP keeps the old certificate, and bad files refuse the start naming the
//! file.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_pulsewire");

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Writes a fresh self-signed certificate for localhost; returns its PEM and DER.
fn write_cert(dir: &Path, cn: &str) -> (String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert written");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key written");
    (cert.pem(), cert.der().to_vec())
}

fn client(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("cert"))
        .tls_info(true)
        .build()
        .expect("client")
}

/// The certificate a new connection is served, or None if the handshake fails.
async fn served_cert(pem: &str, url: &str) -> Option<Vec<u8>> {
    let resp = client(pem).get(format!("{url}/health")).send().await.ok()?;
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
}

/// Starts `pulsewire serve` and returns the child, the URL it printed and its log lines.
async fn serve(args: &[&str]) -> (Child, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("pulsewire serve spawns");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut err = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = err.next_line().await {
            sink.lock().expect("log").push(l);
        }
    });
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
    assert!(url.starts_with("https://"), "{url}");
    (child, format!("https://localhost:{port}"), log)
}

fn hup(child: &Child) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_bad_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("dir");
    let (pem1, der1) = write_cert(&tls, "first");
    let data = dir.path().join("data");
    let (child, url, log) = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
        "--tls-cert",
        path(&tls.join("cert.pem")),
        "--tls-key",
        path(&tls.join("key.pem")),
    ])
    .await;
    assert_eq!(served_cert(&pem1, &url).await, Some(der1.clone()));

    let (pem2, der2) = write_cert(&tls, "second");
    hup(&child);
    // Reloading is asynchronous to the signal: wait for new connections to see the new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_cert(&pem2, &url).await == Some(der2.clone()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not swap the certificate; log:\n{:?}",
            log.lock().expect("log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        served_cert(&pem1, &url).await,
        None,
        "the old certificate is gone for new connections"
    );

    // A garbage certificate file: the reload fails, is logged, and the current one stays.
    std::fs::write(tls.join("cert.pem"), "garbage").expect("written");
    hup(&child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("not reloaded") && l.contains("cert.pem"));
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload error logged: {:?}",
            log.lock().expect("log")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served_cert(&pem2, &url).await, Some(der2));
    // The reloads are in the audit log.
    let audit = std::fs::read_to_string(data.join("audit").join("audit.log")).expect("audit log");
    let reloads: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "tls.reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{audit}");
    assert_eq!(reloads[0]["outcome"], "ok");
    assert!(
        reloads[0]["detail"]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("second"))
    );
    assert_eq!(reloads[1]["outcome"], "failed");
}

#[tokio::test]
async fn bad_tls_files_refuse_to_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("dir");
    write_cert(&tls, "x");
    std::fs::write(tls.join("bad-key.pem"), "not a key").expect("written");
    let data = dir.path().join("data");
    for (cert, key, named) in [
        ("missing.pem", "key.pem", "missing.pem"),
        ("cert.pem", "bad-key.pem", "bad-key.pem"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", path(&data)])
            .args(["--tls-cert", path(&tls.join(cert)), "--tls-key", path(&tls.join(key))])
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .expect("a refused start ends at once")
            .expect("runs");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{stderr}");
    }
    // Only one of the two files: a configuration error naming the missing key.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", path(&data)])
        .args(["--tls-cert", path(&tls.join("cert.pem"))])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.key_file"));
}
