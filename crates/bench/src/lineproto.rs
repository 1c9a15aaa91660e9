//! Synthetic host metrics in InfluxDB line protocol for the `ingest` scenario:
//! `--series` series spread over the measurements `cpu`, `mem` and `net`
//! (series `i` is measurement `i % 3` of host `i / 3`), each line carrying
//! `--fields` fields, one line per series per round, rounds `--interval`
//! seconds apart, so the stream looks like hosts scraped at a fixed interval.
//!
//! Values behave like the real thing so that compression figures mean
//! something: percentages with two decimals that wander around a per-host
//! level, byte gauges that move in whole pages, constants (total memory), and
//! counters that only grow (network bytes and packets, rare error counters).
//! All are written as line-protocol floats (no `i` suffix), which every target
//! stores as float64, so no target gets a cheaper integer encoding than
//! another.
//!
//! Formatting is hand-rolled on integers (values are kept as integers or
//! hundredths), so one generator thread produces lines far faster than the
//! servers under test accept them and does not compete with them for the two
//! cores.

/// How one field evolves from round to round.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Gauge in hundredths (printed with two decimals), mean-reverting random
    /// walk around `base`, clamped to `0..=max`.
    Hundredths { base: i64, step: i64, max: i64 },
    /// Integer gauge moving by multiples of `unit` (e.g. 4 KiB pages), at most
    /// `steps` units per round, mean-reverting around `base`.
    Int { base: i64, unit: i64, steps: i64 },
    /// Integer that never changes for a series (memory total).
    Constant { base: i64 },
    /// Counter growing by about `per_s` per second (+-50 %).
    Counter { per_s: i64 },
    /// Counter that increments by one in about one round in `one_in`.
    Rare { one_in: u64 },
}

struct FieldSpec {
    name: &'static str,
    kind: Kind,
}

const GIB: i64 = 1 << 30;
const MIB: i64 = 1 << 20;

const fn pct(name: &'static str, base: i64, step: i64) -> FieldSpec {
    FieldSpec {
        name,
        kind: Kind::Hundredths {
            base,
            step,
            max: 10_000,
        },
    }
}

const fn int(name: &'static str, base: i64, unit: i64, steps: i64) -> FieldSpec {
    FieldSpec {
        name,
        kind: Kind::Int { base, unit, steps },
    }
}

const fn constant(name: &'static str, base: i64) -> FieldSpec {
    FieldSpec {
        name,
        kind: Kind::Constant { base },
    }
}

const fn counter(name: &'static str, per_s: i64) -> FieldSpec {
    FieldSpec {
        name,
        kind: Kind::Counter { per_s },
    }
}

const fn rare(name: &'static str, one_in: u64) -> FieldSpec {
    FieldSpec {
        name,
        kind: Kind::Rare { one_in },
    }
}

const CPU: &[FieldSpec] = &[
    pct("usage_user", 2500, 150),
    pct("usage_system", 800, 60),
    pct("usage_idle", 6200, 200),
    pct("usage_iowait", 150, 30),
    pct("usage_irq", 20, 5),
    pct("usage_softirq", 50, 10),
    pct("usage_steal", 10, 3),
    pct("usage_nice", 5, 2),
    constant("usage_guest", 0),
    FieldSpec {
        name: "load1",
        kind: Kind::Hundredths {
            base: 150,
            step: 20,
            max: 100_000,
        },
    },
];

const MEM: &[FieldSpec] = &[
    constant("total", 16 * GIB),
    int("used", 6 * GIB, 4096, 2048),
    int("free", 2 * GIB, 4096, 2048),
    int("cached", 7 * GIB, 4096, 512),
    int("buffers", 300 * MIB, 4096, 64),
    int("available", 9 * GIB, 4096, 2048),
    pct("used_percent", 3750, 40),
    constant("swap_total", 2 * GIB),
    int("swap_used", 64 * MIB, 4096, 4),
    int("dirty", 8 * MIB, 4096, 256),
];

const NET: &[FieldSpec] = &[
    counter("bytes_recv", 2_000_000),
    counter("bytes_sent", 1_200_000),
    counter("packets_recv", 2_000),
    counter("packets_sent", 1_500),
    rare("err_in", 500),
    rare("err_out", 2000),
    rare("drop_in", 100),
    rare("drop_out", 1000),
    int("tcp_established", 120, 1, 4),
    int("tcp_time_wait", 40, 1, 6),
];

const MEASUREMENTS: [(&str, &[FieldSpec]); 3] = [("cpu", CPU), ("mem", MEM), ("net", NET)];
const REGIONS: [&str; 6] = ["eu-1", "eu-2", "us-1", "us-2", "ap-1", "sa-1"];

/// Timestamp unit of the write URL's `precision` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Precision {
    /// Reads `precision=` from a write URL; absent means nanoseconds, as in
    /// InfluxDB's and VictoriaMetrics' write APIs.
    pub fn from_url(url: &reqwest::Url) -> anyhow::Result<Self> {
        let Some((_, p)) = url.query_pairs().find(|(k, _)| k == "precision") else {
            return Ok(Precision::Nanos);
        };
        Ok(match p.as_ref() {
            "s" => Precision::Seconds,
            "ms" => Precision::Millis,
            "u" | "us" | "µ" => Precision::Micros,
            "n" | "ns" | "" => Precision::Nanos,
            other => anyhow::bail!("unsupported precision={other} in the write URL (use s, ms, us or ns)"),
        })
    }

    fn per_second(self) -> i64 {
        match self {
            Precision::Seconds => 1,
            Precision::Millis => 1_000,
            Precision::Micros => 1_000_000,
            Precision::Nanos => 1_000_000_000,
        }
    }
}

/// xorshift64*: tiny, deterministic for a given seed, and cheap enough to
/// draw one number per value.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so seeds 0, 1, 2 start far apart; never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `-k..=k`.
    fn symmetric(&mut self, k: i64) -> i64 {
        if k <= 0 {
            return 0;
        }
        (self.next() % (2 * k as u64 + 1)) as i64 - k
    }

    /// Uniform in `lo..hi` (per mille factors and the like).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// One field of one series: its spec (scaled for the series) and current value.
#[derive(Clone, Copy)]
struct FieldState {
    kind: Kind,
    value: i64,
}

struct Series {
    /// `measurement,host=..,region=..,dc=.. ` (ends with the space before the fields).
    prefix: Vec<u8>,
    /// Index into [`Generator::field_names`].
    measurement: usize,
    fields: Vec<FieldState>,
}

/// The line stream: every series once per round, rounds `interval` apart.
pub struct Generator {
    series: Vec<Series>,
    /// Per measurement, per field: `name=` (with the leading comma after the first field).
    field_names: Vec<Vec<Vec<u8>>>,
    rng: Rng,
    interval_s: i64,
    precision: Precision,
    /// Timestamp of the current round, in seconds.
    round_ts: i64,
    /// ` <timestamp>\n` of the current round, in the URL's unit.
    ts_suffix: Vec<u8>,
    /// Next series to emit in the current round.
    cursor: usize,
    pub rounds_started: u64,
    /// No round past this one (0 = unlimited).
    max_rounds: u64,
}

impl Generator {
    /// `series` series with `fields` fields each, first round at `start_s`
    /// (seconds since the epoch), `interval_s` apart.
    pub fn new(series: usize, fields: usize, start_s: i64, interval_s: i64, precision: Precision, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let field_names = MEASUREMENTS
            .iter()
            .map(|(_, specs)| {
                (0..fields)
                    .map(|j| {
                        let base = specs[j % specs.len()].name;
                        let name = match j / specs.len() {
                            0 => base.to_string(),
                            n => format!("{base}_{n}"),
                        };
                        let sep = if j == 0 { "" } else { "," };
                        format!("{sep}{name}=").into_bytes()
                    })
                    .collect()
            })
            .collect();
        let series = (0..series)
            .map(|i| {
                let m = i % MEASUREMENTS.len();
                let host = i / MEASUREMENTS.len();
                let (name, specs) = MEASUREMENTS[m];
                let prefix = format!(
                    "{name},host=host-{host:05},region={},dc=dc-{} ",
                    REGIONS[host % REGIONS.len()],
                    host % 4 + 1
                )
                .into_bytes();
                // Hosts differ in size and load: scale every level by 0.5 to 1.5.
                let scale = rng.range(500, 1500) as i64;
                let fields = (0..fields)
                    .map(|j| {
                        let kind = scaled(specs[j % specs.len()].kind, scale);
                        let value = match kind {
                            Kind::Hundredths { base, .. } | Kind::Int { base, .. } | Kind::Constant { base } => base,
                            // Counters start where a host up for days would be.
                            Kind::Counter { per_s } => per_s * rng.range(100_000, 3_000_000) as i64,
                            Kind::Rare { .. } => rng.range(0, 50) as i64,
                        };
                        FieldState { kind, value }
                    })
                    .collect();
                Series {
                    prefix,
                    measurement: m,
                    fields,
                }
            })
            .collect();
        let mut g = Generator {
            series,
            field_names,
            rng,
            interval_s,
            precision,
            round_ts: start_s - interval_s,
            ts_suffix: Vec::new(),
            cursor: 0,
            rounds_started: 0,
            max_rounds: 0,
        };
        g.next_round();
        g
    }

    /// Ends the stream after `rounds` complete rounds (0 = never), so every
    /// target can be given exactly the same data.
    pub fn limit_rounds(&mut self, rounds: u64) {
        self.max_rounds = rounds;
    }

    /// Whether the stream ended because the round limit was reached.
    pub fn rounds_exhausted(&self) -> bool {
        self.max_rounds > 0 && self.rounds_started >= self.max_rounds && self.cursor == self.series.len()
    }

    /// Seconds since the epoch of the round the next line belongs to.
    pub fn round_ts(&self) -> i64 {
        self.round_ts
    }

    fn next_round(&mut self) {
        self.round_ts += self.interval_s;
        self.rounds_started += 1;
        self.cursor = 0;
        self.ts_suffix.clear();
        self.ts_suffix.push(b' ');
        push_int(&mut self.ts_suffix, self.round_ts * self.precision.per_second());
        self.ts_suffix.push(b'\n');
    }

    /// Appends up to `lines` lines to `out`, stopping early (and returning
    /// fewer) when the next round would start after `not_after` (seconds since
    /// the epoch), so no timestamp lies in the future.
    pub fn fill(&mut self, out: &mut Vec<u8>, lines: usize, not_after: i64) -> usize {
        let mut written = 0;
        while written < lines {
            if self.cursor == self.series.len() {
                if self.round_ts + self.interval_s > not_after || self.rounds_exhausted() {
                    break;
                }
                self.next_round();
            }
            let s = &mut self.series[self.cursor];
            out.extend_from_slice(&s.prefix);
            let names = &self.field_names[s.measurement];
            for (f, name) in s.fields.iter_mut().zip(names) {
                out.extend_from_slice(name);
                step(f, &mut self.rng, self.interval_s);
                match f.kind {
                    Kind::Hundredths { .. } => push_hundredths(out, f.value),
                    _ => push_int(out, f.value),
                }
            }
            out.extend_from_slice(&self.ts_suffix);
            self.cursor += 1;
            written += 1;
        }
        written
    }
}

/// Scales a field's level by `per_mille` / 1000 (steps scale with it).
fn scaled(kind: Kind, per_mille: i64) -> Kind {
    let s = |v: i64| v * per_mille / 1000;
    match kind {
        Kind::Hundredths { base, step, max } => Kind::Hundredths {
            base: s(base).min(max),
            step: s(step),
            max,
        },
        Kind::Int { base, unit, steps } => Kind::Int {
            base: s(base) / unit * unit,
            unit,
            steps,
        },
        // Memory sizes come in powers of two, not arbitrary multiples.
        Kind::Constant { base } if base >= GIB => Kind::Constant {
            base: base << ((per_mille - 500) / 334).clamp(0, 2),
        },
        Kind::Constant { base } => Kind::Constant { base },
        Kind::Counter { per_s } => Kind::Counter { per_s: s(per_s) },
        Kind::Rare { one_in } => Kind::Rare { one_in },
    }
}

/// Advances one field by one round.
fn step(f: &mut FieldState, rng: &mut Rng, interval_s: i64) {
    match f.kind {
        Kind::Hundredths { base, step, max } => {
            // Random walk pulled back towards the level, so it neither drifts
            // off nor sits still.
            let v = f.value + rng.symmetric(step) + (base - f.value) / 8;
            f.value = v.clamp(0, max);
        }
        Kind::Int { base, unit, steps } => {
            let v = f.value + rng.symmetric(steps) * unit + (base - f.value) / 8 / unit * unit;
            f.value = v.max(0);
        }
        Kind::Constant { .. } => {}
        Kind::Counter { per_s } => {
            let mean = per_s * interval_s;
            f.value += mean / 2 + rng.range(0, mean.max(1) as u64) as i64;
        }
        Kind::Rare { one_in } => {
            if rng.next().is_multiple_of(one_in) {
                f.value += 1;
            }
        }
    }
}

/// Appends a non-negative integer in decimal.
fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `v / 100` with exactly two decimals (`1234` -> `12.34`, `5` -> `0.05`).
fn push_hundredths(out: &mut Vec<u8>, v: i64) {
    push_int(out, v / 100);
    let frac = (v % 100).unsigned_abs() as u8;
    out.extend_from_slice(&[b'.', b'0' + frac / 10, b'0' + frac % 10]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(g: &mut Generator, lines: usize) -> String {
        let mut out = Vec::new();
        assert_eq!(g.fill(&mut out, lines, i64::MAX), lines);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_numbers() {
        let mut out = Vec::new();
        push_int(&mut out, 0);
        out.push(b' ');
        push_int(&mut out, 1_700_000_000_123);
        out.push(b' ');
        push_hundredths(&mut out, 5);
        out.push(b' ');
        push_hundredths(&mut out, 12345);
        assert_eq!(String::from_utf8(out).unwrap(), "0 1700000000123 0.05 123.45");
    }

    #[test]
    fn lines_have_tags_fields_and_round_timestamps() {
        let mut g = Generator::new(6, 10, 1_700_000_000, 10, Precision::Seconds, 1);
        let t = text(&mut g, 12);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 12);
        assert!(lines[0].starts_with("cpu,host=host-00000,region=eu-1,dc=dc-1 usage_user="));
        assert!(lines[1].starts_with("mem,host=host-00000,"));
        assert!(lines[5].starts_with("net,host=host-00001,region=eu-2,dc=dc-2 bytes_recv="));
        for (i, l) in lines.iter().enumerate() {
            let parts: Vec<&str> = l.split(' ').collect();
            assert_eq!(parts.len(), 3, "{l}");
            assert_eq!(parts[1].split(',').count(), 10, "{l}");
            let ts: i64 = parts[2].parse().unwrap();
            assert_eq!(ts, 1_700_000_000 + 10 * (i as i64 / 6), "{l}");
        }
    }

    #[test]
    fn counters_grow_and_percentages_stay_in_range() {
        let mut g = Generator::new(3, 10, 0, 10, Precision::Millis, 7);
        let field = |line: &str, name: &str| -> f64 {
            line.split(' ')
                .nth(1)
                .unwrap()
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        let mut last_recv = 0.0;
        for round in 0..200 {
            let t = text(&mut g, 3);
            let lines: Vec<&str> = t.lines().collect();
            assert!(lines[2].ends_with(&format!(" {}", round * 10_000)));
            let user = field(lines[0], "usage_user");
            assert!((0.0..=100.0).contains(&user));
            let recv = field(lines[2], "bytes_recv");
            assert!(recv > last_recv);
            last_recv = recv;
        }
    }

    #[test]
    fn extra_fields_get_numbered_names() {
        let mut g = Generator::new(1, 12, 0, 10, Precision::Nanos, 0);
        let t = text(&mut g, 1);
        assert!(t.contains(",usage_user_1=") && t.contains(",usage_system_1="), "{t}");
        assert!(t.trim_end().ends_with(" 0"));
    }

    #[test]
    fn stops_before_the_future() {
        let mut g = Generator::new(4, 2, 100, 10, Precision::Seconds, 0);
        let mut out = Vec::new();
        // Rounds at 100, 110, 120 are allowed; 130 is not.
        assert_eq!(g.fill(&mut out, 100, 125), 12);
        assert_eq!(g.fill(&mut out, 100, 125), 0);
        assert_eq!(g.round_ts(), 120);
    }

    #[test]
    fn stops_after_the_round_limit() {
        let mut g = Generator::new(5, 1, 0, 10, Precision::Seconds, 0);
        g.limit_rounds(3);
        let mut out = Vec::new();
        assert_eq!(g.fill(&mut out, 4, i64::MAX), 4);
        assert!(!g.rounds_exhausted());
        assert_eq!(g.fill(&mut out, 100, i64::MAX), 11);
        assert!(g.rounds_exhausted());
        assert_eq!(g.fill(&mut out, 100, i64::MAX), 0);
    }

    #[test]
    fn precision_from_url() {
        let p = |u: &str| Precision::from_url(&reqwest::Url::parse(u).unwrap());
        assert_eq!(p("http://h/write?db=x&precision=s").unwrap(), Precision::Seconds);
        assert_eq!(
            p("http://h/api/v2/write?org=o&bucket=b&precision=ms").unwrap(),
            Precision::Millis
        );
        assert_eq!(p("http://h/write?db=x").unwrap(), Precision::Nanos);
        assert!(p("http://h/write?precision=h").is_err());
    }
}
