//! `pulsewire demo`: a node fed by a synthetic fleet, with alert rules, so that a first look at
//! the dashboard shows charts moving, anomalies and alerts firing and resolving within a minute.
//!
//! The fleet: four web servers, a database and a cache (`cpu`, `mem`, `system`, `net` and a
//! `heartbeat` per host, Telegraf's names, as the host collector writes them) and three services
//! (`http` requests, errors and latency per service). Values follow a daily cycle, a faster
//! five-minute wave and noise. Incidents repeat every `CYCLE`: a CPU spike on web-2, a memory
//! leak on db-1 that ends in a restart, cache-1 going silent, and a latency excursion on the
//! checkout service. The last hour is written at start, so history has something to show.

use std::borrow::Cow;
use std::f64::consts::TAU;
use std::time::Duration;

use pulsewire_analysis::alert::RuleSpec;
use pulsewire_model::TenantId;
use pulsewire_proto::{FieldValue, Line};
use pulsewire_server::AppState;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinHandle;

/// Incidents repeat with this period (ms).
const CYCLE: i64 = 180_000;
/// The database the fleet writes to.
pub const DATABASE: &str = "demo";
const HOSTS: [(&str, f64); 6] = [
    ("web-1", 35.0),
    ("web-2", 40.0),
    ("web-3", 30.0),
    ("web-4", 38.0),
    ("db-1", 55.0),
    ("cache-1", 20.0),
];
const SERVICES: [(&str, f64); 3] = [("api", 120.0), ("checkout", 40.0), ("search", 80.0)];

/// Where each incident sits in the cycle (ms from its start).
struct Schedule;

impl Schedule {
    /// web-2's CPU spike.
    const SPIKE: (i64, i64) = (10_000, 45_000);
    /// cache-1 sends nothing.
    const SILENT: (i64, i64) = (20_000, 60_000);
    /// checkout's latency excursion.
    const SLOW: (i64, i64) = (30_000, 50_000);
    /// db-1's memory: climbs from 60 % to 97 % over this span, then the "restart".
    const LEAK: (i64, i64) = (0, 50_000);
}

fn phase(t: i64, (from, to): (i64, i64)) -> Option<f64> {
    let at = t.rem_euclid(CYCLE);
    (at >= from && at < to).then(|| (at - from) as f64 / (to - from) as f64)
}

/// The alert rules the demo starts with (configuration rules: visible, not editable).
pub fn rules() -> Vec<RuleSpec> {
    let spec = |name: &str, kind: &str, expr: &str| RuleSpec {
        name: name.into(),
        kind: kind.into(),
        expr: expr.into(),
        window: None,
        op: None,
        threshold: None,
        for_: None,
        keep_firing_for: None,
        severity: None,
        labels: Default::default(),
        annotations: Default::default(),
        tenant: None,
    };
    let mut high_cpu = spec(
        "high_cpu",
        "threshold",
        r#"avg(cpu.usage_active{cpu="cpu-total",role="web"})"#,
    );
    high_cpu.window = Some("20s".into());
    high_cpu.op = Some(">".into());
    high_cpu.threshold = Some(85.0);
    high_cpu.for_ = Some("5s".into());
    high_cpu.severity = Some("critical".into());
    high_cpu.annotations.insert(
        "summary".into(),
        "CPU {{ $value | printf \"%.1f\" }} % on {{ $labels.host }}".into(),
    );

    let mut memory = spec("memory_high", "threshold", "last(mem.used_percent)");
    memory.window = Some("10s".into());
    memory.op = Some(">".into());
    memory.threshold = Some(90.0);
    memory.severity = Some("warning".into());
    memory.annotations.insert(
        "summary".into(),
        "memory {{ $value | printf \"%.1f\" }} % used on {{ $labels.host }}".into(),
    );

    let mut silent = spec("host_silent", "absence", "heartbeat.up");
    silent.window = Some("15s".into());
    silent.severity = Some("critical".into());
    silent
        .annotations
        .insert("summary".into(), "{{ $labels.host }} has sent nothing for 15 s".into());

    let mut slow = spec(
        "checkout_slow",
        "threshold",
        r#"p95(http.latency_ms{service="checkout"})"#,
    );
    slow.window = Some("15s".into());
    slow.op = Some(">".into());
    slow.threshold = Some(400.0);
    slow.severity = Some("warning".into());
    slow.annotations.insert(
        "summary".into(),
        "checkout p95 latency {{ $value | printf \"%.0f\" }} ms (threshold 400 ms)".into(),
    );

    let mut odd = spec("latency_anomaly", "anomaly", "http.latency_ms");
    odd.threshold = Some(0.9);
    odd.severity = Some("info".into());
    odd.annotations.insert(
        "summary".into(),
        "unusual latency on {{ $labels.service }} (anomaly score {{ $value | printf \"%.2f\" }})".into(),
    );
    vec![high_cpu, memory, silent, slow, odd]
}

/// Cumulative counters per series, carried from one second to the next.
struct Fleet {
    rng: SmallRng,
    bytes_recv: Vec<f64>,
    requests: Vec<f64>,
    errors: Vec<f64>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            rng: SmallRng::seed_from_u64(7),
            bytes_recv: vec![1e9; HOSTS.len()],
            requests: vec![0.0; SERVICES.len()],
            errors: vec![0.0; SERVICES.len()],
        }
    }

    /// Roughly normal noise (sum of uniforms), mean 0, standard deviation `sd`.
    fn noise(&mut self, sd: f64) -> f64 {
        let s: f64 = (0..6).map(|_| self.rng.random::<f64>()).sum::<f64>() - 3.0;
        s * sd / (0.5f64).sqrt()
    }

    /// The fleet's points at `t` (ms) over the `dt` seconds since the previous call; with
    /// `incidents` false (history written at start) everything stays normal.
    fn points(&mut self, t: i64, dt: f64, incidents: bool) -> Vec<Line<'static>> {
        let day = (TAU * (t.rem_euclid(86_400_000) as f64) / 86_400_000.0 - TAU / 4.0).sin();
        let wave = (TAU * (t.rem_euclid(300_000) as f64) / 300_000.0).sin();
        let mut out = Vec::new();
        for (i, &(host, base)) in HOSTS.iter().enumerate() {
            if incidents && host == "cache-1" && phase(t, Schedule::SILENT).is_some() {
                continue;
            }
            let role = host.split('-').next().unwrap_or(host);
            let tags = [("host", host), ("role", role)];
            let mut cpu = base * (1.0 + 0.25 * day + 0.1 * wave) + self.noise(3.0);
            if incidents && host == "web-2" && phase(t, Schedule::SPIKE).is_some() {
                cpu = 94.0 + self.noise(2.0);
            }
            let cpu = cpu.clamp(0.5, 99.5);
            let system = (cpu * 0.25 + self.noise(1.0)).clamp(0.1, cpu);
            let mut cpu_tags = tags.to_vec();
            cpu_tags.push(("cpu", "cpu-total"));
            out.push(line(
                "cpu",
                &cpu_tags,
                &[
                    ("usage_user", cpu - system),
                    ("usage_system", system),
                    ("usage_idle", 100.0 - cpu),
                    ("usage_active", cpu),
                ],
                t,
            ));
            let mem = match (host, incidents.then(|| phase(t, Schedule::LEAK)).flatten()) {
                ("db-1", Some(p)) => 60.0 + 37.0 * p + self.noise(0.3),
                _ => base * 0.6 + 20.0 + 2.0 * wave + self.noise(0.5),
            };
            out.push(line("mem", &tags, &[("used_percent", mem.clamp(1.0, 99.9))], t));
            let load = (cpu / 25.0 + self.noise(0.1)).max(0.0);
            out.push(line("system", &tags, &[("load1", load)], t));
            let rate = (2e6 + 1.5e6 * day + 5e5 * wave + self.noise(1e5)).max(0.0);
            let recv = self.bytes_recv.get_mut(i).map_or(0.0, |b| {
                *b += rate * dt;
                *b
            });
            let mut net_tags = tags.to_vec();
            net_tags.push(("interface", "eth0"));
            out.push(line(
                "net",
                &net_tags,
                &[("bytes_recv", recv), ("bytes_recv_per_sec", rate)],
                t,
            ));
            out.push(line("heartbeat", &tags, &[("up", 1.0)], t));
        }
        for (i, &(service, rps)) in SERVICES.iter().enumerate() {
            let tags = [("service", service)];
            let rate = (rps * (1.0 + 0.4 * day + 0.1 * wave) + self.noise(rps * 0.05)).max(0.0);
            let mut latency = 80.0 + 20.0 * wave + self.noise(6.0);
            let mut error_share = 0.002;
            if incidents && service == "checkout" && phase(t, Schedule::SLOW).is_some() {
                latency = 650.0 + self.noise(40.0);
                error_share = 0.05;
            }
            let requests = self.requests.get_mut(i).map_or(0.0, |r| {
                *r += rate * dt;
                *r
            });
            let errors = self.errors.get_mut(i).map_or(0.0, |e| {
                *e += rate * dt * error_share;
                *e
            });
            out.push(line(
                "http",
                &tags,
                &[
                    ("requests", requests.floor()),
                    ("errors", errors.floor()),
                    ("latency_ms", latency.max(1.0)),
                ],
                t,
            ));
        }
        out
    }
}

fn line(
    measurement: &'static str,
    tags: &[(&'static str, &'static str)],
    fields: &[(&'static str, f64)],
    ts: i64,
) -> Line<'static> {
    let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> = tags
        .iter()
        .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
        .collect();
    tags.sort();
    Line {
        measurement: Cow::Borrowed(measurement),
        tags,
        fields: fields
            .iter()
            .map(|&(k, v)| (Cow::Borrowed(k), FieldValue::Float((v * 100.0).round() / 100.0)))
            .collect(),
        timestamp: Some(ts),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes the last hour (every 10 s, no incidents), then the fleet's points every second.
pub fn spawn(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let tenant = TenantId::default_tenant();
        let mut fleet = Fleet::new();
        let start = now_ms();
        let mut history = Vec::new();
        for t in (start - 3_600_000..start - 1_000).step_by(10_000) {
            history.extend(fleet.points(t, 10.0, false));
        }
        for chunk in history.chunks(5_000) {
            if let Err(e) = pulsewire_server::write_own(&state, &tenant, DATABASE, chunk.to_vec()).await {
                tracing::warn!("demo: writing history failed: {e}");
            }
        }
        tracing::info!(hosts = HOSTS.len(), services = SERVICES.len(), "demo fleet running");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The incident cycle starts now, so the first spike comes 10 s after the start.
        let offset = start.rem_euclid(CYCLE);
        loop {
            tick.tick().await;
            if state.is_shutting_down() {
                return;
            }
            let t = now_ms();
            let lines = fleet.points(t - offset, 1.0, true);
            // Points carry the real time; the schedule runs on `t - offset`.
            let lines: Vec<Line<'static>> = lines
                .into_iter()
                .map(|mut l| {
                    l.timestamp = Some(t);
                    l
                })
                .collect();
            if let Err(e) = pulsewire_server::write_own(&state, &tenant, DATABASE, lines).await {
                tracing::warn!("demo: write failed: {e}");
            }
        }
    })
}
