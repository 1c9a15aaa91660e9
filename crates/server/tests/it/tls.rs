//! TLS end to end: a self-signed certificate made at test time, the real server serving it, and
//! real clients trusting it: HTTP/1.1 and HTTP/2 (by ALPN), a WebSocket over wss, an SSE stream
//! over https; a certificate swapped in while connections stay open; bad files refused at start
//! with the file named; a plain-HTTP client on the TLS port refused without disturbing others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use pulsewire_server::Server;
use pulsewire_testkit::{Sse, TestServer, Ws, test_config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM, cert DER).
pub fn self_signed(cn: &str) -> (String, String, Vec<u8>) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

pub fn write_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf, String, Vec<u8>) {
    std::fs::create_dir_all(dir).expect("dir");
    let (cert, key, der) = self_signed(cn);
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert).expect("cert written");
    std::fs::write(&key_path, &key).expect("key written");
    (cert_path, key_path, cert, der)
}

fn client(cert_pem: &str, http1_only: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("cert"))
        .tls_info(true);
    let b = if http1_only { b.http1_only() } else { b };
    b.build().expect("client")
}

fn peer_cert(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec()
}

async fn start_tls(tag: &str) -> (TestServer, PathBuf, String, Vec<u8>) {
    let mut config = test_config();
    let dir = config.data_dir.join(format!("tls-{tag}"));
    let (cert, key, pem, der) = write_cert(&dir, "pulsewire-test-1");
    config.tls.cert_file = cert;
    config.tls.key_file = key;
    (TestServer::start(config).await, dir, pem, der)
}

fn https(s: &TestServer, path: &str) -> String {
    format!("https://localhost:{}{}", s.addr().port(), path)
}

async fn wss(s: &TestServer, cert_pem: &str) -> Ws {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("pem");
    roots.add(der).expect("root added");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://localhost:{}/ws", s.addr().port());
    let (inner, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
    )
    .await
    .expect("wss connects");
    Ws { inner }
}

#[tokio::test]
async fn https_serves_http1_and_http2_by_alpn() {
    let (s, _dir, pem, der) = start_tls("alpn").await;
    let h2 = client(&pem, false);
    let resp = h2.get(https(&s, "/health")).send().await.expect("https request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "h2 negotiated by ALPN");
    assert_eq!(peer_cert(&resp), der);
    let h1 = client(&pem, true);
    let resp = h1.get(https(&s, "/health")).send().await.expect("https request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    // A publish over HTTP/2 reaches the hub (the router, extractors and limits all work).
    let resp = h2
        .post(https(&s, "/api/v1/publish"))
        .json(&serde_json::json!({"channel": "news", "data": {"n": 1}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    // Plain HTTP on the TLS port is not served.
    assert!(s.http.get(s.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn websocket_over_wss_and_sse_over_https_deliver() {
    let (s, _dir, pem, _) = start_tls("wss").await;
    let mut ws = wss(&s, &pem).await;
    ws.subscribe(1, &["news"]).await;
    let http = client(&pem, false);
    let resp = http
        .get(https(&s, "/sse?channels=news"))
        .send()
        .await
        .expect("sse over https");
    assert_eq!(resp.status(), 200);
    let mut sse = Sse::from_response(resp);
    assert_eq!(sse.recv().await.event, "subscribed");
    let resp = http
        .post(https(&s, "/api/v1/publish"))
        .json(&serde_json::json!({"channel": "news", "data": {"n": 7}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status(), 200);
    let m = ws.messages(1).await;
    assert_eq!(m[0]["data"]["n"], 7);
    let ev = sse.messages(1).await;
    assert_eq!(ev[0].data["data"]["n"], 7, "{:?}", ev[0]);
    // The WebSocket's peer address came through (ConnectInfo): the clients list shows it.
    let admin = http
        .get(https(&s, "/api/v1/clients"))
        .send()
        .await
        .expect("clients")
        .text()
        .await
        .expect("body");
    assert!(admin.contains("127.0.0.1:"), "{admin}");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_refused_and_others_go_on() {
    let (s, _dir, pem, _) = start_tls("plain").await;
    let http = client(&pem, false);
    let mut ws = wss(&s, &pem).await;
    ws.subscribe(1, &["news"]).await;
    let mut raw = tokio::net::TcpStream::connect(s.addr()).await.expect("tcp");
    raw.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("written");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(pulsewire_testkit::WAIT, raw.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection");
    assert!(
        !buf.starts_with(b"HTTP/"),
        "no HTTP answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // The refusal is counted, and everyone else is served.
    let metrics = http
        .get(https(&s, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("pulsewire_tls_handshake_failures_total 1"),
        "{metrics}"
    );
    http.post(https(&s, "/api/v1/publish"))
        .json(&serde_json::json!({"channel": "news", "data": 1}))
        .send()
        .await
        .expect("publish");
    assert_eq!(ws.messages(1).await[0]["data"], 1);
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let (s, dir, pem1, der1) = start_tls("reload").await;
    let mut ws = wss(&s, &pem1).await;
    ws.subscribe(1, &["news"]).await;
    let old = client(&pem1, false);
    let (_, _, pem2, der2) = write_cert(&dir, "pulsewire-test-2");
    let info = s.server.reload_tls().expect("reloads").expect("TLS on");
    assert!(info.subject.contains("pulsewire-test-2"), "{info:?}");
    let new = client(&pem2, true);
    let resp = new.get(https(&s, "/health")).send().await.expect("new cert trusted");
    assert_eq!(peer_cert(&resp), der2);
    assert_ne!(der1, der2);
    // The open WebSocket keeps its session: it still gets messages.
    new.post(https(&s, "/api/v1/publish"))
        .json(&serde_json::json!({"channel": "news", "data": 2}))
        .send()
        .await
        .expect("publish");
    assert_eq!(ws.messages(1).await[0]["data"], 2);
    // A client trusting only the old certificate cannot make a new connection.
    assert!(old.get(https(&s, "/health")).send().await.is_err());
    // A garbage file keeps the current certificate.
    std::fs::write(dir.join("cert.pem"), "not a certificate").expect("written");
    let err = s.server.reload_tls().expect_err("garbage refused");
    assert!(format!("{err:#}").contains("cert.pem"), "{err:#}");
    let resp = client(&pem2, true)
        .get(https(&s, "/health"))
        .send()
        .await
        .expect("still served");
    assert_eq!(peer_cert(&resp), der2);
}

#[tokio::test]
async fn bad_certificate_or_key_files_refuse_to_start_naming_the_file() {
    let dir = test_config().data_dir.join("bad-tls");
    let (cert, key, _, _) = write_cert(&dir, "x");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\n").expect("written");
    let (other_cert, _other_key, _, _) = write_cert(&dir.join("other"), "y");
    let cases = [
        (dir.join("missing.pem"), key.clone(), "missing.pem"),
        (garbage.clone(), key.clone(), "garbage.pem"),
        (cert.clone(), garbage.clone(), "garbage.pem"),
        (cert.clone(), dir.join("nokey.pem"), "nokey.pem"),
        // A key that is not the certificate's.
        (other_cert.clone(), key.clone(), "key.pem"),
    ];
    for (c, k, named) in cases {
        let mut config = test_config();
        config.tls.cert_file = c.clone();
        config.tls.key_file = k.clone();
        let err = match Server::start(config).await {
            Ok(_) => panic!("started with {c:?} {k:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(named), "{c:?} {k:?}: {err}");
    }
}

#[tokio::test]
async fn sse_stream_survives_next_to_http2_requests() {
    // Many HTTP/2 requests on one connection while an SSE stream (HTTP/1.1) is open.
    let (s, _dir, pem, _) = start_tls("mux").await;
    let http = client(&pem, false);
    let resp = client(&pem, true)
        .get(https(&s, "/sse?channels=news"))
        .send()
        .await
        .expect("sse");
    let mut sse = Sse::from_response(resp);
    assert_eq!(sse.recv().await.event, "subscribed");
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for i in 0..20 {
        let http = http.clone();
        let url = https(&s, "/api/v1/publish");
        pending.push(async move {
            http.post(url)
                .json(&serde_json::json!({"channel": "news", "data": i}))
                .send()
                .await
                .map(|r| (r.status().as_u16(), r.version()))
        });
    }
    while let Some(r) = pending.next().await {
        let (status, version) = r.expect("request");
        assert_eq!((status, version), (200, reqwest::Version::HTTP_2));
    }
    assert_eq!(sse.messages(20).await.len(), 20);
}
