//! Correlation of alerts that start firing together on one source: when a disk fills, the
//! write-latency, error-rate and queue-depth rules of that host all fire within seconds, and an
//! operator wants to see one incident, not four. The source of an alert is the value of the
//! first of `source_labels` it has (`host`, then `source`, by default); an alert without any is
//! never correlated. The first alert to fire on a source opens a cluster whose id is that
//! alert's id; every alert on the same source that starts firing within `window_ms` of the
//! cluster's opening joins it. A cluster spans at most one window from its first alert, so a
//! source with a steady trickle of alerts does not grow one endless incident. The engine stores
//! the cluster id on the instance and reports it as the `correlation` annotation (an annotation
//! rather than a label, so it changes neither the instance's id nor its grouping).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The annotation that carries the correlation id.
pub const CORRELATION_ANNOTATION: &str = "correlation";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelationConfig {
    /// How soon after a cluster's first alert another must start to join it, in ms; 0 turns
    /// correlation off.
    pub window_ms: i64,
    /// The labels naming an alert's source, tried in order.
    pub source_labels: Vec<String>,
}

impl Default for CorrelationConfig {
    fn default() -> CorrelationConfig {
        CorrelationConfig {
            window_ms: 60_000,
            source_labels: vec!["host".to_string(), "source".to_string()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cluster {
    id: String,
    opened_at: i64,
}

/// The open clusters, one per source at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlator {
    #[serde(default)]
    config: CorrelationConfig,
    #[serde(default)]
    clusters: HashMap<String, Cluster>,
}

impl Correlator {
    pub fn new(config: CorrelationConfig) -> Correlator {
        Correlator {
            config,
            clusters: HashMap::new(),
        }
    }

    pub fn config(&self) -> &CorrelationConfig {
        &self.config
    }

    /// Changes the settings, keeping the open clusters (a restore under a new configuration).
    pub fn set_config(&mut self, config: CorrelationConfig) {
        self.config = config;
    }

    /// The correlation id of alert `id` with `labels` that started firing at `started_at`;
    /// `None` when correlation is off or the alert has no source label.
    pub fn correlate(&mut self, id: &str, labels: &BTreeMap<String, String>, started_at: i64) -> Option<String> {
        if self.config.window_ms <= 0 {
            return None;
        }
        let source = self.config.source_labels.iter().find_map(|l| labels.get(l))?;
        let window = self.config.window_ms;
        // Closed clusters are of no further use; dropping them here keeps the map as small as
        // the number of sources that fired within the last window.
        self.clusters.retain(|_, c| started_at - c.opened_at <= window);
        let cluster = self.clusters.entry(source.clone()).or_insert_with(|| Cluster {
            id: id.to_string(),
            opened_at: started_at,
        });
        Some(cluster.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn alerts_on_one_source_within_the_window_share_the_first_id() {
        let mut c = Correlator::new(CorrelationConfig::default());
        let h1 = labels(&[("host", "h1")]);
        assert_eq!(c.correlate("a", &h1, 0).as_deref(), Some("a"));
        assert_eq!(c.correlate("b", &h1, 30_000).as_deref(), Some("a"));
        assert_eq!(
            c.correlate("c", &labels(&[("host", "h2")]), 30_000).as_deref(),
            Some("c")
        );
        assert_eq!(c.correlate("d", &h1, 60_000).as_deref(), Some("a"));
        // Past the first alert's window a new cluster opens.
        assert_eq!(c.correlate("e", &h1, 60_001).as_deref(), Some("e"));
        // `source` when there is no `host`; nothing without either.
        assert_eq!(c.correlate("f", &labels(&[("source", "s")]), 0).as_deref(), Some("f"));
        assert_eq!(c.correlate("g", &labels(&[("dc", "x")]), 0), None);
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let mut c = Correlator::new(CorrelationConfig {
            window_ms: 0,
            ..CorrelationConfig::default()
        });
        assert_eq!(c.correlate("a", &labels(&[("host", "h")]), 0), None);
    }
}
