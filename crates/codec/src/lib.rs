//! Time-series encodings shared by the store and the analysis code: compressed head chunks,
//! the sealed-block codec, mergeable summaries (quantile sketch and rollup aggregates) and the
//! columnar codec for runs of rollup summaries.
//!
//! Everything here decodes bytes that may come from a damaged disk, so indexing and `unwrap` are
//! denied: corrupt input must surface as an [`Error`], never as a panic.
//!
//! Sizing, as measured (see [`block`] and [`head`](HeadChunk)):
//! - Seal a [`HeadChunk`] at 120 points: the noisiest numeric series then hold ~1.3 KiB of
//!   heap (~1.9 KiB at 240 points, where the struct takes the series past 2 KiB).
//! - Store blocks of at least 720 points (2 h at 10 s, 12 min at 1 s): a block carries ~20-25
//!   bytes of fixed overhead, so the host mix costs 0.92 bytes/sample at 720 points but 1.07 at
//!   120 and 1.62 at 30. Short blocks from frequent checkpoints should be merged (decode and
//!   re-encode) when compacting.
//! - Decoding runs at ~12-17 ns per point for numeric blocks, ~1.0-1.5 ms for a day of 1 s data.
//! - Store rollups with [`encode_summaries`] (see [`summaries`]): the 1-minute tier of 10 s host
//!   metrics then costs ~1.3 bytes per raw sample in blocks of 512 buckets (~0.2 at 1 s), where
//!   [`Summary::encode`] back to back cost ~16 (~1.8 at 1 s).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod bits;
pub mod block;
mod error;
mod gorilla;
mod head;
mod ints;
mod sketch;
pub mod summaries;
mod summary;
mod value;
mod zstd_ctx;

pub use block::{
    BlockOptions, FloatCodec, MAX_BLOCK_POINTS, decode_block, decode_block_append, encode_block, encode_block_with,
};
pub use error::{Error, Result};
pub use head::HeadChunk;
pub use sketch::{DEFAULT_ALPHA, DEFAULT_MAX_BINS, Sketch};
pub use summaries::{Sketches, decode_summaries, decode_summaries_with, encode_summaries};
pub use summary::Summary;
pub use value::{Kind, ValueRef, Values};
