export { PulsewireClient } from './client.js';
export type {
  ClientEvents,
  ClientOptions,
  ConnectedContext,
  ConnectingContext,
  DisconnectedContext,
  StateChange,
  TokenContext,
} from './client.js';
export { SharedSubscription, Subscription } from './subscription.js';
export type { SubscriptionEvents, SubscriptionState } from './subscription.js';
export { PulsewireError } from './errors.js';
export type { ClientErrorCode, ErrorCode, ServerErrorCode } from './errors.js';
export { backoffCap, backoffDelay } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { BoundedQueue } from './queue.js';
export { judge, isPattern, sseFingerprint, sseResumeId } from './position.js';
export type { Position, Verdict } from './position.js';
export type { CloseInfo, FetchLike, WebSocketConstructor, WebSocketLike } from './transport.js';
export * from './types.js';
