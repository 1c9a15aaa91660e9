//! Pulsewire's embedded time-series store.
//!
//! A series is tenant + database + measurement + sorted tags + field. Writes go to the WAL
//! (acknowledged once durable) and into the in-memory head; checkpoints seal the head into
//! compressed parts per day and into 1m/5m/1h rollups, then drop the WAL behind them. The
//! manifest names the live parts, so every change of the on-disk set is one atomic rename.
//! docs/storage.md describes the format and what a crash at each step leaves behind.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod active;
mod bytes;
mod config;
mod head;
mod index;
mod manifest;
mod part;
mod query;
mod record;
mod series_log;
mod store;
mod wal;

pub use config::{FsyncPolicy, LimitsConfig, RetentionConfig, RetentionRule, StoreConfig};
pub use index::{LineKey, SeriesId, SeriesMeta};
pub use part::{PartStats, compress_part_index, inspect_part};
pub use query::{Bucket, Tier};
pub use store::{
    Aggregation, Clock, Refusal, RefusalKind, Store, StoreLimit, StoreStats, WriteOutcome, kind_name, system_clock,
    to_ms,
};
pub use wal::Ack;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{context}: {message}")]
    Io { context: String, message: String },
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A write failed to reach disk earlier; nothing more is accepted until a restart.
    #[error("{0}")]
    Poisoned(String),
    #[error("the store is closed")]
    Closed,
    /// The request cannot be answered as asked (the message says why).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, e: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }
}
