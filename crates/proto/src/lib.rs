//! The wire protocol shared by the WebSocket and SSE transports and the HTTP publish API:
//! decoding client commands, encoding server frames, and the stable error and close codes.
//! docs/protocol.md is the user-facing description of everything here; keep them in step.

mod codes;
mod frames;

pub use codes::{CloseCode, ErrorCode};
pub use frames::{
    ClientCommand, FrameError, HistoryReply, PublishReply, SubscribeReply, SubscribedChannel, decode_command,
    encode_error, encode_message, encode_reply, single_line,
};
