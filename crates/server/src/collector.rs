//! The host collector: every `collector.interval` it reads this machine's CPU, memory, load,
//! disk and network figures from `/proc` (with the `procfs` crate) and writes them into the
//! store like any other write (live on `metrics:<measurement>`, watched by live analysis), so a
//! fresh node already has live data to show. Measurement, tag and field names follow Telegraf's
//! `cpu`, `mem`, `system`, `diskio` and `net` inputs, so dashboards built for Telegraf data read
//! these unchanged; docs/ingest.md lists them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use pulsewire_model::TenantId;
use pulsewire_proto::{FieldValue, Line};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// Cumulative counters from the previous reading, to turn into rates.
#[derive(Default)]
struct Previous {
    at: Option<Instant>,
    cpu: HashMap<String, Ticks>,
    disks: HashMap<String, (u64, u64)>,
    nets: HashMap<String, (u64, u64)>,
}

/// CPU time in clock ticks, by state.
#[derive(Clone, Copy, Default)]
struct Ticks {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
}

impl Ticks {
    fn of(c: &procfs::CpuTime) -> Ticks {
        Ticks {
            user: c.user,
            nice: c.nice,
            system: c.system,
            idle: c.idle,
            iowait: c.iowait.unwrap_or(0),
            irq: c.irq.unwrap_or(0),
            softirq: c.softirq.unwrap_or(0),
            steal: c.steal.unwrap_or(0),
        }
    }

    fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }
}

pub fn spawn(state: AppState, stop: CancellationToken) -> Option<JoinHandle<()>> {
    let cfg = state.config().collector.clone();
    if !cfg.enabled {
        return None;
    }
    let host = hostname();
    tracing::info!(interval = ?cfg.interval, host, database = cfg.database, "host collector on");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous = Previous::default();
        let tenant = TenantId::default_tenant();
        let mut warned = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            let task_host = host.clone();
            let reading = tokio::task::spawn_blocking(move || {
                let lines = read(&task_host, now_ms as i64, &mut previous);
                (lines, previous)
            })
            .await;
            let Ok((lines, kept)) = reading else { return };
            previous = kept;
            let lines = match lines {
                Ok(lines) => lines,
                Err(e) => {
                    if !warned {
                        tracing::warn!("host collector cannot read /proc: {e}");
                        warned = true;
                    }
                    continue;
                }
            };
            if lines.is_empty() {
                continue;
            }
            match crate::ingest::write_own(&state, &tenant, &cfg.database, lines).await {
                Ok(refused) if !refused.is_empty() => {
                    tracing::debug!(refused = refused.len(), first = %refused[0].message, "host collector: points refused");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("host collector: write failed: {e}"),
            }
        }
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn line(
    measurement: &'static str,
    tags: Vec<(&'static str, String)>,
    fields: Vec<(&'static str, f64)>,
    ts: i64,
) -> Line<'static> {
    let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> = tags
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v)))
        .collect();
    tags.sort();
    Line {
        measurement: Cow::Borrowed(measurement),
        tags,
        fields: fields
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (Cow::Borrowed(k), FieldValue::Float(v)))
            .collect(),
        timestamp: Some(ts),
    }
}

/// One reading of every source; rates and CPU shares need the previous reading, so the first
/// call gives only memory and load.
fn read(host: &str, ts: i64, prev: &mut Previous) -> procfs::ProcResult<Vec<Line<'static>>> {
    use procfs::{Current as _, CurrentSI as _};
    let mut out = Vec::new();
    let now = Instant::now();
    let elapsed = prev
        .at
        .map(|at| now.duration_since(at).as_secs_f64())
        .filter(|s| *s > 0.0);
    let h = || ("host", host.to_string());

    // CPU: shares of each state since the previous reading, per core and in total.
    let stat = procfs::KernelStats::current()?;
    let mut cpus: Vec<(String, Ticks)> = vec![("cpu-total".into(), Ticks::of(&stat.total))];
    cpus.extend(
        stat.cpu_time
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("cpu{i}"), Ticks::of(c))),
    );
    for (name, t) in &cpus {
        if let Some(p) = prev.cpu.get(name) {
            let total = t.total().saturating_sub(p.total()) as f64;
            if total > 0.0 {
                let pct = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / total;
                let idle = pct(t.idle, p.idle);
                out.push(line(
                    "cpu",
                    vec![h(), ("cpu", name.clone())],
                    vec![
                        ("usage_user", pct(t.user, p.user)),
                        ("usage_nice", pct(t.nice, p.nice)),
                        ("usage_system", pct(t.system, p.system)),
                        ("usage_idle", idle),
                        ("usage_iowait", pct(t.iowait, p.iowait)),
                        ("usage_irq", pct(t.irq, p.irq)),
                        ("usage_softirq", pct(t.softirq, p.softirq)),
                        ("usage_steal", pct(t.steal, p.steal)),
                        ("usage_active", 100.0 - idle - pct(t.iowait, p.iowait)),
                    ],
                    ts,
                ));
            }
        }
    }
    prev.cpu = cpus.into_iter().collect();

    let mem = procfs::Meminfo::current()?;
    let available = mem.mem_available.unwrap_or(mem.mem_free + mem.cached + mem.buffers);
    let total = mem.mem_total as f64;
    let used = mem.mem_total.saturating_sub(available) as f64;
    out.push(line(
        "mem",
        vec![h()],
        vec![
            ("total", total),
            ("available", available as f64),
            ("used", used),
            ("free", mem.mem_free as f64),
            ("cached", mem.cached as f64),
            ("buffered", mem.buffers as f64),
            ("used_percent", if total > 0.0 { 100.0 * used / total } else { 0.0 }),
            (
                "available_percent",
                if total > 0.0 {
                    100.0 * available as f64 / total
                } else {
                    0.0
                },
            ),
            ("swap_total", mem.swap_total as f64),
            ("swap_used", mem.swap_total.saturating_sub(mem.swap_free) as f64),
        ],
        ts,
    ));

    let load = procfs::LoadAverage::current()?;
    out.push(line(
        "system",
        vec![h()],
        vec![
            ("load1", f64::from(load.one)),
            ("load5", f64::from(load.five)),
            ("load15", f64::from(load.fifteen)),
            ("n_cpus", stat.cpu_time.len() as f64),
        ],
        ts,
    ));

    // Disks (whole devices and partitions; loop and RAM devices left out): cumulative bytes,
    // and bytes per second since the previous reading.
    let mut disks = HashMap::new();
    for d in procfs::diskstats()? {
        if d.name.starts_with("loop") || d.name.starts_with("ram") {
            continue;
        }
        // /proc/diskstats counts 512-byte sectors whatever the device's own sector size.
        let (read, written) = (d.sectors_read * 512, d.sectors_written * 512);
        let mut fields = vec![("read_bytes", read as f64), ("write_bytes", written as f64)];
        if let (Some(secs), Some(&(pr, pw))) = (elapsed, prev.disks.get(&d.name)) {
            fields.push(("read_bytes_per_sec", read.saturating_sub(pr) as f64 / secs));
            fields.push(("write_bytes_per_sec", written.saturating_sub(pw) as f64 / secs));
        }
        out.push(line("diskio", vec![h(), ("name", d.name.clone())], fields, ts));
        disks.insert(d.name, (read, written));
    }
    prev.disks = disks;

    let mut nets = HashMap::new();
    for (name, n) in procfs::net::dev_status()? {
        let mut fields = vec![
            ("bytes_recv", n.recv_bytes as f64),
            ("bytes_sent", n.sent_bytes as f64),
            ("packets_recv", n.recv_packets as f64),
            ("packets_sent", n.sent_packets as f64),
            ("err_in", n.recv_errs as f64),
            ("err_out", n.sent_errs as f64),
            ("drop_in", n.recv_drop as f64),
        ];
        if let (Some(secs), Some(&(pr, ps))) = (elapsed, prev.nets.get(&name)) {
            fields.push(("bytes_recv_per_sec", n.recv_bytes.saturating_sub(pr) as f64 / secs));
            fields.push(("bytes_sent_per_sec", n.sent_bytes.saturating_sub(ps) as f64 / secs));
        }
        out.push(line("net", vec![h(), ("interface", name.clone())], fields, ts));
        nets.insert(name, (n.recv_bytes, n.sent_bytes));
    }
    prev.nets = nets;
    prev.at = Some(now);
    Ok(out)
}
