//! Encoding time per point of sealed blocks by block length and effort, on the synthetic host
//! mix the size tests use: `cargo run -p pulsewire-codec --release --example encode_speed`.

#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../tests/block_size.rs"]
mod block_size;

fn main() {
    block_size::encode_speed();
}
