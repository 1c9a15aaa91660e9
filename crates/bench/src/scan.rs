//! Cheap receive-path parsing: finds every `"t":<digits>` followed by
//! `"seq":<digits>` in a pushed frame by scanning bytes, without JSON parsing.
//! A frame may carry several messages (centrifuge batches replies separated by
//! newlines), so all occurrences are reported.

const T_KEY: &[u8] = b"\"t\":";
const SEQ_KEY: &[u8] = b"\"seq\":";

/// Position of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let off = hay[i..hay.len() - needle.len() + 1].iter().position(|&b| b == first)?;
        i += off;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Parses an unsigned integer at `i` (leading spaces allowed); returns the
/// value and the index after it.
fn parse_u64(hay: &[u8], mut i: usize) -> Option<(u64, usize)> {
    while i < hay.len() && hay[i] == b' ' {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < hay.len() && hay[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(hay[i] - b'0'))?;
        i += 1;
    }
    (i > start).then_some((v, i))
}

/// Calls `f(t, seq)` for every stamped message in `frame`; returns how many.
pub fn for_each_stamp(frame: &[u8], mut f: impl FnMut(u64, u64)) -> usize {
    let mut n = 0;
    let mut i = 0;
    while let Some(p) = find(frame, i, T_KEY) {
        let Some((t, after_t)) = parse_u64(frame, p + T_KEY.len()) else {
            i = p + T_KEY.len();
            continue;
        };
        let Some(q) = find(frame, after_t, SEQ_KEY) else {
            break;
        };
        let Some((seq, after_seq)) = parse_u64(frame, q + SEQ_KEY.len()) else {
            i = q + SEQ_KEY.len();
            continue;
        };
        f(t, seq);
        n += 1;
        i = after_seq;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for_each_stamp(s.as_bytes(), |t, seq| v.push((t, seq)));
        v
    }

    #[test]
    fn pulsewire_push() {
        let f = r#"{"type":"message","channel":"bench","epoch":"ab","offset":7,"ts":1700000000000,"data":{"t":1700000000000123,"seq":42,"pad":"xxxx"}}"#;
        assert_eq!(all(f), vec![(1700000000000123, 42)]);
    }

    #[test]
    fn socketio_event() {
        assert_eq!(all(r#"42["message",{"t":5,"seq":0,"pad":""}]"#), vec![(5, 0)]);
    }

    #[test]
    fn batched_centrifuge_frames() {
        let f = "{\"result\":{\"channel\":\"bench\",\"data\":{\"data\":{\"t\":1,\"seq\":2,\"pad\":\"x\"}}}}\n{\"result\":{\"channel\":\"bench\",\"data\":{\"data\":{\"t\": 3,\"seq\": 4}}}}";
        assert_eq!(all(f), vec![(1, 2), (3, 4)]);
    }

    #[test]
    fn ignores_unstamped_frames() {
        assert!(all(r#"{"type":"subscribed","id":1}"#).is_empty());
        assert!(all("2").is_empty());
        assert!(all(r#"{"t":"x","seq":1}"#).is_empty());
        assert!(all(r#"{"t":1}"#).is_empty());
    }
}
