//! `bench nab`: runs Pulsewire's anomaly detectors over the Numenta Anomaly Benchmark corpus and
//! scores them the way NAB does, so the figures sit next to NAB's published scoreboard.
//!
//! The scorer follows NAB's own code (its sweeper and threshold optimiser), detail by detail:
//! - the first 15 % of each file, at most 750 records, is probationary and never scored;
//! - every record gets a weight: inside a window, the scaled sigmoid of its position relative to
//!   the window's right edge (-(right - i + 1) / width, so the window's first record weighs
//!   A_TP), divided by the sigmoid's value at the left edge; outside, -A_FP times the sigmoid of
//!   its distance past the preceding window (|right - i| / (width - 1)), or -A_FP when no window
//!   precedes it;
//! - for a threshold, each window counts the best (that is, the earliest) weight among its
//!   records that score at or above it, or -A_FN if none; every such record outside a window
//!   adds its (negative) weight;
//! - the threshold is swept over every distinct score in the whole corpus (plus "none") and the
//!   best total is kept, per profile;
//! - the total is normalised as 100 * (S - S_null) / (S_perfect - S_null), where S_null is the
//!   never-detecting total (-A_FN per scored window) and S_perfect is A_TP per window.
//!
//! Detectors run exactly as the server runs them: one fresh detector per file, every record
//! observed once, in order. The cost per point is the time spent inside `observe`, and the
//! state per series is the detector's own account (struct plus heap), checked after each file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use pulsewire_analysis::csv::{Row, parse_timestamp, read_series};
use pulsewire_analysis::{Detector, DetectorKind};

/// Arguments of `bench nab`.
#[derive(Debug, Clone, clap::Args)]
pub struct NabArgs {
    /// NAB's directory: data/ with the CSV files and labels/combined_windows.json.
    #[arg(long, default_value = "../shared/data/nab")]
    pub data: PathBuf,
    /// Detector to run (zscore, mad, ewma, surprise) or `all`; repeat for several.
    #[arg(long, default_value = "surprise")]
    pub detector: Vec<String>,
    /// Detector configuration as JSON (e.g. '{"kind":"zscore","window":128}'), instead of a name.
    #[arg(long)]
    pub config: Option<String>,
    /// Also print each file's contribution under the standard profile.
    #[arg(long)]
    pub per_file: bool,
}

/// A NAB cost profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fn_: f64,
    pub fp: f64,
}

/// NAB's three profiles (its config/profiles.json).
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fn_: 1.0,
        fp: 0.11,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fn_: 1.0,
        fp: 0.22,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fn_: 2.0,
        fp: 0.11,
    },
];

/// One labelled series.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to data/, as NAB's label files name it.
    pub name: String,
    pub rows: Vec<Row>,
    /// Anomaly windows as inclusive record-index ranges, in order.
    pub windows: Vec<(usize, usize)>,
}

/// The labelled corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub files: Vec<DataFile>,
}

impl Corpus {
    /// Reads every CSV under `dir/data` and its windows from `dir/labels/combined_windows.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Corpus> {
        let labels_path = dir.join("labels/combined_windows.json");
        let labels_text =
            std::fs::read_to_string(&labels_path).with_context(|| format!("reading {}", labels_path.display()))?;
        let labels: BTreeMap<String, Vec<[String; 2]>> =
            serde_json::from_str(&labels_text).with_context(|| format!("parsing {}", labels_path.display()))?;
        let mut files = Vec::new();
        for (name, windows) in labels {
            let path = dir.join("data").join(&name);
            let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let rows = read_series(std::io::BufReader::new(file)).with_context(|| format!("reading {name}"))?;
            let mut limits = Vec::with_capacity(windows.len());
            for [start, end] in &windows {
                let index_of = |ts: &str| -> anyhow::Result<usize> {
                    let ms = parse_timestamp(ts).with_context(|| format!("{name}: bad window timestamp {ts:?}"))?;
                    rows.iter()
                        .position(|r| r.ts_ms == ms)
                        .with_context(|| format!("{name}: window edge {ts} is not a record's timestamp"))
                };
                let (a, b) = (index_of(start)?, index_of(end)?);
                if b < a {
                    bail!("{name}: window {start}..{end} ends before it starts");
                }
                limits.push((a, b));
            }
            limits.sort_unstable();
            files.push(DataFile {
                name,
                rows,
                windows: limits,
            });
        }
        if files.is_empty() {
            bail!("{} names no data files", labels_path.display());
        }
        Ok(Corpus { files })
    }

    pub fn records(&self) -> usize {
        self.files.iter().map(|f| f.rows.len()).sum()
    }

    pub fn windows(&self) -> usize {
        self.files.iter().map(|f| f.windows.len()).sum()
    }
}

/// NAB's probationary length: 15 % of the file, at most 750 records.
pub fn probationary_length(records: usize) -> usize {
    ((records as f64 * 0.15).floor() as usize).min(750)
}

fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Where a scored record stands, independent of the profile.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Inside window `id` (global numbering), with its TP weight before A_TP.
    Window { id: usize, weight: f64 },
    /// Outside every window, with its FP weight before A_FP (negative).
    Outside { weight: f64 },
}

/// Every non-probationary record's place, in file order, plus which windows can be scored.
fn places(file: &DataFile, first_window_id: usize) -> (Vec<Option<Place>>, Vec<bool>) {
    let n = file.rows.len();
    let probation = probationary_length(n);
    let max_tp = scaled_sigmoid(-1.0);
    let mut out = Vec::with_capacity(n);
    let mut scored = vec![false; file.windows.len()];
    let mut next_window = 0;
    let mut current: Option<(usize, usize, f64)> = None; // (local id, right, width)
    let mut previous: Option<(usize, f64)> = None; // (right, width)
    for i in 0..n {
        if current.is_none()
            && let Some(&(left, right)) = file.windows.get(next_window)
            && left == i
        {
            current = Some((next_window, right, (right - left + 1) as f64));
            next_window += 1;
        }
        let place = match current {
            Some((id, right, width)) => {
                let position = -((right - i + 1) as f64) / width;
                Place::Window {
                    id: first_window_id + id,
                    weight: scaled_sigmoid(position) / max_tp,
                }
            }
            None => match previous {
                None => Place::Outside { weight: -1.0 },
                Some((right, width)) => Place::Outside {
                    weight: scaled_sigmoid(i.abs_diff(right) as f64 / (width - 1.0)),
                },
            },
        };
        if i >= probation {
            if let Place::Window { id, .. } = place {
                scored[id - first_window_id] = true;
            }
            out.push(Some(place));
        } else {
            out.push(None);
        }
        if let Some((_, right, width)) = current
            && right == i
        {
            previous = Some((right, width));
            current = None;
        }
    }
    (out, scored)
}

/// The corpus' records ranked once for a detector's scores, ready to sweep for any profile.
pub struct Ranked {
    /// (score, place) of every scored record, highest score first.
    points: Vec<(f64, Place)>,
    scored_windows: Vec<bool>,
    total_windows: usize,
}

/// The result of one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileScore {
    pub profile: &'static str,
    /// Best raw NAB score over all thresholds.
    pub raw: f64,
    /// The lowest score counted as a detection at that best (above 1 when nothing is detected).
    pub threshold: f64,
    pub null: f64,
    pub perfect: f64,
    /// 100 * (raw - null) / (perfect - null).
    pub normalized: f64,
    /// Windows with a detection, and detections outside windows, at the best threshold.
    pub detected_windows: usize,
    pub false_positives: usize,
}

impl Ranked {
    /// `scores[f][i]` is the score of record `i` of file `f`.
    pub fn new(corpus: &Corpus, scores: &[Vec<f64>]) -> anyhow::Result<Ranked> {
        if scores.len() != corpus.files.len() {
            bail!("{} score lists for {} files", scores.len(), corpus.files.len());
        }
        let mut points = Vec::with_capacity(corpus.records());
        let mut scored_windows = Vec::new();
        for (file, file_scores) in corpus.files.iter().zip(scores) {
            if file_scores.len() != file.rows.len() {
                bail!(
                    "{}: {} scores for {} records",
                    file.name,
                    file_scores.len(),
                    file.rows.len()
                );
            }
            let (file_places, scored) = places(file, scored_windows.len());
            scored_windows.extend(scored);
            for (place, &score) in file_places.into_iter().zip(file_scores) {
                if let Some(place) = place {
                    // NaN would break the ordering; a detector giving one has failed to judge.
                    points.push((if score.is_nan() { 0.0 } else { score }, place));
                }
            }
        }
        points.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(Ranked {
            points,
            scored_windows,
            total_windows: corpus.windows(),
        })
    }

    /// Sweeps the threshold down through every distinct score and keeps the best total.
    pub fn best(&self, profile: Profile) -> ProfileScore {
        let mut parts: Vec<f64> = self
            .scored_windows
            .iter()
            .map(|&s| if s { -profile.fn_ } else { 0.0 })
            .collect();
        let null: f64 = parts.iter().sum();
        let perfect = profile.tp * self.total_windows as f64;
        let mut total = null;
        let (mut best, mut best_threshold) = (null, 1.1);
        let (mut detected, mut fps) = (0usize, 0usize);
        let (mut best_detected, mut best_fps) = (0, 0);
        let mut i = 0;
        while i < self.points.len() {
            let threshold = self.points[i].0;
            // Every record at this exact score switches to "detected" together.
            while i < self.points.len() && self.points[i].0 == threshold {
                match self.points[i].1 {
                    Place::Window { id, weight } => {
                        let new = weight * profile.tp;
                        if parts[id] == -profile.fn_ && new > -profile.fn_ {
                            detected += 1;
                        }
                        if new > parts[id] {
                            total += new - parts[id];
                            parts[id] = new;
                        }
                    }
                    Place::Outside { weight } => {
                        total += weight * profile.fp;
                        fps += 1;
                    }
                }
                i += 1;
            }
            if total > best {
                (best, best_threshold, best_detected, best_fps) = (total, threshold, detected, fps);
            }
        }
        ProfileScore {
            profile: profile.name,
            raw: best,
            threshold: best_threshold,
            null,
            perfect,
            normalized: 100.0 * (best - null) / (perfect - null),
            detected_windows: best_detected,
            false_positives: best_fps,
        }
    }
}

/// One detector's run over the corpus.
pub struct DetectorRun {
    pub scores: Vec<Vec<f64>>,
    pub ns_per_point: f64,
    pub state_bytes: usize,
}

/// Runs a fresh detector over each file, as the server would online.
pub fn run_detector(corpus: &Corpus, kind: &DetectorKind) -> DetectorRun {
    let mut scores = Vec::with_capacity(corpus.files.len());
    let mut spent = std::time::Duration::ZERO;
    let mut state_bytes = 0;
    for file in &corpus.files {
        let mut detector = kind.build();
        let mut out = Vec::with_capacity(file.rows.len());
        let start = Instant::now();
        for row in &file.rows {
            out.push(detector.observe(row.ts_ms, row.value).score);
        }
        spent += start.elapsed();
        state_bytes = state_bytes.max(detector.state_bytes());
        scores.push(out);
    }
    let points = corpus.records().max(1);
    DetectorRun {
        scores,
        ns_per_point: spent.as_nanos() as f64 / points as f64,
        state_bytes,
    }
}

pub fn run(args: NabArgs) -> anyhow::Result<()> {
    let corpus = Corpus::load(&args.data)?;
    let kinds: Vec<DetectorKind> = match &args.config {
        Some(json) => vec![serde_json::from_str(json).context("--config")?],
        None => {
            let mut kinds = Vec::new();
            for name in &args.detector {
                if name == "all" {
                    kinds.extend(DetectorKind::NAMES.iter().filter_map(|n| n.parse().ok()));
                } else {
                    kinds.push(name.parse()?);
                }
            }
            kinds
        }
    };
    for kind in &kinds {
        kind.validate()?;
    }
    println!(
        "NAB corpus: {} files, {} records, {} windows ({})",
        corpus.files.len(),
        corpus.records(),
        corpus.windows(),
        args.data.display()
    );
    let mut summary = Vec::new();
    for kind in &kinds {
        let run = run_detector(&corpus, kind);
        let ranked = Ranked::new(&corpus, &run.scores)?;
        println!("\ndetector {kind}");
        println!(
            "{:<20} {:>7} {:>9} {:>10} {:>8} {:>5}",
            "profile", "score", "raw", "threshold", "windows", "FP"
        );
        let mut profiles = serde_json::Map::new();
        for profile in PROFILES {
            let s = ranked.best(profile);
            println!(
                "{:<20} {:>7.1} {:>9.2} {:>10.4} {:>4}/{:<3} {:>5}",
                s.profile,
                s.normalized,
                s.raw,
                s.threshold,
                s.detected_windows,
                corpus.windows(),
                s.false_positives
            );
            profiles.insert(s.profile.into(), (((s.normalized * 10.0).round()) / 10.0).into());
        }
        println!(
            "cost: {:.0} ns/point, {} bytes of state per series",
            run.ns_per_point, run.state_bytes
        );
        if args.per_file {
            print_per_file(&corpus, &run.scores, PROFILES[0]);
        }
        let mut entry = serde_json::Map::new();
        entry.insert("detector".into(), kind.name().into());
        entry.insert("config".into(), serde_json::to_value(kind)?);
        entry.insert("scores".into(), profiles.into());
        entry.insert("ns_per_point".into(), ((run.ns_per_point * 10.0).round() / 10.0).into());
        entry.insert("state_bytes".into(), run.state_bytes.into());
        summary.push(serde_json::Value::Object(entry));
    }
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), "nab".into());
    out.insert("records".into(), corpus.records().into());
    out.insert("detectors".into(), summary.into());
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// Each file's raw score at the corpus-wide best threshold (for looking at where a detector
/// wins or loses, not part of NAB's method).
fn print_per_file(corpus: &Corpus, scores: &[Vec<f64>], profile: Profile) {
    let Ok(ranked) = Ranked::new(corpus, scores) else {
        return;
    };
    let threshold = ranked.best(profile).threshold;
    println!("per file at threshold {threshold:.4} ({}):", profile.name);
    for (file, s) in corpus.files.iter().zip(scores) {
        let single = Corpus {
            files: vec![file.clone()],
        };
        let Ok(r) = Ranked::new(&single, std::slice::from_ref(s)) else {
            continue;
        };
        let at = r.at_threshold(profile, threshold);
        println!(
            "  {:<58} {:>7.2} (null {:>3}) windows {}/{} FP {}",
            file.name,
            at.raw,
            at.null,
            at.detected_windows,
            file.windows.len(),
            at.false_positives
        );
    }
}

impl Ranked {
    /// The total when exactly the records scoring at or above `threshold` are detections.
    fn at_threshold(&self, profile: Profile, threshold: f64) -> ProfileScore {
        let mut parts: Vec<f64> = self
            .scored_windows
            .iter()
            .map(|&w| if w { -profile.fn_ } else { 0.0 })
            .collect();
        let null: f64 = parts.iter().sum();
        let mut fp_total = 0.0;
        let (mut windows, mut fps) = (0, 0);
        for &(_, place) in self.points.iter().take_while(|p| p.0 >= threshold) {
            match place {
                Place::Window { id, weight } => {
                    if parts[id] == -profile.fn_ {
                        windows += 1;
                    }
                    parts[id] = parts[id].max(weight * profile.tp);
                }
                Place::Outside { weight } => {
                    fp_total += weight * profile.fp;
                    fps += 1;
                }
            }
        }
        let raw = parts.iter().sum::<f64>() + fp_total;
        let perfect = profile.tp * self.total_windows as f64;
        ProfileScore {
            profile: profile.name,
            raw,
            threshold,
            null,
            perfect,
            normalized: 100.0 * (raw - null) / (perfect - null),
            detected_windows: windows,
            false_positives: fps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> Row {
        Row {
            timestamp: i.to_string(),
            ts_ms: i as i64 * 1000,
            value: 0.0,
        }
    }

    /// Two files of 1,000 records; windows at 300..=339 and 700..=739 in the first, 500..=549 in
    /// the second (all past the 150-record probation).
    fn synthetic() -> Corpus {
        Corpus {
            files: vec![
                DataFile {
                    name: "a.csv".into(),
                    rows: (0..1000).map(row).collect(),
                    windows: vec![(300, 339), (700, 739)],
                },
                DataFile {
                    name: "b.csv".into(),
                    rows: (0..1000).map(row).collect(),
                    windows: vec![(500, 549)],
                },
            ],
        }
    }

    fn never(corpus: &Corpus) -> Vec<Vec<f64>> {
        corpus.files.iter().map(|f| vec![0.0; f.rows.len()]).collect()
    }

    fn perfect(corpus: &Corpus) -> Vec<Vec<f64>> {
        corpus
            .files
            .iter()
            .map(|f| {
                let mut s = vec![0.0; f.rows.len()];
                for &(left, _) in &f.windows {
                    s[left] = 1.0;
                }
                s
            })
            .collect()
    }

    #[test]
    fn probation_is_15_percent_capped_at_750() {
        assert_eq!(probationary_length(1000), 150);
        assert_eq!(probationary_length(4032), 604);
        assert_eq!(probationary_length(22695), 750);
    }

    #[test]
    fn sigmoid_matches_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298).abs() < 1e-9);
        assert!((scaled_sigmoid(-0.5) - 0.848_283_640).abs() < 1e-9);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn never_firing_scores_0_and_perfect_scores_100_on_every_profile() {
        let corpus = synthetic();
        for profile in PROFILES {
            let s = Ranked::new(&corpus, &never(&corpus)).unwrap().best(profile);
            assert_eq!(s.normalized, 0.0, "{profile:?}");
            assert_eq!(s.raw, -3.0 * profile.fn_);
            let s = Ranked::new(&corpus, &perfect(&corpus)).unwrap().best(profile);
            assert!((s.normalized - 100.0).abs() < 1e-9, "{profile:?}: {s:?}");
            assert_eq!(s.detected_windows, 3);
            assert_eq!(s.false_positives, 0);
        }
    }

    #[test]
    fn late_detections_earn_less_and_false_positives_cost_by_distance() {
        let corpus = synthetic();
        let std = PROFILES[0];
        // Detecting the middle of window 300..=339 (position -(339-319+1)/40 = -0.525).
        let mut s = never(&corpus);
        s[0][319] = 1.0;
        let got = Ranked::new(&corpus, &s).unwrap().best(std).raw;
        let want = -2.0 + scaled_sigmoid(-21.0 / 40.0) / scaled_sigmoid(-1.0);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // One FP 20 records after that window: weight sigmoid(20/39) * 0.11, and it is worth
        // detecting together with the window at the same threshold.
        s[0][359] = 1.0;
        let got2 = Ranked::new(&corpus, &s).unwrap().best(std).raw;
        assert!((got2 - (want + 0.11 * scaled_sigmoid(20.0 / 39.0))).abs() < 1e-12);
        // An FP before any window costs the full A_FP.
        let mut s = never(&corpus);
        s[1][200] = 0.9;
        s[1][500] = 0.9;
        let got3 = Ranked::new(&corpus, &s).unwrap().best(std).raw;
        assert!((got3 - (-2.0 + 1.0 - 0.11)).abs() < 1e-12);
    }

    #[test]
    fn the_sweep_picks_the_best_threshold() {
        let corpus = synthetic();
        let mut s = perfect(&corpus);
        // Noise at 0.5 everywhere else outside windows: detecting it would cost far more.
        for f in &mut s {
            for v in f.iter_mut() {
                if *v == 0.0 {
                    *v = 0.5;
                }
            }
        }
        let best = Ranked::new(&corpus, &s).unwrap().best(PROFILES[0]);
        assert_eq!(best.threshold, 1.0);
        assert!((best.normalized - 100.0).abs() < 1e-9);
    }

    #[test]
    fn probationary_records_and_windows_are_not_scored() {
        let corpus = Corpus {
            files: vec![DataFile {
                name: "p.csv".into(),
                rows: (0..1000).map(row).collect(),
                windows: vec![(10, 20), (400, 420)],
            }],
        };
        let mut s = never(&corpus);
        s[0][10] = 1.0; // inside probation: ignored, so the early window is not counted at all
        let r = Ranked::new(&corpus, &s).unwrap();
        let best = r.best(PROFILES[0]);
        assert_eq!(best.null, -1.0);
        assert_eq!(best.raw, -1.0);
    }

    /// The real corpus (`PW_NAB_DATA` or shared/data/nab beside the checkout). Missing, the
    /// test fails: a check that silently skips would pass on a machine that lost the data.
    fn real_corpus() -> Corpus {
        let dir = std::env::var_os("PW_NAB_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab"));
        assert!(
            dir.join("labels/combined_windows.json").is_file(),
            "NAB corpus not found at {} (set PW_NAB_DATA)",
            dir.display()
        );
        Corpus::load(&dir).expect("NAB corpus loads")
    }

    #[test]
    fn real_corpus_bounds() {
        let corpus = real_corpus();
        assert_eq!(corpus.files.len(), 58);
        for profile in PROFILES {
            let s = Ranked::new(&corpus, &never(&corpus)).unwrap().best(profile);
            assert_eq!(s.normalized, 0.0, "{profile:?}");
            let s = Ranked::new(&corpus, &perfect(&corpus)).unwrap().best(profile);
            assert!((s.normalized - 100.0).abs() < 1e-9, "{profile:?}: {s:?}");
        }
    }
}
