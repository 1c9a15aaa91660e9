//! The alert-rule engine, as pure logic: rules that judge series as their points arrive
//! ([`rule`]), the per-series windows they aggregate over ([`window`]), the Prometheus-style
//! life of one alert instance ([`state`]), the engine that ties them together and that the
//! server calls from the ingest path and from a timer ([`engine`]), silences ([`silence`]), the
//! Alertmanager-style grouping and throttling of notifications ([`dispatch`]), the correlation of
//! alerts that start together on one source ([`correlate`]) and the summary of an alert history
//! ([`stats`]). Nothing here reads a clock, does IO or spawns anything: every entry point takes
//! `now` in Unix milliseconds, so the server, the tests and any replay see the same behaviour.
//! docs/analysis.md ("Alert rules") is the user-facing description; keep them in step.

pub mod correlate;
pub mod dispatch;
pub mod engine;
pub mod rule;
pub mod silence;
pub mod state;
pub mod stats;
pub mod template;
pub mod window;

pub use correlate::{CorrelationConfig, Correlator};
pub use dispatch::{DispatchConfig, Dispatcher, Notification};
pub use engine::{AlertFilter, AlertInfo, Engine, EngineConfig, EngineSnapshot, Instance, SeriesRef};
pub use pulsewire_model::{Ack, AlertEvent, AlertState, Severity, alert_id};
pub use rule::{CmpOp, Rule, RuleKind, RuleSpec, validate, validate_one};
pub use silence::{Silence, SilenceMatcher, SilenceSpec, Silences};
pub use state::{InstanceState, Phase, Timing, Transition};
pub use stats::{AlertStats, RuleStats, stats};
pub use template::Template;
pub use window::{SeriesWindow, WINDOW_CAP};

/// Everything the alert module can reject. `Display` is `"<path>: <message>"` for invalid input,
/// so an API can return it as the body of a 400 unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// A field of a rule or a silence: `path` is e.g. `rules[2].expr` or `matchers[0].value`.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("no alert with id `{0}`")]
    UnknownAlert(String),
    #[error("no rule named `{0}`")]
    UnknownRule(String),
    #[error("no silence with id `{0}`")]
    UnknownSilence(String),
}

/// What [`validate`] reports per faulty field.
pub type RuleError = AlertError;

impl AlertError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> AlertError {
        AlertError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The field at fault, for invalid input.
    pub fn path(&self) -> Option<&str> {
        match self {
            AlertError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}
