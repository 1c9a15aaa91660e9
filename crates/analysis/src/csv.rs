//! The `timestamp,value` CSV that `pulsewire analyze` and the NAB benchmark read, and the
//! `timestamp,value,anomaly_score` CSV that `analyze` writes. Kept here, next to the detectors,
//! so both tools read series the same way; it works on caller-supplied readers and writers and
//! never opens a file itself.
//!
//! Timestamps are `YYYY-MM-DD HH:MM:SS` (NAB's form; `T` instead of the space, fractional
//! seconds and a trailing `Z` are accepted, all read as UTC) or an integer count since the Unix
//! epoch: seconds below 10^11, milliseconds from there. The original text is kept so the output
//! repeats it exactly.

use std::io::{self, BufRead, Write};

/// One row of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The timestamp as written in the input.
    pub timestamp: String,
    pub ts_ms: i64,
    pub value: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: {problem}")]
    Parse { line: usize, problem: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads every row. A first line whose value column is not a number is taken as the header;
/// blank lines are skipped; a value that is empty or `nan` is kept as NaN (detectors skip it).
pub fn read_series(input: impl BufRead) -> Result<Vec<Row>, CsvError> {
    let mut rows = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        let n = i + 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let err = |problem: String| CsvError::Parse { line: n, problem };
        let mut cols = text.split(',');
        let (Some(ts), Some(value)) = (cols.next(), cols.next()) else {
            return Err(err(format!("expected `timestamp,value`, got {text:?}")));
        };
        let (ts, value) = (unquote(ts), unquote(value));
        let value = if value.is_empty() || value.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            match value.parse::<f64>() {
                Ok(v) => v,
                Err(_) if rows.is_empty() && n == 1 => continue,
                Err(_) => return Err(err(format!("value {value:?} is not a number"))),
            }
        };
        let ts_ms = parse_timestamp(ts).ok_or_else(|| err(format!("timestamp {ts:?} is not understood")))?;
        rows.push(Row {
            timestamp: ts.to_owned(),
            ts_ms,
            value,
        });
    }
    Ok(rows)
}

/// Writes the header and one `timestamp,value,anomaly_score` line per row.
pub fn write_scores(mut out: impl Write, rows: &[Row], scores: &[f64]) -> io::Result<()> {
    writeln!(out, "timestamp,value,anomaly_score")?;
    for (row, score) in rows.iter().zip(scores) {
        writeln!(out, "{},{},{}", row.timestamp, row.value, score)?;
    }
    out.flush()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s)
}

/// Milliseconds since the Unix epoch, UTC; `None` if the text is neither form.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return if n.unsigned_abs() < 100_000_000_000 {
            n.checked_mul(1000)
        } else {
            Some(n)
        };
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok());
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = match s.get(19..) {
        None | Some("") => 0,
        Some(frac) => {
            let digits = frac.strip_prefix('.')?;
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let mut ms = 0i64;
            for (k, c) in digits.bytes().take(3).enumerate() {
                ms += i64::from(c - b'0') * [100, 10, 1][k];
            }
            ms
        }
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2014-07-01 00:30:00"), Some(1_404_174_600_000));
        assert_eq!(parse_timestamp("2014-04-10 07:15:00.000000"), Some(1_397_114_100_000));
        assert_eq!(parse_timestamp("2014-04-10T07:15:00.250Z"), Some(1_397_114_100_250));
        assert_eq!(parse_timestamp("1404174600"), Some(1_404_174_600_000));
        assert_eq!(parse_timestamp("1404174600123"), Some(1_404_174_600_123));
        assert_eq!(parse_timestamp("2014-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2014-04-10 07:15:00.x"), None);
    }

    #[test]
    fn reads_with_and_without_header_and_writes_scores() {
        let rows = read_series("timestamp,value\n2014-07-01 00:00:00,10844\n\n1,2.5\n".as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].value, 10844.0);
        assert_eq!(rows[1].ts_ms, 1000);
        let rows2 = read_series("5,1\n6,nan\n".as_bytes()).unwrap();
        assert_eq!(rows2.len(), 2);
        assert!(rows2[1].value.is_nan());
        assert!(read_series("a,b\n1,x\n".as_bytes()).is_err());
        assert!(read_series("1,2\nnot-a-time,3\n".as_bytes()).is_err());
        let mut out = Vec::new();
        write_scores(&mut out, &rows, &[0.0, 0.75]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "timestamp,value,anomaly_score\n2014-07-01 00:00:00,10844,0\n1,2.5,0.75\n"
        );
    }
}
