//! Client commands (decoded) and server frames (encoded).
//!
//! Decoding goes through one envelope with every field optional, then checks per `type`, so that
//! each mistake gets its own error code and message instead of serde's generic one.
//! Message frames are written by hand: they are the hot path, encoded once per publication and
//! shared by every subscriber.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;

use bytes::Bytes;
use pulsewire_model::{Position, Priority, Publication};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ErrorCode;

/// A decoded client command.
#[derive(Debug, PartialEq)]
pub enum ClientCommand {
    Subscribe {
        id: Option<u64>,
        channels: Vec<String>,
        since: BTreeMap<String, Position>,
    },
    Unsubscribe {
        id: Option<u64>,
        channels: Vec<String>,
    },
    Publish {
        id: Option<u64>,
        channel: String,
        data: Bytes,
        priority: Priority,
    },
    History {
        id: Option<u64>,
        channel: String,
        limit: Option<usize>,
        since: Option<Position>,
    },
    Ping {
        id: Option<u64>,
    },
    /// Authenticates a connection opened without credentials; only as its first frame.
    Connect {
        id: Option<u64>,
        token: String,
    },
    /// Replaces the connection's token before it expires (same `sub` and tenant).
    Refresh {
        id: Option<u64>,
        token: String,
    },
    /// Lists the connections subscribed to a channel.
    Presence {
        id: Option<u64>,
        channel: String,
    },
}

/// Why a frame could not be decoded; `id` is set when the frame got far enough to carry one.
#[derive(Debug, PartialEq)]
pub struct FrameError {
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    /// Borrowed unless the frame spells it with escapes (`"p\u0069ng"`, `"a\/b"`), which a
    /// `&str` could not hold.
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    id: Option<u64>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    priority: Option<Priority>,
    limit: Option<usize>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    token: Option<String>,
}

fn missing(id: Option<u64>, field: &str, kind: &str) -> FrameError {
    FrameError {
        id,
        code: ErrorCode::BadRequest,
        message: format!("`{kind}` needs the field `{field}`"),
    }
}

/// Decodes one text frame.
pub fn decode_command(text: &str) -> Result<ClientCommand, FrameError> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        // Text that is not JSON is bad JSON; valid JSON of the wrong shape is a bad request, with
        // the id if we can still find one. Which one is decided by reading the text as JSON
        // without keeping it, not by the error's category: serde_json reports some type
        // mismatches (a number where `priority`'s string belongs) as syntax errors. (Reading
        // into a `Value` would not do either: it refuses numbers beyond f64, such as 1e999.)
        let code = if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            ErrorCode::BadRequest
        } else {
            ErrorCode::BadJson
        };
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_u64()));
        FrameError {
            id,
            code,
            message: e.to_string(),
        }
    })?;
    let id = env.id;
    let kind = env.kind.ok_or(FrameError {
        id,
        code: ErrorCode::UnknownType,
        message: "frame has no `type`".into(),
    })?;
    let kind = kind.as_ref();
    match kind {
        "subscribe" => {
            let channels = env.channels.ok_or_else(|| missing(id, "channels", kind))?;
            let since = match env.since {
                None => BTreeMap::new(),
                Some(raw) => serde_json::from_str(raw.get()).map_err(|e| FrameError {
                    id,
                    code: ErrorCode::BadRequest,
                    message: format!("`since` must map channel names to {{\"epoch\",\"offset\"}}: {e}"),
                })?,
            };
            Ok(ClientCommand::Subscribe { id, channels, since })
        }
        "unsubscribe" => {
            let channels = env.channels.ok_or_else(|| missing(id, "channels", kind))?;
            Ok(ClientCommand::Unsubscribe { id, channels })
        }
        "publish" => {
            let channel = env.channel.ok_or_else(|| missing(id, "channel", kind))?;
            let data = env.data.ok_or_else(|| missing(id, "data", kind))?;
            Ok(ClientCommand::Publish {
                id,
                channel,
                data: Bytes::copy_from_slice(data.get().as_bytes()),
                priority: env.priority.unwrap_or_default(),
            })
        }
        "history" => {
            let channel = env.channel.ok_or_else(|| missing(id, "channel", kind))?;
            let since = match env.since {
                None => None,
                Some(raw) => Some(serde_json::from_str(raw.get()).map_err(|e| FrameError {
                    id,
                    code: ErrorCode::BadRequest,
                    message: format!("`since` must be {{\"epoch\",\"offset\"}}: {e}"),
                })?),
            };
            Ok(ClientCommand::History {
                id,
                channel,
                limit: env.limit,
                since,
            })
        }
        "ping" => Ok(ClientCommand::Ping { id }),
        "connect" => {
            let token = env.token.ok_or_else(|| missing(id, "token", kind))?;
            Ok(ClientCommand::Connect { id, token })
        }
        "refresh" => {
            let token = env.token.ok_or_else(|| missing(id, "token", kind))?;
            Ok(ClientCommand::Refresh { id, token })
        }
        "presence" => {
            let channel = env.channel.ok_or_else(|| missing(id, "channel", kind))?;
            Ok(ClientCommand::Presence { id, channel })
        }
        other => Err(FrameError {
            id,
            code: ErrorCode::UnknownType,
            message: format!("unknown frame type {other:?}"),
        }),
    }
}

/// Makes a JSON payload safe for one-line framing (SSE `data:` lines): a valid JSON text can
/// only hold line breaks as insignificant whitespace (inside strings they must be escaped), so
/// replacing them with spaces keeps the value identical. Copies only when there is one.
pub fn single_line(data: Bytes) -> Bytes {
    if !data.iter().any(|&b| b == b'\n' || b == b'\r') {
        return data;
    }
    data.iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect::<Vec<u8>>()
        .into()
}

/// Encodes a `message` frame. `pattern` names the pattern subscription it was delivered for.
pub fn encode_message(p: &Publication, pattern: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(96 + p.data.len() + p.channel.as_str().len());
    out.extend_from_slice(b"{\"type\":\"message\",\"channel\":");
    write_str(&mut out, p.channel.as_str());
    if let Some(pattern) = pattern {
        out.extend_from_slice(b",\"pattern\":");
        write_str(&mut out, pattern);
    }
    out.extend_from_slice(b",\"epoch\":");
    write_str(&mut out, &p.epoch);
    // Writing to a Vec cannot fail.
    let _ = write!(out, ",\"offset\":{},\"ts\":{}", p.offset, p.ts);
    if p.priority != Priority::Normal {
        out.extend_from_slice(b",\"priority\":\"");
        out.extend_from_slice(p.priority.as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(&p.data);
    out.push(b'}');
    Bytes::from(out)
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping; infallible into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Encodes an `error` frame.
pub fn encode_error(id: Option<u64>, code: ErrorCode, message: &str) -> Bytes {
    #[derive(Serialize)]
    struct ErrorFrame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: &'static str,
        message: &'a str,
    }
    encode_reply(&ErrorFrame {
        kind: "error",
        id,
        code: code.as_str(),
        message,
    })
}

/// Encodes any serializable reply frame.
pub fn encode_reply<T: Serialize>(frame: &T) -> Bytes {
    // Our reply types serialize infallibly (string keys, no custom Serialize that fails).
    Bytes::from(serde_json::to_vec(frame).unwrap_or_else(|_| b"{\"type\":\"error\",\"code\":\"internal\"}".to_vec()))
}

/// One channel's entry in a `subscribed` reply.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SubscribedChannel {
    /// Absent for patterns, which have no single stream position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Present only for channels the client gave a `since` position for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// How many publications were replayed before live delivery resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubscribeReply {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub channels: BTreeMap<String, SubscribedChannel>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PublishReply {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub channel: String,
    pub epoch: String,
    pub offset: u64,
}

#[derive(Debug, Serialize)]
pub struct HistoryReply<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub channel: &'a str,
    pub epoch: &'a str,
    pub offset: u64,
    /// False when `since` was given and publications after it are no longer kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    pub publications: Vec<&'a RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsewire_model::ChannelName;
    use std::sync::Arc;

    #[test]
    fn decodes_commands() {
        let cmd = decode_command(
            r#"{"type":"subscribe","id":1,"channels":["a","m:*"],"since":{"a":{"epoch":"E","offset":41}}}"#,
        )
        .unwrap();
        let mut since = BTreeMap::new();
        since.insert(
            "a".to_string(),
            Position {
                epoch: Arc::from("E"),
                offset: 41,
            },
        );
        assert_eq!(
            cmd,
            ClientCommand::Subscribe {
                id: Some(1),
                channels: vec!["a".into(), "m:*".into()],
                since
            }
        );
        let cmd = decode_command(r#"{"type":"publish","channel":"a","data":{"x": [1,2]},"priority":"high"}"#).unwrap();
        assert_eq!(
            cmd,
            ClientCommand::Publish {
                id: None,
                channel: "a".into(),
                data: Bytes::from_static(br#"{"x": [1,2]}"#),
                priority: Priority::High
            }
        );
        assert_eq!(
            decode_command(r#"{"type":"ping","id":9}"#).unwrap(),
            ClientCommand::Ping { id: Some(9) }
        );
        assert_eq!(
            decode_command(r#"{"type":"connect","token":"a.b.c"}"#).unwrap(),
            ClientCommand::Connect {
                id: None,
                token: "a.b.c".into()
            }
        );
        assert_eq!(
            decode_command(r#"{"type":"refresh","id":3,"token":"t"}"#).unwrap(),
            ClientCommand::Refresh {
                id: Some(3),
                token: "t".into()
            }
        );
        assert_eq!(
            decode_command(r#"{"type":"presence","id":4,"channel":"chat:a"}"#).unwrap(),
            ClientCommand::Presence {
                id: Some(4),
                channel: "chat:a".into()
            }
        );
        assert_eq!(
            decode_command(r#"{"type":"connect","id":5}"#).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn decode_errors_are_specific() {
        let cases: &[(&str, Option<u64>, ErrorCode)] = &[
            ("{not json", None, ErrorCode::BadJson),
            ("", None, ErrorCode::BadJson),
            ("[1,2]", None, ErrorCode::BadRequest),
            (r#"{"id":3}"#, Some(3), ErrorCode::UnknownType),
            (r#"{"type":"dance","id":4}"#, Some(4), ErrorCode::UnknownType),
            (r#"{"type":"subscribe","id":5}"#, Some(5), ErrorCode::BadRequest),
            (
                r#"{"type":"publish","id":6,"channel":"a"}"#,
                Some(6),
                ErrorCode::BadRequest,
            ),
            (
                r#"{"type":"publish","id":7,"channel":"a","data":1,"priority":"urgent"}"#,
                Some(7),
                ErrorCode::BadRequest,
            ),
            (
                r#"{"type":"subscribe","id":8,"channels":["a"],"since":{"a":{"offset":1}}}"#,
                Some(8),
                ErrorCode::BadRequest,
            ),
            // Valid JSON with a priority that is not a string: serde_json calls that a syntax
            // error, which used to make it `bad_json`.
            (
                r#"{"type":"publish","id":9,"channel":"a","data":1,"priority":9}"#,
                Some(9),
                ErrorCode::BadRequest,
            ),
            ("{\"tata\":{},\"priority\"\r:[]}", None, ErrorCode::BadRequest),
            // Not JSON, even if a field of the wrong type comes before the syntax error.
            (r#"{"id":"x","type":"ping",}"#, None, ErrorCode::BadJson),
            // JSON, though its number is too large for serde_json's values.
            (r#"{"type":"ping","id":"x","n":1e999}"#, None, ErrorCode::BadRequest),
        ];
        for (text, id, code) in cases {
            let err = decode_command(text).unwrap_err();
            assert_eq!((err.id, err.code), (*id, *code), "frame {text:?}: {}", err.message);
        }
    }

    #[test]
    fn escaped_strings_decode_like_plain_ones() {
        // A `type` written with escapes is the same string: it used to be refused as
        // `bad_request` ("expected a borrowed string"), or reach `unknown_type` only when plain.
        assert_eq!(
            decode_command(r#"{"type":"p\u0069ng","id":1}"#),
            Ok(ClientCommand::Ping { id: Some(1) })
        );
        assert_eq!(
            decode_command(r#"{"type":"subscrib\u0065","channels":["a\/b"]}"#),
            Ok(ClientCommand::Subscribe {
                id: None,
                channels: vec!["a/b".into()],
                since: BTreeMap::new()
            })
        );
        let err = decode_command(r#"{"type":"a\/b","id":2}"#).unwrap_err();
        assert_eq!((err.id, err.code), (Some(2), ErrorCode::UnknownType), "{}", err.message);
        assert_eq!(err.message, r#"unknown frame type "a/b""#);
    }

    #[test]
    fn deep_nesting_is_refused_or_kept_without_recursion() {
        // A frame at the default size limit (64 KiB) made only of brackets: the decoder must
        // answer, not overflow the stack.
        let depth = 32 * 1024;
        let open = "[".repeat(depth);
        assert_eq!(decode_command(&open).unwrap_err().code, ErrorCode::BadJson);
        let nested = format!("{open}{}", "]".repeat(depth));
        assert_eq!(decode_command(&nested).unwrap_err().code, ErrorCode::BadRequest);
        let frame = format!(r#"{{"type":"ping","id":1,"x":{nested}}}"#);
        assert_eq!(
            decode_command(&frame).map_err(|e| e.code),
            Ok(ClientCommand::Ping { id: Some(1) })
        );
        let frame = format!(r#"{{"type":"publish","channel":"a","data":{nested}}}"#);
        assert!(decode_command(&frame).is_ok());
    }

    #[test]
    fn line_breaks_become_spaces() {
        let pretty = Bytes::from_static(b"{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1,\n2]\n}");
        let flat = single_line(pretty.clone());
        assert!(!flat.contains(&b'\n') && !flat.contains(&b'\r'));
        let a: serde_json::Value = serde_json::from_slice(&pretty).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&flat).unwrap();
        assert_eq!(a, b);
        let plain = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(
            single_line(plain.clone()).as_ptr(),
            plain.as_ptr(),
            "no copy without line breaks"
        );
    }

    #[test]
    fn encodes_message_frames() {
        let p = Publication {
            channel: ChannelName::parse("a:b").unwrap(),
            epoch: Arc::from("E1"),
            offset: 42,
            ts: 1700,
            priority: Priority::Normal,
            data: Bytes::from_static(br#"{"v":1}"#),
        };
        assert_eq!(
            &encode_message(&p, None)[..],
            br#"{"type":"message","channel":"a:b","epoch":"E1","offset":42,"ts":1700,"data":{"v":1}}"#
        );
        let p = Publication {
            priority: Priority::Critical,
            ..p
        };
        assert_eq!(
            &encode_message(&p, Some("a:*"))[..],
            br#"{"type":"message","channel":"a:b","pattern":"a:*","epoch":"E1","offset":42,"ts":1700,"priority":"critical","data":{"v":1}}"#
        );
        assert_eq!(
            &encode_error(Some(2), ErrorCode::BadChannel, "no")[..],
            br#"{"type":"error","id":2,"code":"bad_channel","message":"no"}"#
        );
    }
}
