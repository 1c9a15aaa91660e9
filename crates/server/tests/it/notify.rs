//! Alert notifiers against real receivers: an HTTP webhook receiver in the test (axum on a
//! loopback port) that fails on command, and the real Prometheus Alertmanager.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use pulsewire_model::{AlertEvent, AlertState, Severity};
use pulsewire_server::notify::{IDEMPOTENCY_KEY, Notification, Notifiers, WebhookStats};
use pulsewire_server::{AlertmanagerConfig, NotifyConfig, WebhookConfig};
use pulsewire_testkit::{TestServer, test_config};
use serde_json::{Value, json};

/// Bound on every test, so a broken notifier fails the test instead of hanging it.
const TEST_LIMIT: Duration = Duration::from_secs(60);

async fn limited<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test finished in time");
}

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    /// These statuses first, in turn, then 200.
    FailFirst(&'static [u16]),
    /// Always this status.
    Always(u16),
    Ok,
}

#[derive(Default)]
struct Received {
    requests: usize,
    /// Accepted bodies with their idempotency keys, in arrival order.
    accepted: Vec<(String, Value)>,
}

struct ReceiverState {
    mode: Mutex<Mode>,
    received: Mutex<Received>,
}

/// A webhook receiver on a loopback port.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let state = Arc::new(ReceiverState {
            mode: Mutex::new(mode),
            received: Mutex::new(Received::default()),
        });
        let app = Router::new().route("/hook", post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Receiver {
            addr,
            state,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    fn requests(&self) -> usize {
        self.state.received.lock().requests
    }

    fn accepted(&self) -> Vec<(String, Value)> {
        self.state.received.lock().accepted.clone()
    }

    async fn wait_accepted(&self, n: usize) -> Vec<(String, Value)> {
        wait_for(&format!("{n} accepted notifications"), || {
            let a = self.accepted();
            (a.len() >= n).then_some(a)
        })
        .await
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = {
        let mut r = state.received.lock();
        r.requests += 1;
        r.requests
    };
    let mode = *state.mode.lock();
    let fail = match mode {
        Mode::FailFirst(codes) => codes.get(n - 1).copied(),
        Mode::Always(code) => Some(code),
        Mode::Ok => None,
    };
    if let Some(code) = fail {
        return StatusCode::from_u16(code).expect("valid status");
    }
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .expect("every notification has an idempotency key")
        .to_owned();
    let body: Value = serde_json::from_slice(&body).expect("JSON body");
    state.received.lock().accepted.push((key, body));
    StatusCode::OK
}

/// Polls `f` every 20 ms until it gives a value, for at most 20 s.
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pulsewire-notify-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove an earlier run's directory");
    }
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn webhook(url: String, max_retries: u32) -> WebhookConfig {
    WebhookConfig {
        name: "ops".into(),
        url,
        timeout: Duration::from_secs(2),
        max_retries,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        headers: [("x-team".to_string(), "sre".to_string())].into(),
    }
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    d.as_millis() as i64
}

fn event(host: &str, state: AlertState) -> AlertEvent {
    let labels: BTreeMap<String, String> = [("host".to_string(), host.to_string())].into();
    let now = now_ms();
    AlertEvent {
        id: pulsewire_model::alert_id("high_cpu", &labels),
        tenant: "default".into(),
        rule: "high_cpu".into(),
        state,
        severity: Severity::Critical,
        labels,
        value: 97.5,
        since: if state == AlertState::Firing { now - 60_000 } else { now },
        annotations: [("summary".to_string(), format!("CPU high on {host}"))].into(),
        at: now,
        active_since: now - 120_000,
        ack: None,
    }
}

fn notification(i: usize) -> Notification {
    Notification {
        tenant: "default".into(),
        group_key: format!("g{i}"),
        group_labels: [("alertname".to_string(), "high_cpu".to_string())].into(),
        alerts: vec![event(&format!("h{i}"), AlertState::Firing)],
    }
}

fn hook_stats(n: &Notifiers) -> WebhookStats {
    n.stats().webhooks.into_iter().next().expect("one webhook")
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_every_notification_once_in_order() {
    limited(async {
        let rx = Receiver::start(Mode::FailFirst(&[503, 429, 500])).await;
        let dir = temp_dir("recovers");
        let config = NotifyConfig {
            webhooks: vec![webhook(rx.url(), 8)],
            ..NotifyConfig::default()
        };
        let notifiers = Notifiers::start(&config, &dir).expect("notifiers start");
        for i in 0..5 {
            notifiers.send(notification(i));
        }
        let accepted = rx.wait_accepted(5).await;
        let groups: Vec<&str> = accepted
            .iter()
            .map(|(_, b)| b["groupKey"].as_str().expect("groupKey"))
            .collect();
        assert_eq!(groups, ["g0", "g1", "g2", "g3", "g4"]);
        let mut keys: Vec<&str> = accepted.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 5, "one distinct idempotency key per notification");
        let body = &accepted[0].1;
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "ops");
        assert_eq!(body["alerts"][0]["labels"]["alertname"], "high_cpu");
        assert_eq!(body["alerts"][0]["labels"]["host"], "h0");
        assert_eq!(body["alerts"][0]["fingerprint"], notification(0).alerts[0].id);

        notifiers.shutdown(Duration::from_secs(5)).await;
        assert_eq!(rx.requests(), 8, "three failures, then five deliveries");
        assert_eq!(
            hook_stats(&notifiers),
            WebhookStats {
                name: "ops".into(),
                sent: 5,
                retried: 3,
                failed: 0,
                dead_lettered: 0,
                replayed: 0,
                queued: 0,
            }
        );
        assert!(
            notifiers
                .dead_letters("default")
                .await
                .expect("log readable")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn dead_letters_are_replayed_once_over_http_when_the_receiver_recovers() {
    limited(async {
        let rx = Receiver::start(Mode::Always(503)).await;
        let mut config = test_config();
        config.analysis.notify.webhooks = vec![webhook(rx.url(), 2)];
        let data_dir = config.data_dir.clone();
        let s = TestServer::start(config).await;
        let notifiers = s.server.state().notifiers().clone();
        for i in 0..3 {
            notifiers.send(notification(i));
        }
        wait_for("three dead letters", || {
            (hook_stats(&notifiers).dead_lettered == 3).then_some(())
        })
        .await;
        let listed = s.get_json("/api/v1/notify/dead-letter").await;
        let listed = listed["dead_letters"].as_array().expect("a list").clone();
        assert_eq!(listed.len(), 3);
        for (i, d) in listed.iter().enumerate() {
            assert_eq!(d["webhook"], "ops");
            assert_eq!(d["attempts"], 3, "max_retries + 1 attempts");
            assert!(d["last_error"].as_str().expect("error").contains("503"), "{d}");
            assert_eq!(d["payload"]["groupKey"], format!("g{i}"));
        }
        assert_eq!(rx.requests(), 9);
        let log = data_dir.join("notify").join("dead-letter.jsonl");
        assert_eq!(std::fs::read_to_string(&log).expect("log").lines().count(), 3);

        let (status, body) = s.post("/api/v1/notify/dead-letter/replay?webhook=nope", "").await;
        assert_eq!((status, &body["code"]), (400, &json!("bad_request")));

        rx.set_mode(Mode::Ok);
        let (status, body) = s.post("/api/v1/notify/dead-letter/replay?webhook=ops", "").await;
        assert_eq!((status, body), (200, json!({"queued": 3, "left": 0})));
        let accepted = rx.wait_accepted(3).await;
        let keys: Vec<&str> = accepted.iter().map(|(k, _)| k.as_str()).collect();
        let letter_keys: Vec<&str> = listed
            .iter()
            .map(|d| d["idempotency_key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys, letter_keys, "replayed in order, with their original keys");
        for ((_, body), d) in accepted.iter().zip(&listed) {
            assert_eq!(body, &d["payload"]);
        }

        let stats = s.get_json("/api/v1/notify/stats").await;
        assert_eq!(
            stats["webhooks"][0],
            json!({"name": "ops", "sent": 3, "retried": 6, "failed": 3, "dead_lettered": 3, "replayed": 3, "queued": 0})
        );
        let listed = s.get_json("/api/v1/notify/dead-letter").await;
        assert_eq!(listed, json!({"dead_letters": []}));
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "");
        // Nothing more arrives: each notification was delivered once.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.accepted().len(), 3);
        assert_eq!(rx.requests(), 12);
        s.server.shutdown();
        s.server.wait().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test]
async fn client_errors_are_dead_lettered_at_once() {
    limited(async {
        let rx = Receiver::start(Mode::Always(422)).await;
        let dir = temp_dir("client-error");
        let config = NotifyConfig {
            webhooks: vec![webhook(rx.url(), 8)],
            ..NotifyConfig::default()
        };
        let notifiers = Notifiers::start(&config, &dir).expect("notifiers start");
        notifiers.send(notification(0));
        wait_for("a dead letter", || {
            (hook_stats(&notifiers).dead_lettered == 1).then_some(())
        })
        .await;
        let letters = notifiers.dead_letters("default").await.expect("log readable");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].attempts, 1);
        assert!(letters[0].last_error.contains("422"), "{}", letters[0].last_error);
        notifiers.shutdown(Duration::from_secs(5)).await;
        assert_eq!(rx.requests(), 1);
        let stats = hook_stats(&notifiers);
        assert_eq!((stats.sent, stats.retried, stats.failed), (0, 0, 1));
    })
    .await;
}

#[tokio::test]
async fn shutdown_keeps_what_it_could_not_deliver_in_the_dead_letter_log() {
    limited(async {
        let rx = Receiver::start(Mode::Always(503)).await;
        let dir = temp_dir("shutdown");
        let mut hook = webhook(rx.url(), 8);
        hook.initial_backoff = Duration::from_secs(30);
        hook.max_backoff = Duration::from_secs(30);
        let config = NotifyConfig {
            webhooks: vec![hook],
            ..NotifyConfig::default()
        };
        let notifiers = Notifiers::start(&config, &dir).expect("notifiers start");
        notifiers.send(notification(0));
        notifiers.send(notification(1));
        wait_for("a first attempt", || (rx.requests() == 1).then_some(())).await;
        notifiers.shutdown(Duration::from_millis(200)).await;
        let letters = notifiers.dead_letters("default").await.expect("log readable");
        let summary: Vec<(String, u32)> = letters
            .iter()
            .map(|d| (d.idempotency_key.len().to_string(), d.attempts))
            .collect();
        assert_eq!(summary, [("32".to_string(), 1), ("32".to_string(), 0)]);
        assert!(letters[0].last_error.contains("503"), "{}", letters[0].last_error);
        assert_eq!(hook_stats(&notifiers).dead_lettered, 2);
        // After shutdown nothing is lost either: it goes straight to the log.
        notifiers.send(notification(2));
        wait_for("a third dead letter", || {
            (hook_stats(&notifiers).dead_lettered == 3).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_sends_to_the_dead_letter_log_instead_of_dropping() {
    limited(async {
        let rx = Receiver::start(Mode::Always(503)).await;
        let dir = temp_dir("full");
        let mut hook = webhook(rx.url(), 8);
        hook.initial_backoff = Duration::from_secs(30);
        hook.max_backoff = Duration::from_secs(30);
        let config = NotifyConfig {
            queue_size: 1,
            webhooks: vec![hook],
            ..NotifyConfig::default()
        };
        let notifiers = Notifiers::start(&config, &dir).expect("notifiers start");
        notifiers.send(notification(0));
        // The first is in flight (off the queue); the second fills the queue; the third finds
        // it full.
        wait_for("a first attempt", || (rx.requests() == 1).then_some(())).await;
        notifiers.send(notification(1));
        notifiers.send(notification(2));
        wait_for("a dead letter", || {
            (hook_stats(&notifiers).dead_lettered == 1).then_some(())
        })
        .await;
        let letters = notifiers.dead_letters("default").await.expect("log readable");
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].attempts, letters[0].last_error.as_str()), (0, "queue full"));
        assert!(
            letters[0].payload.get().contains("\"groupKey\":\"g2\""),
            "{}",
            letters[0].payload
        );
        assert_eq!(hook_stats(&notifiers).queued, 1);
        notifiers.shutdown(Duration::from_millis(100)).await;
        assert_eq!(hook_stats(&notifiers).dead_lettered, 3);
    })
    .await;
}

/// The Alertmanager binary; the test needs the real one (Debian's `prometheus-alertmanager`,
/// which .ci/run installs) and fails without it.
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

struct RealAlertmanager {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl RealAlertmanager {
    async fn start(dir: &Path) -> RealAlertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing: install Debian's prometheus-alertmanager (see .ci/run)"
        );
        let config = dir.join("alertmanager.yml");
        // A route to a receiver without integrations: Alertmanager keeps and shows alerts but
        // sends nothing anywhere.
        std::fs::write(&config, "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n").expect("write config");
        // A free port: bound and released; Alertmanager binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = tokio::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("alertmanager starts");
        let am = RealAlertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{}/-/ready", am.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return am;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "alertmanager not ready; its log:\n{}",
                am.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The alerts Alertmanager holds for `host` (`active=true` to see only active ones).
    async fn alerts(&self, query: &str, host: &str) -> Vec<Value> {
        let v: Value = reqwest::get(format!("{}/api/v2/alerts?{query}", self.url))
            .await
            .expect("alerts request")
            .json()
            .await
            .expect("alerts JSON");
        v.as_array()
            .expect("a list of alerts")
            .iter()
            .filter(|a| a["labels"]["host"] == host)
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn alertmanager_notifier_against_the_real_alertmanager() {
    limited(async {
        let dir = temp_dir("alertmanager");
        let mut am = RealAlertmanager::start(&dir).await;
        let config = NotifyConfig {
            external_url: "http://pulsewire.test:8080/".into(),
            alertmanagers: vec![AlertmanagerConfig {
                url: am.url.clone(),
                timeout: Duration::from_secs(2),
                resend_interval: Duration::from_millis(500),
                max_retries: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            }],
            ..NotifyConfig::default()
        };
        let notifiers = Notifiers::start(&config, &dir.join("pw")).expect("notifiers start");
        let firing = event("h1", AlertState::Firing);
        let other = event("h2", AlertState::Firing);
        notifiers.send(Notification {
            tenant: "default".into(),
            group_key: "g".into(),
            group_labels: BTreeMap::new(),
            alerts: vec![firing.clone(), other.clone(), event("h3", AlertState::Pending)],
        });

        let mut shown = Vec::new();
        for _ in 0..200 {
            shown = am.alerts("active=true", "h1").await;
            // Alertmanager shows new alerts as `unprocessed` until its dispatcher has seen them.
            if shown.first().is_some_and(|a| a["status"]["state"] == "active") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            shown.len(),
            1,
            "firing alert shown; alertmanager log:\n{}",
            am.log_text()
        );
        let a = &shown[0];
        assert_eq!(
            a["labels"],
            json!({"alertname": "high_cpu", "severity": "critical", "host": "h1", "tenant": "default"})
        );
        assert_eq!(a["annotations"], json!({"summary": "CPU high on h1"}));
        assert_eq!(a["status"]["state"], "active");
        assert_eq!(a["generatorURL"], "http://pulsewire.test:8080/");
        let starts = a["startsAt"].as_str().expect("startsAt");
        let expected_start =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(firing.since) * 1_000_000).expect("time");
        let shown_start =
            time::OffsetDateTime::parse(starts, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
        assert_eq!(shown_start, expected_start);
        assert!(am.alerts("", "h3").await.is_empty(), "pending alerts are not sent");

        // Firing alerts are re-sent: the batch counter grows without new notifications.
        wait_for("a re-send", || {
            let s = &notifiers.stats().alertmanagers[0];
            (s.sent >= 2 && s.alerts_sent >= 4).then_some(())
        })
        .await;

        let mut resolved = firing.clone();
        resolved.state = AlertState::Resolved;
        resolved.at = now_ms();
        resolved.since = resolved.at;
        resolved.active_since = firing.since;
        notifiers.send(Notification {
            tenant: "default".into(),
            group_key: "g".into(),
            group_labels: BTreeMap::new(),
            alerts: vec![resolved],
        });
        let mut still_active = Vec::new();
        for _ in 0..200 {
            still_active = am.alerts("active=true", "h1").await;
            if still_active.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(still_active.is_empty(), "resolved alert still active: {still_active:?}");
        // The other alert stays, kept alive by the re-sends.
        assert_eq!(am.alerts("active=true", "h2").await.len(), 1);
        let stats = &notifiers.stats().alertmanagers[0];
        assert_eq!((stats.firing, stats.failed), (1, 0));

        notifiers.shutdown(Duration::from_secs(5)).await;
        am.child.kill().await.expect("alertmanager stops");
    })
    .await;
}

/// A rule on `cpu.usage` of the web hosts judged on the last value (so a lower point clears it).
fn last_value_rule() -> pulsewire_analysis::alert::RuleSpec {
    serde_json::from_value(json!({
        "name": "high_cpu", "kind": "threshold", "expr": "last(cpu.usage{host=~\"web.*\"})",
        "window": "1m", "op": ">", "threshold": 90.0, "severity": "critical",
        "annotations": {"summary": "CPU {{ $value }} on {{ $labels.host }}"}
    }))
    .expect("a valid rule")
}

/// A server with `last_value_rule`, quick alert timing and these notifiers.
async fn alerting_server(notify: NotifyConfig) -> TestServer {
    let mut cfg = test_config();
    cfg.analysis.anomaly.enabled = false;
    cfg.analysis.rules = vec![last_value_rule()];
    cfg.analysis.alerts.tick = Duration::from_millis(50);
    cfg.analysis.alerts.group_wait = Duration::from_millis(50);
    cfg.analysis.alerts.group_interval = Duration::from_millis(100);
    cfg.analysis.notify = notify;
    TestServer::start(cfg).await
}

async fn write_cpu(s: &TestServer, host: &str, value: f64) {
    let resp = s
        .http
        .post(s.url("/write?db=d&precision=ms"))
        .body(format!("cpu,host={host} usage={value} {}\n", now_ms()))
        .send()
        .await
        .expect("write sent");
    assert_eq!(resp.status().as_u16(), 204);
}

#[tokio::test]
async fn rules_feed_a_webhook_that_fails_then_recovers_each_notification_once() {
    limited(async {
        let receiver = Receiver::start(Mode::FailFirst(&[503, 503])).await;
        let s = alerting_server(NotifyConfig {
            webhooks: vec![webhook(receiver.url(), 5)],
            ..NotifyConfig::default()
        })
        .await;
        write_cpu(&s, "web1", 95.0).await;
        wait_for("the firing notification", || {
            (receiver.state.received.lock().accepted.len() == 1).then_some(())
        })
        .await;
        write_cpu(&s, "web1", 40.0).await;
        wait_for("the resolved notification", || {
            (receiver.state.received.lock().accepted.len() == 2).then_some(())
        })
        .await;
        // Nothing more comes: each state change was notified once, though the first attempts
        // failed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = receiver.state.received.lock();
        assert_eq!((r.requests, r.accepted.len()), (4, 2));
        let (first, second) = (&r.accepted[0].1, &r.accepted[1].1);
        assert_eq!(first["status"], "firing");
        assert_eq!(first["alerts"][0]["labels"]["host"], "web1");
        assert_eq!(first["alerts"][0]["annotations"]["summary"], "CPU 95 on web1");
        assert_eq!(second["status"], "resolved");
        assert_eq!(second["alerts"][0]["status"], "resolved");
        assert_ne!(r.accepted[0].0, r.accepted[1].0);
    })
    .await;
}

#[tokio::test]
async fn rules_feed_the_real_alertmanager() {
    limited(async {
        let dir = temp_dir("rules-alertmanager");
        let mut am = RealAlertmanager::start(&dir).await;
        let s = alerting_server(NotifyConfig {
            alertmanagers: vec![AlertmanagerConfig {
                url: am.url.clone(),
                timeout: Duration::from_secs(2),
                resend_interval: Duration::from_millis(500),
                max_retries: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            }],
            ..NotifyConfig::default()
        })
        .await;
        write_cpu(&s, "web7", 97.0).await;
        let mut shown = Vec::new();
        for _ in 0..200 {
            shown = am.alerts("active=true", "web7").await;
            if shown.first().is_some_and(|a| a["status"]["state"] == "active") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(shown.len(), 1, "alertmanager log:\n{}", am.log_text());
        assert_eq!(shown[0]["labels"]["alertname"], "high_cpu");
        assert_eq!(shown[0]["labels"]["severity"], "critical");
        assert_eq!(shown[0]["labels"]["__name__"], "cpu.usage");
        assert_eq!(shown[0]["annotations"]["summary"], "CPU 97 on web7");
        write_cpu(&s, "web7", 10.0).await;
        let mut still = shown;
        for _ in 0..200 {
            still = am.alerts("active=true", "web7").await;
            if still.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(still.is_empty(), "resolved alert still active: {still:?}");
        am.child.kill().await.expect("alertmanager stops");
    })
    .await;
}
