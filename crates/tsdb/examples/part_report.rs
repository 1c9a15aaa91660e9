//! Prints what part files hold and what their index takes, then, for the largest, the size of
//! its index (format 2's encoding) at several zstd levels and how long compressing and
//! decompressing it take. Reads parts of either format, with every check a store's open makes.
//!
//! `cargo run -p pulsewire-tsdb --release --example part_report -- PATH...`, where a path is a
//! part file or a directory (a store's `parts/`, a store's `tsdb/`, or a data directory).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pulsewire_tsdb::{PartStats, compress_part_index, inspect_part};

const LEVELS: [i32; 7] = [1, 2, 3, 6, 9, 12, 19];

fn parts_under(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        for entry in entries {
            parts_under(&entry, out)?;
        }
    } else if path.extension().is_some_and(|e| e == "pwp") {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The fastest of `runs` timings of `f`, with the last result.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let start = Instant::now();
    let mut last = f();
    let mut fastest = start.elapsed();
    for _ in 1..runs {
        let start = Instant::now();
        last = f();
        fastest = fastest.min(start.elapsed());
    }
    (last, fastest)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        return Err("usage: part_report PATH... (part files or directories holding them)".into());
    }
    let mut paths = Vec::new();
    for a in &args {
        parts_under(a, &mut paths)?;
    }
    println!(
        "{:>6} {:>12} {:>8} {:>8} {:>11} {:>10} {:>6} {:>8} {:>8} {:>11}  file",
        "format", "bytes", "series", "blocks", "points", "index", "index%", "B/series", "B/point", "plain index"
    );
    let (mut total_bytes, mut total_index) = (0u64, 0u64);
    let mut largest: Option<(PathBuf, PartStats)> = None;
    for path in paths {
        let s = inspect_part(&path)?;
        println!(
            "{:>6} {:>12} {:>8} {:>8} {:>11} {:>10} {:>5.1}% {:>8.2} {:>8.3} {:>11}  {}",
            s.format,
            s.file_bytes,
            s.series,
            s.blocks,
            s.points,
            s.index_bytes,
            100.0 * s.index_bytes as f64 / s.file_bytes as f64,
            s.index_bytes as f64 / s.series.max(1) as f64,
            s.index_bytes as f64 / s.points.max(1) as f64,
            s.plain_index.len(),
            path.display()
        );
        total_bytes += s.file_bytes;
        total_index += s.index_bytes;
        if largest.as_ref().is_none_or(|(_, l)| l.file_bytes < s.file_bytes) {
            largest = Some((path, s));
        }
    }
    println!("total: {total_bytes} bytes, of which {total_index} in indexes");
    let Some((path, s)) = largest else {
        return Ok(());
    };
    println!(
        "\nindex of {} ({} series, {} blocks) in format 2's encoding: {} bytes before compression",
        path.display(),
        s.series,
        s.blocks,
        s.plain_index.len()
    );
    println!(
        "{:>5} {:>11} {:>8} {:>11} {:>11}",
        "level", "bytes", "B/block", "compress", "decompress"
    );
    for level in LEVELS {
        let (stored, took) = best(3, || compress_part_index(&s.plain_index, level));
        let stored = stored?;
        let (plain, back) = best(3, || zstd::bulk::decompress(&stored, s.plain_index.len()));
        if plain? != s.plain_index {
            return Err(format!("level {level}: the index does not decompress to itself").into());
        }
        println!(
            "{level:>5} {:>11} {:>8.2} {:>9.1}ms {:>9.1}ms",
            stored.len(),
            stored.len() as f64 / s.blocks.max(1) as f64,
            took.as_secs_f64() * 1e3,
            back.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
