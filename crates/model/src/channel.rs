//! Channel names and subscription patterns.
//!
//! Grammar (documented for clients in docs/protocol.md):
//! - a name is 1 to 255 bytes of segments separated by `:`; at most 16 segments;
//! - a segment is 1 or more of `A-Z a-z 0-9 _ - . @ =`;
//! - the namespace of a name is its first segment when it has more than one, else the default
//!   namespace (`""`);
//! - a pattern is a name where a whole segment may be `*` (exactly one segment) and the last
//!   segment may be `>` (one or more remaining segments).

use std::fmt;
use std::sync::Arc;

pub const MAX_CHANNEL_LEN: usize = 255;
pub const MAX_SEGMENTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_LEN} bytes")]
    TooLong,
    #[error("channel name has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error("channel name has an empty segment")]
    EmptySegment,
    #[error("channel name has a character outside A-Z a-z 0-9 _ - . @ = in segment {0:?}")]
    BadCharacter(String),
    #[error("wildcards `*` and `>` are only allowed in patterns, as whole segments, `>` last")]
    Wildcard,
}

fn valid_segment_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'=')
}

/// Checks `s` against the grammar; `pattern` allows `*` segments and a trailing `>`.
fn check(s: &str, pattern: bool) -> Result<(), ChannelError> {
    if s.is_empty() {
        return Err(ChannelError::Empty);
    }
    if s.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    let count = s.split(':').count();
    if count > MAX_SEGMENTS {
        return Err(ChannelError::TooManySegments);
    }
    for (i, seg) in s.split(':').enumerate() {
        if seg.is_empty() {
            return Err(ChannelError::EmptySegment);
        }
        if seg == "*" || (seg == ">" && i + 1 == count) {
            if pattern {
                continue;
            }
            return Err(ChannelError::Wildcard);
        }
        if seg.contains(['*', '>']) {
            return Err(ChannelError::Wildcard);
        }
        if !seg.bytes().all(valid_segment_char) {
            return Err(ChannelError::BadCharacter(seg.to_owned()));
        }
    }
    Ok(())
}

/// True if `s` uses wildcard segments (and so must be parsed as a [`Pattern`]).
pub fn is_pattern(s: &str) -> bool {
    s.split(':').any(|seg| seg == "*" || seg == ">")
}

/// A validated channel name. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    pub fn parse(s: &str) -> Result<Self, ChannelError> {
        check(s, false)?;
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn arc(&self) -> &Arc<str> {
        &self.0
    }

    /// The namespace: the first segment of a name with more than one, else `""`.
    pub fn namespace(&self) -> &str {
        match self.0.split_once(':') {
            Some((ns, _)) => ns,
            None => "",
        }
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seg {
    Lit(Box<str>),
    One,
    Rest,
}

/// A validated subscription pattern (`metrics:*:cpu`, `metrics:>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Arc<str>,
    segs: Box<[Seg]>,
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Self, ChannelError> {
        check(s, true)?;
        let segs = s
            .split(':')
            .map(|seg| match seg {
                "*" => Seg::One,
                ">" => Seg::Rest,
                lit => Seg::Lit(lit.into()),
            })
            .collect();
        Ok(Self {
            text: Arc::from(s),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn arc(&self) -> &Arc<str> {
        &self.text
    }

    /// The literal first segment, if the pattern starts with one; used to index patterns.
    pub fn literal_prefix(&self) -> Option<&str> {
        match self.segs.first() {
            Some(Seg::Lit(s)) => Some(s),
            _ => None,
        }
    }

    pub fn matches(&self, channel: &str) -> bool {
        let mut parts = channel.split(':');
        for seg in self.segs.iter() {
            match seg {
                Seg::Rest => return parts.next().is_some(),
                Seg::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Seg::Lit(lit) => {
                    if parts.next() != Some(&**lit) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// True if every channel this pattern matches is matched by `other` too, i.e. `self`
    /// covers `other`. A literal name (a pattern without wildcards) is covered by the patterns
    /// that match it. Decided segment by segment: `>` covers one or more remaining segments,
    /// `*` covers exactly one segment (a literal or `*`, never `>`, which may span several).
    pub fn covers(&self, other: &Pattern) -> bool {
        let mut theirs = other.segs.iter();
        for seg in self.segs.iter() {
            let Some(t) = theirs.next() else {
                return false;
            };
            match (seg, t) {
                (Seg::Rest, _) => return true,
                (Seg::One, Seg::Lit(_) | Seg::One) => {}
                (Seg::Lit(a), Seg::Lit(b)) if a == b => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grammar_table() {
        let cases: &[(&str, Result<(), ChannelError>)] = &[
            ("a", Ok(())),
            ("metrics:host-1:cpu.user", Ok(())),
            ("user@example.com", Ok(())),
            ("", Err(ChannelError::Empty)),
            ("a::b", Err(ChannelError::EmptySegment)),
            ("a:", Err(ChannelError::EmptySegment)),
            ("a b", Err(ChannelError::BadCharacter("a b".into()))),
            ("a:*", Err(ChannelError::Wildcard)),
            ("a:b*", Err(ChannelError::Wildcard)),
            ("a:>", Err(ChannelError::Wildcard)),
        ];
        for (input, want) in cases {
            assert_eq!(ChannelName::parse(input).map(|_| ()), *want, "input {input:?}");
        }
        assert_eq!(
            ChannelName::parse(&"a".repeat(256)).map(|_| ()),
            Err(ChannelError::TooLong)
        );
        assert_eq!(
            ChannelName::parse(&["a"; 17].join(":")).map(|_| ()),
            Err(ChannelError::TooManySegments)
        );
        assert_eq!(Pattern::parse("a:>:b").map(|_| ()), Err(ChannelError::Wildcard));
        assert!(Pattern::parse("a:*:>").is_ok());
    }

    #[test]
    fn namespace() {
        assert_eq!(ChannelName::parse("metrics:cpu").unwrap().namespace(), "metrics");
        assert_eq!(ChannelName::parse("news").unwrap().namespace(), "");
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("a:*", "a:b", true),
            ("a:*", "a", false),
            ("a:*", "a:b:c", false),
            ("a:>", "a:b", true),
            ("a:>", "a:b:c", true),
            ("a:>", "a", false),
            ("*:x", "q:x", true),
            ("*:x", "q:y", false),
            ("a:b", "a:b", true),
        ];
        for (p, c, want) in cases {
            assert_eq!(Pattern::parse(p).unwrap().matches(c), want, "{p} vs {c}");
        }
    }

    #[test]
    fn coverage_table() {
        let cases = [
            ("a:>", "a:*", true),
            ("a:>", "a:b:>", true),
            ("a:>", "a:b", true),
            ("a:>", "a", false),
            ("a:>", "b:>", false),
            ("a:*", "a:b", true),
            ("a:*", "a:*", true),
            ("a:*", "a:>", false),
            ("a:*", "a:b:c", false),
            ("*:x", "a:x", true),
            ("*:x", "*:*", false),
            ("a:b", "a:b", true),
            ("a:b", "a:*", false),
            (">", "*", true),
            (">", "a:>", true),
            ("*", ">", false),
            ("a:*:c", "a:b:c", true),
            ("a:*:c", "a:b:*", false),
        ];
        for (mine, theirs, want) in cases {
            let (m, t) = (Pattern::parse(mine).unwrap(), Pattern::parse(theirs).unwrap());
            assert_eq!(m.covers(&t), want, "{mine} covers {theirs}");
        }
    }

    /// Reference matcher: patterns and names as segment vectors, matched recursively.
    fn reference(p: &[&str], c: &[&str]) -> bool {
        match (p.split_first(), c.split_first()) {
            (None, None) => true,
            (Some((&">", [])), Some(_)) => true,
            (Some((&"*", pr)), Some((_, cr))) => reference(pr, cr),
            (Some((lit, pr)), Some((seg, cr))) => lit == seg && reference(pr, cr),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn matches_like_reference(
            p in proptest::collection::vec(prop_oneof!["a", "b", Just("*".to_string())], 1..5),
            rest in any::<bool>(),
            c in proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..7),
        ) {
            let mut p = p;
            if rest { p.push(">".into()); }
            let text = p.join(":");
            let pat = Pattern::parse(&text).unwrap();
            let chan = c.join(":");
            let ps: Vec<&str> = p.iter().map(String::as_str).collect();
            let cs: Vec<&str> = c.iter().map(String::as_str).collect();
            prop_assert_eq!(pat.matches(&chan), reference(&ps, &cs));
        }

        /// Coverage is exact: `a` covers `b` if and only if every short name `b` matches is
        /// matched by `a` (names longer than both patterns add nothing a `>` would not show).
        #[test]
        fn covers_like_enumeration(
            a in proptest::collection::vec(prop_oneof!["a", "b", Just("*".to_string())], 1..4),
            a_rest in any::<bool>(),
            b in proptest::collection::vec(prop_oneof!["a", "b", Just("*".to_string())], 1..4),
            b_rest in any::<bool>(),
        ) {
            let (mut a, mut b) = (a, b);
            if a_rest { a.push(">".into()); }
            if b_rest { b.push(">".into()); }
            let (pa, pb) = (Pattern::parse(&a.join(":")).unwrap(), Pattern::parse(&b.join(":")).unwrap());
            let mut names = vec![String::new()];
            let mut all = Vec::new();
            for _ in 0..6 {
                names = names
                    .iter()
                    .flat_map(|n| ["a", "b", "c"].map(|s| if n.is_empty() { s.to_string() } else { format!("{n}:{s}") }))
                    .collect();
                all.extend(names.iter().cloned());
            }
            let enumerated = all.iter().all(|n| !pb.matches(n) || pa.matches(n));
            prop_assert_eq!(pa.covers(&pb), enumerated, "{} covers {}", pa.as_str(), pb.as_str());
        }
    }
}
