//! The crate's single error type. Decoders return these instead of panicking, so a damaged block
//! or summary on disk costs one failed read rather than the process.

use crate::value::Kind;

/// Everything that can go wrong while encoding or decoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A value of one kind was given to a container of another.
    #[error("value of kind {got:?} given where {expected:?} is stored")]
    KindMismatch { expected: Kind, got: Kind },
    /// Timestamps must strictly increase inside a chunk or block.
    #[error("timestamp {ts} is not after the previous one ({last})")]
    OutOfOrder { ts: i64, last: i64 },
    /// Timestamps and values of a block differ in count.
    #[error("{ts} timestamps but {values} values")]
    LengthMismatch { ts: usize, values: usize },
    /// A chunk or block would exceed [`crate::MAX_BLOCK_POINTS`].
    #[error("{0} points exceed the per-block limit")]
    TooManyPoints(usize),
    /// The input ended before the encoded data did.
    #[error("input truncated")]
    Truncated,
    /// The input is structurally invalid.
    #[error("corrupt input: {0}")]
    Corrupt(&'static str),
    /// The first byte of a block names no codec this version knows.
    #[error("unknown block tag {0:#04x}")]
    UnknownTag(u8),
    /// Two sketches with different relative accuracies cannot be merged exactly.
    #[error("sketch accuracies differ ({0} vs {1})")]
    AccuracyMismatch(f64, f64),
    /// The encoder was given input it cannot represent.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// The general-purpose compressor failed.
    #[error("compression: {0}")]
    Compress(String),
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
