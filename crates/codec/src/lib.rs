//! Time-series encodings shared by the store and the analysis code: compressed head chunks,
//! the sealed-block codec, and mergeable summaries (quantile sketch and rollup aggregates).
//!
//! Everything here decodes bytes that may come from a damaged disk, so indexing and `unwrap` are
//! denied: corrupt input must surface as an [`Error`], never as a panic.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod bits;
pub mod block;
mod error;
mod gorilla;
mod head;
mod ints;
mod sketch;
mod summary;
mod value;

pub use block::{BlockOptions, FloatCodec, MAX_BLOCK_POINTS, decode_block, encode_block, encode_block_with};
pub use error::{Error, Result};
pub use head::HeadChunk;
pub use sketch::{DEFAULT_ALPHA, DEFAULT_MAX_BINS, Sketch};
pub use summary::Summary;
pub use value::{Kind, ValueRef, Values};
