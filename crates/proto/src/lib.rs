//! The wire protocol shared by the WebSocket and SSE transports and the HTTP publish API:
//! decoding client commands, encoding server frames, and the stable error and close codes.
//! docs/protocol.md is the user-facing description of everything here; keep them in step.

mod codes;
mod frames;
mod ingest_json;
mod line;
mod query;

pub use codes::{CloseCode, ErrorCode};
pub use frames::{
    ClientCommand, FrameError, HistoryReply, PublishReply, SubscribeReply, SubscribedChannel, decode_command,
    encode_error, encode_message, encode_reply, single_line,
};
pub use ingest_json::{DEFAULT_MEASUREMENT, JSON_INGEST_PRECISION, ObjectError, parse_json_ingest};
pub use line::{FieldValue, Line, LineError, LineIter, Precision, parse_lines, write_line};
pub use query::{
    Agg, DEFAULT_RANGE_MS, MAX_SELECTOR_LEN, MAX_STEP_MS, MatchOp, Matcher, QueryError, QueryParams, Selector,
    parse_duration, parse_query, parse_selector, parse_step, parse_time,
};
