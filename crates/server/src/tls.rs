//! TLS on the one listener (rustls with the ring provider): HTTPS and WSS, HTTP/2 and HTTP/1.1
//! chosen by ALPN, the certificate re-read on demand (SIGHUP in the binary) and swapped
//! atomically: new handshakes use the new certificate, open connections keep theirs, and a
//! certificate or key that does not load leaves the previous one in place.
//!
//! The accept loop ([`serve`]) does for TLS connections what `axum::serve` does for plain ones:
//! the same socket options, the `ConnectInfo<SocketAddr>` every handler and limit reads, HTTP
//! upgrades (WebSocket over HTTP/1.1), and a graceful end that stops accepting and lets requests
//! in flight finish.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::config::TlsConfig;

/// A handshake not done within this time is dropped (a client that connected and said nothing,
/// or one speaking plain HTTP that waits for an answer).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the log says about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub not_after: String,
}

/// The TLS state of a server: the acceptor (fixed) and the certificate behind it (swappable).
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
    info: RwLock<CertInfo>,
    pub metrics: TlsMetrics,
}

#[derive(Debug, Default)]
pub struct TlsMetrics {
    pub handshake_failures: Counter,
    pub reloads: Counter,
    pub reload_failures: Counter,
}

impl TlsMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pulsewire_tls_handshake_failures",
            "TLS handshakes that failed or timed out (plain HTTP on the TLS port, bad clients)",
            self.handshake_failures.clone(),
        );
        r.register(
            "pulsewire_tls_reloads",
            "Certificate reloads that took effect",
            self.reloads.clone(),
        );
        r.register(
            "pulsewire_tls_reload_failures",
            "Certificate reloads refused (the previous certificate stays)",
            self.reload_failures.clone(),
        );
    }
}

#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain and its key; every error names the file.
pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<(Arc<CertifiedKey>, CertInfo)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| anyhow!("cannot read the TLS certificate file {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow!(
                "TLS certificate file {}: not a PEM certificate chain: {e}",
                cert_file.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "TLS certificate file {}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        anyhow!(
            "TLS key file {}: no usable private key ({e}); expected a PEM PKCS#8, RSA or EC key",
            key_file.display()
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("TLS key file {}: unsupported private key: {e}", key_file.display()))?;
    let info = describe(&certs[0]).with_context(|| format!("TLS certificate file {}", cert_file.display()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        anyhow!(
            "TLS key file {} does not belong to the certificate in {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok((Arc::new(certified), info))
}

fn describe(cert: &CertificateDer<'_>) -> anyhow::Result<CertInfo> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let not_after = parsed
        .validity()
        .not_after
        .to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| parsed.validity().not_after.to_string());
    Ok(CertInfo {
        subject: parsed.subject().to_string(),
        not_after,
    })
}

impl Tls {
    /// Loads the configured files; refuses (naming the file) what does not load.
    pub fn from_config(cfg: &TlsConfig) -> anyhow::Result<Option<Arc<Tls>>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let (certified, info) = load(&cfg.cert_file, &cfg.key_file)?;
        let current = Arc::new(Current(RwLock::new(certified)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(Tls {
            cert_file: cfg.cert_file.clone(),
            key_file: cfg.key_file.clone(),
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            info: RwLock::new(info),
            metrics: TlsMetrics::default(),
        })))
    }

    /// The certificate now served.
    pub fn info(&self) -> CertInfo {
        self.info.read().clone()
    }

    /// Re-reads both files and swaps the certificate in; on failure the old one stays.
    pub fn reload(&self) -> anyhow::Result<CertInfo> {
        match load(&self.cert_file, &self.key_file) {
            Ok((certified, info)) => {
                *self.current.0.write() = certified;
                *self.info.write() = info.clone();
                self.metrics.reloads.inc();
                Ok(info)
            }
            Err(e) => {
                self.metrics.reload_failures.inc();
                Err(e)
            }
        }
    }
}

/// Accepts TLS connections until `stop` completes, serving `router` on each (HTTP/2 or
/// HTTP/1.1 with upgrades), then waits for the HTTP connections to finish their requests.
/// `tune` sets the socket options of each accepted connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Arc<Tls>,
    tune: impl Fn(&tokio::net::TcpStream) + Send + 'static,
    stop: impl Future<Output = ()> + Send,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(stop);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off as axum::serve does.
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        tune(&tcp);
        let acceptor = tls.acceptor.clone();
        let tls = tls.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tls.metrics.handshake_failures.inc();
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tls.metrics.handshake_failures.inc();
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                let mut router = router.clone();
                async move { tower::Service::call(&mut router, req).await }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%remote, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
