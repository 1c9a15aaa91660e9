//! Prints the codec's measured tables: bytes per sample of sealed blocks and head chunks per
//! series shape and codec choice, and the size and speed of rollup summary blocks, on the
//! synthetic host metrics the size tests use. Run in release:
//! `cargo run -p pulsewire-codec --release --example codec_report`.

// Each size test declares the shared generators as its own `common` module; here both do.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../tests/block_size.rs"]
mod block_size;
#[allow(dead_code)]
#[path = "../tests/summary_size.rs"]
mod summary_size;

fn main() {
    block_size::report();
    summary_size::report();
    summary_size::speed();
}
