//! `pulsewire analyze`: runs one anomaly detector over a `timestamp,value` CSV, point by point in
//! file order exactly as the server runs it on live data (one fresh detector for the series, no
//! look-ahead), and writes `timestamp,value,anomaly_score`. For trying a detector or its
//! parameters on exported data before configuring the server with them.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use anyhow::Context as _;
use pulsewire_analysis::csv::{read_series, write_scores};
use pulsewire_analysis::{Detector as _, DetectorKind};

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Detector: surprise (the default), zscore, mad or ewma, with default parameters.
    #[arg(long, default_value = "surprise")]
    detector: String,
    /// Detector with parameters, as JSON (e.g. '{"kind":"zscore","window":120}'); overrides --detector.
    #[arg(long)]
    config: Option<String>,
    /// Input CSV: `timestamp,value` rows, header optional.
    #[arg(long)]
    input: PathBuf,
    /// Output CSV (`timestamp,value,anomaly_score`); standard output when absent.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let kind: DetectorKind = match &args.config {
        Some(json) => serde_json::from_str(json).context("--config")?,
        None => args.detector.parse()?,
    };
    kind.validate()?;
    let input = std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let rows = read_series(BufReader::new(input)).with_context(|| format!("reading {}", args.input.display()))?;
    let mut detector = kind.build();
    let scores: Vec<f64> = rows.iter().map(|r| detector.observe(r.ts_ms, r.value).score).collect();
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            write_scores(BufWriter::new(file), &rows, &scores)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => write_scores(BufWriter::new(std::io::stdout().lock()), &rows, &scores).context("writing")?,
    }
    let flagged = scores.iter().filter(|&&s| s >= 0.5).count();
    eprintln!("{}: {} points, {} at or above 0.5", kind.name(), rows.len(), flagged);
    Ok(())
}
