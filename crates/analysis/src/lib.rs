//! Pulsewire's live analysis, as pure computation: streaming anomaly detectors that see one point
//! of one series at a time and keep a small, fixed amount of state per series, so the server can
//! run one per watched series on the ingest path. Nothing here does IO (except the CSV helper,
//! which reads and writes through caller-supplied readers and writers), spawns tasks or knows
//! about the store or the hub; the same code runs online in the server, offline in
//! `pulsewire analyze` and in the NAB benchmark, which is what makes the benchmark figures hold
//! for the server. The alert-rule engine ([`alert`]) follows the same rules: rules judge each
//! point as it arrives and a timer the caller drives, and every entry point takes the time as an
//! argument.

pub mod alert;
pub mod csv;
pub mod detect;

pub use detect::{AnyDetector, Detector, DetectorFactory, DetectorKind, ExpectedRange, Score, Severity};
