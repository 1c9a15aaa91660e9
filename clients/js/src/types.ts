import type { Position } from './position.js';

export type Priority = 'critical' | 'high' | 'normal' | 'low';

/** A publication as delivered (docs/protocol.md, "Publications"). */
export interface Publication<T = unknown> {
  channel: string;
  epoch: string;
  offset: number;
  /** Milliseconds since the Unix epoch when the server accepted it. */
  ts: number;
  data: T;
  /** Present when not `normal`. */
  priority?: Priority;
  /** Present when delivered for a pattern subscription: the pattern. */
  pattern?: string;
}

/** Where a publication landed. */
export interface PublishResult {
  channel: string;
  epoch: string;
  offset: number;
}

export interface PublishOptions {
  priority?: Priority;
}

/** A channel's entry in a `subscribed` reply. */
export interface SubscribedInfo {
  epoch?: string;
  offset?: number;
  recovered?: boolean;
  replayed?: number;
}

/** What a subscription emits each time the server confirms it (first subscribe and every resubscribe). */
export interface SubscribedContext {
  channel: string;
  /** The channel's position when the subscription took effect (absent for patterns). */
  position?: Position;
  /** True when this is a resubscription after a reconnect, a transport change or a gap. */
  resubscribed: boolean;
  /**
   * Set when the client asked to resume from a position: `true` if every publication after it
   * was (or is about to be) delivered, `false` if some are lost: reload state.
   */
  recovered?: boolean;
  /** Publications replayed after this event (when `recovered`). */
  replayed?: number;
}

/** Why a subscription lost continuity: the client should reload its state for the channel. */
export interface UnrecoveredContext {
  channel: string;
  /**
   * `not_recovered`: the server could not replay from the held position (`recovered: false`);
   * `epoch_changed`: a publication came with another epoch (the channel's history was reset).
   */
  reason: 'not_recovered' | 'epoch_changed';
  /** The position held before. */
  from?: Position;
  /** The new position the subscription continues from. */
  to?: Position;
}

export type ConnectionState = 'disconnected' | 'connecting' | 'connected';

export type TransportName = 'websocket' | 'sse';

export interface HistoryOptions {
  limit?: number;
  since?: Position;
}

export interface HistoryResult<T = unknown> {
  channel: string;
  epoch: string;
  offset: number;
  recovered?: boolean;
  publications: Publication<T>[];
}

export interface PresenceResult {
  channel: string;
  clients: { client: number; user?: string }[];
}

/** A query (docs/query.md). Times are RFC 3339, unix ms, `now` or `now-1h`. */
export interface QueryParams {
  q: string;
  from?: string | number | Date;
  to?: string | number | Date;
  step?: string;
  agg?: 'avg' | 'min' | 'max' | 'sum' | 'count' | 'last' | 'median' | 'p50' | 'p95' | 'p99' | 'stddev' | 'rate';
  db?: string;
  tier?: 'raw';
}

export type PointValue = number | boolean | string | null;

export interface QuerySeries {
  measurement: string;
  field: string;
  tags: Record<string, string>;
  source?: string;
  points: [number, PointValue][];
}

export interface QueryResult {
  series: QuerySeries[];
}

/** A point as published live on `metrics:<measurement>` (docs/ingest.md, "Live publication"). */
export interface LivePoint {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, PointValue>;
  ts: number;
}

export interface LivePoints {
  points: LivePoint[];
}

export type AlertState = 'pending' | 'firing' | 'resolved';

/** An alert event as pushed on `alerts` and listed by `GET /api/v1/alerts` (docs/analysis.md). */
export interface Alert {
  id: string;
  rule: string;
  state: AlertState;
  severity: string;
  labels: Record<string, string>;
  value: number | null;
  since: number | string;
  annotations: Record<string, string>;
  at: number | string;
  active_since: number | string;
  ack?: { by: string; at: number | string; comment?: string };
  /** Listed by `GET /api/v1/alerts` only. */
  flapping?: boolean;
}

export interface AlertFilter {
  state?: AlertState;
  severity?: string;
  rule?: string;
  acked?: boolean;
}
