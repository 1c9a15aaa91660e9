//! `pulsewire analyze` end to end: the real binary reads a CSV with a spike, writes one scored
//! row per input row, and the spike is the one point scored as an anomaly.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pulsewire");

#[test]
fn analyze_scores_every_row_and_flags_the_spike() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("series.csv");
    let output = dir.path().join("scores.csv");
    let mut csv = String::from("timestamp,value\n");
    let spike_at = 400;
    for i in 0..600 {
        // A gently noisy series (deterministic), with one spike.
        let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
        let value = if i == spike_at { 60.0 } else { 20.0 + noise };
        let secs = 1_404_172_800 + i * 300;
        csv.push_str(&format!("{secs},{value}\n"));
    }
    std::fs::write(&input, &csv).unwrap();

    for detector in ["surprise", "zscore", "mad", "ewma"] {
        let status = Command::new(BIN)
            .args(["analyze", "--detector", detector, "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .status()
            .unwrap();
        assert!(status.success(), "{detector}: {status}");
        let text = std::fs::read_to_string(&output).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
        let rows: Vec<(String, f64, f64)> = lines
            .map(|l| {
                let cols: Vec<&str> = l.split(',').collect();
                assert_eq!(cols.len(), 3, "{l}");
                (cols[0].to_owned(), cols[1].parse().unwrap(), cols[2].parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), 600, "{detector}");
        assert_eq!(rows[0].0, "1404172800", "timestamps are repeated as written");
        assert_eq!(rows[spike_at].1, 60.0);
        assert!(
            rows.iter().all(|r| (0.0..=1.0).contains(&r.2)),
            "{detector}: scores in [0, 1]"
        );
        assert!(rows[..64].iter().all(|r| r.2 == 0.0), "{detector}: warm-up scores 0");
        let spike = rows[spike_at].2;
        assert!(spike >= 0.5, "{detector}: spike scored {spike}");
        let before = rows[100..spike_at].iter().map(|r| r.2).fold(0.0, f64::max);
        assert!(
            before < spike,
            "{detector}: a normal point scored {before}, the spike {spike}"
        );
    }

    let bad = Command::new(BIN)
        .args(["analyze", "--detector", "nope", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown detector"));
}
