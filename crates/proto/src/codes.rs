//! Stable error codes (in `error` frames and HTTP error bodies) and WebSocket close codes.
//! Clients switch on these: never renumber or rename one, only add.

/// The `code` of an `error` frame or HTTP error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame is not valid JSON, or not a JSON object.
    BadJson,
    /// The `type` is missing or not one the server knows.
    UnknownType,
    /// A required field is missing or has the wrong type or value.
    BadRequest,
    /// A channel name or pattern does not follow the grammar.
    BadChannel,
    /// The frame (or request body) is larger than the configured limit.
    FrameTooLarge,
    /// The connection sent a binary frame; the protocol is JSON text frames.
    BinaryUnsupported,
    /// The connection already has the maximum number of subscriptions.
    TooManySubscriptions,
    /// The connection is already subscribed to a channel or pattern it asked for.
    AlreadySubscribed,
    /// The broker could not take the publication or read history.
    Unavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// Anything else; details are in the server log, not in the message.
    Internal,
    /// The request carries no API key, or one the server does not know or has revoked.
    Unauthorized,
    /// The API key is valid but lacks the scope the request needs, or the connection may not
    /// act on this channel (the namespace's permissions, the token's claims).
    Forbidden,
    /// Over a rate limit (new connections, messages per connection, ingested points); retry
    /// after the time the HTTP `Retry-After` header gives.
    RateLimited,
    /// The user or tenant already holds the most WebSocket and SSE connections allowed.
    TooManyConnections,
    /// A browser page from an origin not in `http.allowed_origins`.
    OriginNotAllowed,
    /// The connection token's `exp` has passed (with `auth.jwt.leeway`): get a new token.
    TokenExpired,
    /// The HTTP API names something that does not exist (or belongs to another tenant).
    NotFound,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadChannel => "bad_channel",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::NotFound => "not_found",
        }
    }

    /// The HTTP status the same error gets on the HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadJson
            | ErrorCode::UnknownType
            | ErrorCode::BadRequest
            | ErrorCode::BadChannel
            | ErrorCode::BinaryUnsupported
            | ErrorCode::TooManySubscriptions
            | ErrorCode::AlreadySubscribed => 400,
            ErrorCode::FrameTooLarge => 413,
            ErrorCode::NotFound => 404,
            ErrorCode::Unavailable | ErrorCode::ShuttingDown => 503,
            ErrorCode::Internal => 500,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired => 401,
            ErrorCode::Forbidden | ErrorCode::OriginNotAllowed => 403,
            ErrorCode::RateLimited | ErrorCode::TooManyConnections => 429,
        }
    }
}

/// WebSocket close codes the server uses, from the private 4000-4999 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// The `connect` frame's token (or API key) was refused, or the first frame was not
    /// `connect` where unauthenticated connections may do nothing.
    Unauthorized = 4001,
    /// The connection's token expired (at the `connect` frame, or later without a `refresh`).
    TokenExpired = 4002,
    /// A connection without credentials sent no frame within `websocket.connect_timeout`.
    ConnectTimeout = 4011,
    /// The client sent a frame larger than the limit.
    FrameTooLarge = 4009,
    /// The client sent a binary frame.
    BinaryUnsupported = 4003,
    /// No pong (nor any other frame) arrived within the heartbeat timeout.
    HeartbeatTimeout = 4005,
    /// The client's outbound queue stayed over its limit for longer than allowed.
    SlowConsumer = 4008,
    /// The server is shutting down; reconnect (to another node, or to this one after a delay).
    ShuttingDown = 4010,
    /// The client kept sending frames far over its rate limit (`rate_limited` errors came first).
    RateLimited = 4029,
    /// An operator disconnected this connection (`DELETE /api/v1/clients/{id}`); reconnecting is
    /// allowed, and resubscribing with `since` recovers what was not delivered.
    Disconnected = 4012,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::TokenExpired => "token expired",
            CloseCode::ConnectTimeout => "no connect frame in time",
            CloseCode::FrameTooLarge => "frame too large",
            CloseCode::BinaryUnsupported => "binary frames are not supported",
            CloseCode::HeartbeatTimeout => "heartbeat timeout",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::ShuttingDown => "server shutting down, reconnect",
            CloseCode::RateLimited => "rate limit exceeded",
            CloseCode::Disconnected => "disconnected by the server, reconnect",
        }
    }
}
