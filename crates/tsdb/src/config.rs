//! The store's configuration: durability, checkpoints, retention and the limits that keep one
//! writer from exhausting the node. Part of the server's `[tsdb]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// When a write is acknowledged: `always` fsyncs the WAL before answering (concurrent writers
    /// share one sync), `interval` answers once the WAL is written to the OS and fsyncs every
    /// `fsync_interval` (survives a crash of the server, not of the machine), `never` leaves
    /// syncing to the OS.
    pub fsync: FsyncPolicy,
    /// Sync period for `fsync = "interval"`.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// How often the in-memory head is written to sealed, compressed parts (and the WAL behind it
    /// deleted).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// A checkpoint also starts when the WAL grows past this many bytes.
    pub checkpoint_wal_bytes: u64,
    /// How long data is kept, per tier.
    pub retention: RetentionConfig,
    /// Limits on what writers may create.
    pub limits: LimitsConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(100),
            checkpoint_interval: Duration::from_secs(300),
            // 512 MiB: at full ingest (5 M samples/s) a checkpoint every ~6.4 s instead of ~3.3 s,
            // so larger blocks and fewer merges per point: about 8 % more samples/s, with the
            // same measured peak memory (docs/benchmarks.md). Bounds: two heads of this much WAL
            // (writers wait beyond it); a full segment replayed in 2.9 s here.
            checkpoint_wal_bytes: 512 << 20,
            retention: RetentionConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    Always,
    Interval,
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw points.
    #[serde(with = "days")]
    pub raw: Duration,
    /// 1-minute rollups.
    #[serde(with = "days")]
    pub rollup_1m: Duration,
    /// 5-minute rollups.
    #[serde(with = "days")]
    pub rollup_5m: Duration,
    /// 1-hour rollups.
    #[serde(with = "days")]
    pub rollup_1h: Duration,
    /// How long after a day ends (and once it has gone quiet) its 1m/5m/1h rollups are built;
    /// until then aggregated reads of the day come from its raw points, and the disk holds only
    /// those. Unset: [`RetentionConfig::rollup_delay`]'s default, an hour before the day's raw
    /// partition expires. The rollups are built before the raw points are dropped regardless.
    #[serde(default, with = "days::option", skip_serializing_if = "Option::is_none")]
    pub rollup_after: Option<Duration>,
    /// Raw retention for particular databases or measurements; the first rule that matches wins.
    pub rules: Vec<RetentionRule>,
}

impl RetentionConfig {
    /// The shortest raw retention, rules included: when retention first takes raw points.
    pub fn shortest_raw(&self) -> Duration {
        self.rules.iter().map(|x| x.raw).fold(self.raw, Duration::min)
    }

    /// The longest raw retention, rules included: when a raw partition is wholly expired.
    pub fn longest_raw(&self) -> Duration {
        self.rules.iter().map(|x| x.raw).fold(self.raw, Duration::max)
    }

    /// How long after a day ends its rollups are built: `rollup_after`, or by default an hour
    /// less than the shortest raw retention (at least an hour): a day's tiers are built an hour
    /// before its day partition expires, from all its raw points, so the raw window holds each
    /// sample once (and both forms of one day for that hour). Aggregated reads of a day until
    /// then summarise its raw points, including those already past the raw retention.
    ///
    /// The trade, measured (docs/benchmarks.md, 102.4 M samples): the tiers take more disk than
    /// the raw points they summarise (10 s host metrics: 3.26 bytes per sample with them, 0.971
    /// without, VictoriaMetrics 1.283; 1 s: 1.28, 0.88 and 1.05), and an aggregated read of a
    /// day still in the raw window reads its raw points instead of a tier (a week of 1 s data at
    /// 1h steps: 8.1-9.6 ms against 0.2 ms).
    pub fn rollup_delay(&self) -> Duration {
        const HOUR: Duration = Duration::from_secs(3600);
        self.rollup_after
            .unwrap_or_else(|| self.shortest_raw().saturating_sub(HOUR).max(HOUR))
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            raw: Duration::from_secs(7 * DAY),
            rollup_1m: Duration::from_secs(30 * DAY),
            rollup_5m: Duration::from_secs(90 * DAY),
            rollup_1h: Duration::from_secs(730 * DAY),
            rollup_after: None,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Database (bucket) the rule applies to; any if absent.
    #[serde(default)]
    pub db: Option<String>,
    /// Measurement the rule applies to; any if absent.
    #[serde(default)]
    pub measurement: Option<String>,
    /// How long raw points of matching series are kept.
    #[serde(with = "days")]
    pub raw: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Active series of one database (those that received points within
    /// `active_series_window`) beyond which lines that would create a series are refused.
    pub max_series_per_database: usize,
    /// How recently a series must have received points to count as active (whole minutes,
    /// 1m to 1d, longer than `checkpoint_interval`).
    #[serde(with = "humantime_serde")]
    pub active_series_window: Duration,
    /// New series one database may create per minute.
    pub max_new_series_per_minute: usize,
    /// Tags one series may carry.
    pub max_tags_per_series: usize,
    /// Series one tenant may hold over all its databases (its quota); 0: no quota.
    pub max_series_per_tenant: usize,
    /// Quotas of particular tenants, by tenant name, in place of `max_series_per_tenant`
    /// (0: no quota for that tenant).
    pub tenant_max_series: std::collections::BTreeMap<String, usize>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_series_per_database: 1_000_000,
            active_series_window: Duration::from_secs(3600),
            max_new_series_per_minute: 100_000,
            max_tags_per_series: 64,
            // Series are never removed from the index and the database limit counts only active
            // ones: this bounds the index of a tenant whose series churn.
            max_series_per_tenant: 10_000_000,
            tenant_max_series: Default::default(),
        }
    }
}

impl LimitsConfig {
    /// The series quota of `tenant`, if it has one.
    pub fn tenant_quota(&self, tenant: &str) -> Option<usize> {
        let q = self
            .tenant_max_series
            .get(tenant)
            .copied()
            .unwrap_or(self.max_series_per_tenant);
        (q > 0).then_some(q)
    }
}

impl StoreConfig {
    /// Every invalid value, by key (relative to the `[tsdb]` section).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.checkpoint_interval < Duration::from_secs(1) {
            out.push("checkpoint_interval: must be at least 1s".into());
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.is_zero() {
            out.push("fsync_interval: must be positive".into());
        }
        if self.checkpoint_wal_bytes < 1 << 20 {
            out.push("checkpoint_wal_bytes: must be at least 1 MiB".into());
        }
        let r = &self.retention;
        for (key, d) in [
            ("raw", r.raw),
            ("rollup_1m", r.rollup_1m),
            ("rollup_5m", r.rollup_5m),
            ("rollup_1h", r.rollup_1h),
        ] {
            if d < Duration::from_secs(3600) {
                out.push(format!("retention.{key}: must be at least 1h"));
            }
        }
        if let Some(after) = r.rollup_after {
            if after < Duration::from_secs(3600) {
                out.push("retention.rollup_after: must be at least 1h".into());
            } else if after > Duration::from_secs(3600) && after >= r.shortest_raw() {
                // Days would then be built only when retention presses, holding checkpoints off
                // for each whole build. `1h` stays valid beside a 1h rule: it was the default.
                out.push(
                    "retention.rollup_after: must be shorter than the shortest raw retention (rules included)".into(),
                );
            }
        }
        for (i, rule) in r.rules.iter().enumerate() {
            if rule.raw < Duration::from_secs(3600) {
                out.push(format!("retention.rules[{i}].raw: must be at least 1h"));
            }
        }
        let window = self.limits.active_series_window;
        if window < Duration::from_secs(60) || window > Duration::from_secs(86_400) {
            // A minute's count per database per minute of the window is kept (1d: 23 KiB each).
            out.push("limits.active_series_window: must be between 1m and 1d".into());
        } else if window.subsec_nanos() != 0 || !window.as_secs().is_multiple_of(60) {
            out.push("limits.active_series_window: must be whole minutes".into());
        } else if window <= self.checkpoint_interval {
            // Series that go on writing are seen again at each checkpoint only.
            out.push("limits.active_series_window: must be longer than checkpoint_interval".into());
        }
        if self.limits.max_tags_per_series == 0 {
            out.push("limits.max_tags_per_series: must be positive".into());
        }
        out
    }

    /// Raw retention of one series.
    pub fn raw_retention(&self, db: &str, measurement: &str) -> Duration {
        self.retention
            .rules
            .iter()
            .find(|r| {
                r.db.as_deref().is_none_or(|d| d == db) && r.measurement.as_deref().is_none_or(|m| m == measurement)
            })
            .map_or(self.retention.raw, |r| r.raw)
    }
}

/// Retention periods: read like any duration, written in whole days when they are whole days
/// (`90d`, not the month-based spelling of a general duration formatter).
mod days {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    const DAY: u64 = 86_400;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 && d.as_secs().is_multiple_of(DAY) && d.as_secs() > 0 {
            s.serialize_str(&format!("{}d", d.as_secs() / DAY))
        } else {
            s.serialize_str(&humantime::format_duration(*d).to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    /// The same for an optional period (absent: unset).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn window_problems(window: Duration, checkpoint: Duration) -> Vec<String> {
        let mut c = StoreConfig {
            checkpoint_interval: checkpoint,
            ..StoreConfig::default()
        };
        c.limits.active_series_window = window;
        c.problems()
    }

    #[test]
    fn the_active_series_window_is_checked() {
        let five = Duration::from_secs(300);
        assert_eq!(window_problems(Duration::from_secs(3600), five), Vec::<String>::new());
        assert_eq!(
            window_problems(Duration::from_secs(330), five),
            vec!["limits.active_series_window: must be whole minutes"]
        );
        assert_eq!(
            window_problems(five, five),
            vec!["limits.active_series_window: must be longer than checkpoint_interval"]
        );
        assert_eq!(
            window_problems(Duration::from_secs(2 * 86_400), five),
            vec!["limits.active_series_window: must be between 1m and 1d"]
        );
    }

    #[test]
    fn rollup_after_stays_below_the_shortest_raw_retention() {
        const DAY: u64 = 86_400;
        let mut c = StoreConfig::default();
        // By default a day's tiers wait until an hour before its raw partition expires.
        assert_eq!(c.retention.rollup_delay(), Duration::from_secs(7 * DAY - 3600));
        c.retention.rollup_after = Some(Duration::from_secs(6 * DAY));
        assert_eq!(c.problems(), Vec::<String>::new());
        c.retention.rules.push(RetentionRule {
            db: None,
            measurement: Some("debug".into()),
            raw: Duration::from_secs(DAY),
        });
        assert_eq!(
            c.problems(),
            vec!["retention.rollup_after: must be shorter than the shortest raw retention (rules included)"]
        );
        // The default follows the shortest raw retention, and stays at least an hour.
        c.retention.rollup_after = None;
        assert_eq!(c.problems(), Vec::<String>::new());
        assert_eq!(c.retention.rollup_delay(), Duration::from_secs(DAY - 3600));
        c.retention.rules[0].raw = Duration::from_secs(3600);
        assert_eq!(c.retention.rollup_delay(), Duration::from_secs(3600));
        c.retention.rules[0].raw = Duration::from_secs(3 * DAY);
        assert_eq!(c.retention.rollup_delay(), Duration::from_secs(3 * DAY - 3600));
        c.retention.rollup_after = Some(Duration::from_secs(1800));
        assert_eq!(c.problems(), vec!["retention.rollup_after: must be at least 1h"]);
        c.retention.rollup_after = Some(Duration::from_secs(3600));
        assert_eq!(c.problems(), Vec::<String>::new());
        assert_eq!(c.retention.rollup_delay(), Duration::from_secs(3600));
        // `1h`, the former default that configuration files may spell out, beside a 1h rule.
        c.retention.rules[0].raw = Duration::from_secs(3600);
        assert_eq!(c.problems(), Vec::<String>::new());
    }

    #[test]
    fn rollup_after_reads_and_writes_as_a_period() {
        let c: RetentionConfig = serde_json::from_str(r#"{"rollup_after": "36h"}"#).unwrap();
        assert_eq!(c.rollup_after, Some(Duration::from_secs(36 * 3600)));
        assert_eq!(serde_json::to_value(&c).unwrap()["rollup_after"], "1day 12h");
        let c: RetentionConfig = serde_json::from_str(r#"{"raw": "7d"}"#).unwrap();
        assert_eq!(c.rollup_after, None);
        let written = serde_json::to_string(&RetentionConfig::default()).unwrap();
        assert!(!written.contains("rollup_after"), "{written}");
    }
}
