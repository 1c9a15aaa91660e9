//! Stand-alone driver for the load generator, used by bench/run-*.sh until
//! (or instead of) `pulsewire bench ...`: `pulsewire-bench fanout|idle [OPTIONS]`.

use clap::Parser;

/// Pulsewire load generator (same subcommands as `pulsewire bench`).
#[derive(Debug, Parser)]
#[command(name = "pulsewire-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: pulsewire_bench::BenchCommand,
}

fn main() -> anyhow::Result<()> {
    pulsewire_bench::run_blocking(Cli::parse().cmd)
}
