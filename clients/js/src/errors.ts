/**
 * Error codes the client raises itself, next to the server's codes (docs/protocol.md, "Errors"),
 * which are passed through as sent.
 */
export type ClientErrorCode =
  /** The offline queue is full: the publication was not queued. */
  | 'queue_full'
  /** The connection was lost (or the client disconnected) before the server answered. */
  | 'disconnected'
  /** The server did not answer a command within `requestTimeout`. */
  | 'timeout'
  /** A connection attempt was not connected within `connectTimeout` (it counts as failed to open). */
  | 'connect_timeout'
  /** A client option has a value it cannot use. */
  | 'invalid_option'
  /** No transport could be used (none given, or none available in this environment). */
  | 'no_transport'
  /** An HTTP request failed without a JSON error body. */
  | 'http'
  /** The subscription was closed by `unsubscribe()`. */
  | 'unsubscribed';

/** Codes sent by the server (docs/protocol.md); new ones may appear, so any string is accepted. */
export type ServerErrorCode =
  | 'bad_json'
  | 'unknown_type'
  | 'bad_request'
  | 'bad_channel'
  | 'already_subscribed'
  | 'too_many_subscriptions'
  | 'unavailable'
  | 'shutting_down'
  | 'frame_too_large'
  | 'binary_unsupported'
  | 'internal'
  | 'unauthorized'
  | 'token_expired'
  | 'forbidden'
  | 'rate_limited'
  | 'too_many_connections'
  | 'origin_not_allowed'
  | 'bad_query';

export type ErrorCode = ClientErrorCode | ServerErrorCode | (string & {});

/** Every error the client rejects with or emits. `code` is stable; `status` is set for HTTP. */
export class PulsewireError extends Error {
  readonly code: ErrorCode;
  readonly status: number | undefined;
  constructor(code: ErrorCode, message: string, status?: number) {
    super(message);
    this.name = 'PulsewireError';
    this.code = code;
    this.status = status;
  }
}
