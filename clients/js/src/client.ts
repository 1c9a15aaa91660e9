import { backoffDelay } from './backoff.js';
import { Emitter } from './emitter.js';
import { PulsewireError } from './errors.js';
import { byteOrder, isPattern, sseResumeId, type Position } from './position.js';
import { BoundedQueue } from './queue.js';
import { SharedSubscription, Subscription } from './subscription.js';
import {
  errorFromResponse,
  openSse,
  openWebSocket,
  type CloseInfo,
  type FetchLike,
  type Transport,
  type TransportHandlers,
  type WebSocketConstructor,
} from './transport.js';
import type {
  Alert,
  AlertFilter,
  ConnectionState,
  HistoryOptions,
  HistoryResult,
  PresenceResult,
  Publication,
  PublishOptions,
  PublishResult,
  QueryParams,
  QueryResult,
  SubscribedInfo,
  TransportName,
} from './types.js';

export interface TokenContext {
  /** `connect`: a new connection; `expiring`: the server sent `token_expiring`; `expired`: it closed with 4002. */
  reason: 'connect' | 'expiring' | 'expired';
}

export interface ClientOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8080` (`ws:`/`wss:` are accepted too). */
  url: string;
  /** A fixed credential: a JWT connection token or an API key. */
  token?: string;
  /** Called for a token before every connection and on `token_expiring`. Takes precedence over `token`. */
  getToken?: (ctx: TokenContext) => string | Promise<string>;
  /** An API key for the HTTP API (query, alerts, HTTP publish); defaults to `token`. */
  apiKey?: string;
  /** Transports in order of preference (default `['websocket', 'sse']`). */
  transports?: TransportName[];
  /** A WebSocket implementation (e.g. `ws` on Node 20); defaults to the global one. */
  WebSocket?: WebSocketConstructor;
  /** A fetch implementation; defaults to the global one. */
  fetch?: FetchLike;
  /** Backoff floor, ms (default 500). */
  minReconnectDelay?: number;
  /** Backoff ceiling, ms (default 20000). */
  maxReconnectDelay?: number;
  /** Reconnect attempts after a loss before giving up (default Infinity). */
  maxReconnectAttempts?: number;
  /** WebSocket: after this long without any frame, the client sends a `ping` (default 25000 ms). */
  pingInterval?: number;
  /** WebSocket: the connection is dead if nothing arrives this long after the ping (default 10000 ms). */
  pongTimeout?: number;
  /** SSE: the stream is dead after this long without an event or heartbeat comment (default 40000 ms). */
  sseIdleTimeout?: number;
  /** Publications kept while disconnected (default 1000); past it `publish` rejects with `queue_full`. */
  offlineQueueSize?: number;
  /** How long a command waits for its reply (default 10000 ms). */
  requestTimeout?: number;
  /**
   * How long one connection attempt may take to become connected (default 10000 ms): the
   * WebSocket upgrade and, with a token, the `connected` reply; an SSE response and its
   * `subscribed` event (or the `/ready` check). Past it the attempt counts as failed to open:
   * the next transport is tried at once (a proxy that swallows `GET /ws` falls back to SSE),
   * after the last one the client retries with backoff.
   */
  connectTimeout?: number;
  /** Connect at construction (default true). */
  autoConnect?: boolean;
  /** For tests: the random source of the backoff jitter. */
  random?: () => number;
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
}

export interface ConnectedContext {
  transport: TransportName;
  /** From the `connected` reply, when the client authenticated with a token. */
  client?: number;
  user?: string;
  tenant?: string;
  exp?: number;
}

export interface DisconnectedContext {
  /** The close code (docs/protocol.md, "Close codes"); 1006 for a connection lost without one. */
  code: number;
  reason: string;
  /** False after `disconnect()`, after `maxReconnectAttempts`, or for codes that need a fix (4003, 4009, 4001 without `getToken`). */
  willReconnect: boolean;
}

export interface ConnectingContext {
  transport: TransportName;
  /** 0 for the first try after a loss. */
  attempt: number;
  /** The backoff delay waited before this attempt, ms. */
  delay: number;
}

export interface ClientEvents extends Record<string, unknown> {
  state: StateChange;
  connecting: ConnectingContext;
  connected: ConnectedContext;
  disconnected: DisconnectedContext;
  error: PulsewireError;
  token_refreshed: { exp: number };
}

interface Pending {
  resolve(frame: Record<string, unknown>): void;
  reject(e: PulsewireError): void;
  timer: ReturnType<typeof setTimeout>;
}

interface Queued {
  channel: string;
  data: unknown;
  opts: PublishOptions | undefined;
  resolve(r: PublishResult): void;
  reject(e: PulsewireError): void;
}

/** Close codes after which reconnecting cannot help without a code change. */
const FATAL_CODES = new Set([4003, 4009]);

/** The Pulsewire client: one connection, any number of subscriptions. */
export class PulsewireClient extends Emitter<ClientEvents> {
  readonly options: Required<Omit<ClientOptions, 'token' | 'getToken' | 'apiKey' | 'WebSocket' | 'fetch'>> &
    Pick<ClientOptions, 'token' | 'getToken' | 'apiKey' | 'WebSocket' | 'fetch'>;
  private readonly httpBase: string;
  private readonly wsBase: string;
  private _state: ConnectionState = 'disconnected';
  private transport: Transport | undefined;
  private transportName: TransportName | undefined;
  /** Index in `transports` of the last transport that worked (reconnects start there). */
  private preferred = 0;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private wanted = false;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private subs = new Map<string, Subscription<unknown>>();
  /** Channels held by `share()`: their subscription and its live handles. */
  private shares = new Map<string, { sub: Subscription<unknown>; handles: Set<SharedSubscription<unknown>> }>();
  private queue: BoundedQueue<Queued>;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private pingSent = false;
  private sseReopen = false;
  private _connected: ConnectedContext | undefined;

  constructor(options: ClientOptions) {
    super();
    this.options = {
      transports: ['websocket', 'sse'],
      minReconnectDelay: 500,
      maxReconnectDelay: 20_000,
      maxReconnectAttempts: Infinity,
      pingInterval: 25_000,
      pongTimeout: 10_000,
      sseIdleTimeout: 40_000,
      offlineQueueSize: 1000,
      requestTimeout: 10_000,
      connectTimeout: 10_000,
      autoConnect: true,
      random: Math.random,
      ...options,
    };
    if (this.options.transports.length === 0) throw new PulsewireError('no_transport', '`transports` is empty');
    const ct = this.options.connectTimeout;
    if (typeof ct !== 'number' || !(ct > 0)) {
      throw new PulsewireError('invalid_option', `\`connectTimeout\` must be a positive number of ms, got ${String(ct)}`);
    }
    const u = new URL(options.url);
    const secure = u.protocol === 'https:' || u.protocol === 'wss:';
    const path = u.pathname.replace(/\/+$/, '');
    this.httpBase = `${secure ? 'https' : 'http'}://${u.host}${path}`;
    this.wsBase = `${secure ? 'wss' : 'ws'}://${u.host}${path}`;
    this.queue = new BoundedQueue(this.options.offlineQueueSize);
    if (this.options.autoConnect) this.connect();
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The transport in use while connected. */
  get transportInUse(): TransportName | undefined {
    return this._state === 'connected' ? this.transportName : undefined;
  }

  /** What the last `connected` said (client id, user, tenant) while connected. */
  get connection(): ConnectedContext | undefined {
    return this._connected;
  }

  /** Publications waiting in the offline queue. */
  get queued(): number {
    return this.queue.size;
  }

  /** Starts connecting (and reconnecting after losses) until `disconnect()`. */
  connect(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    this.open(0);
  }

  /** Closes the connection and stops reconnecting. Subscriptions are kept and resume on `connect()`. */
  disconnect(): void {
    this.wanted = false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const t = this.transport;
    if (t) t.close(1000, 'client disconnect');
    else if (this._state !== 'disconnected') this.lost({ code: 1000, reason: 'client disconnect', failedToOpen: true });
  }

  /**
   * Subscribes to a channel or a pattern. `since` resumes from a position saved earlier. One
   * subscription per channel: a second one throws `already_subscribed` (use `share()` for a
   * channel several parts of an application watch).
   */
  subscribe<T = unknown>(channel: string, opts: { since?: Position } = {}): Subscription<T> {
    if (this.subs.has(channel)) {
      const how = this.shares.get(channel)?.sub === this.subs.get(channel) ? ' (held by share())' : '';
      throw new PulsewireError('already_subscribed', `already subscribed to ${JSON.stringify(channel)}${how}`);
    }
    const sub = new Subscription<T>(
      {
        unsubscribe: (s) => this.unsubscribeSub(s as unknown as Subscription<unknown>),
        resync: (s) => this.resync(s as unknown as Subscription<unknown>),
        history: (c, o) => this.history(c, o),
        presence: (c) => this.presence(c),
      },
      channel,
      isPattern(channel),
      opts.since,
    );
    this.subs.set(channel, sub as Subscription<unknown>);
    if (this._state === 'connected') this.sendSubscribe(sub as Subscription<unknown>);
    return sub;
  }

  /** The subscription to a channel or pattern, if any. */
  getSubscription<T = unknown>(channel: string): Subscription<T> | undefined {
    return this.subs.get(channel) as Subscription<T> | undefined;
  }

  /**
   * A handle on a channel's (or pattern's) subscription shared by any number of holders: the
   * first `share()` subscribes, later ones join it (their `since` is not used), each handle has
   * its own listeners, and `unsubscribe()` on a handle stops delivery to it alone; the last
   * handle's unsubscribes on the server. A channel subscribed with `subscribe()` cannot be
   * shared (`already_subscribed`), nor a shared one subscribed with `subscribe()`.
   */
  share<T = unknown>(channel: string, opts: { since?: Position } = {}): SharedSubscription<T> {
    let entry = this.shares.get(channel);
    // An entry whose subscription was ended directly (`getSubscription(c).unsubscribe()`) is stale.
    if (entry && this.subs.get(channel) !== entry.sub) {
      this.shares.delete(channel);
      entry = undefined;
    }
    if (!entry) {
      if (this.subs.has(channel)) {
        throw new PulsewireError('already_subscribed', `already subscribed to ${JSON.stringify(channel)} with subscribe(): it cannot be shared`);
      }
      entry = { sub: this.subscribe<unknown>(channel, opts), handles: new Set() };
      this.shares.set(channel, entry);
    }
    const held = entry;
    const handle = new SharedSubscription<T>(held.sub as Subscription<T>, (h) => {
      held.handles.delete(h as SharedSubscription<unknown>);
      if (held.handles.size > 0) return Promise.resolve();
      if (this.shares.get(channel) === held) this.shares.delete(channel);
      return held.sub.unsubscribe();
    });
    held.handles.add(handle as SharedSubscription<unknown>);
    return handle;
  }

  /**
   * Publishes over the WebSocket (or over HTTP on SSE). While disconnected the publication waits
   * in the offline queue, in order; a full queue rejects with `queue_full`. A publication sent but
   * not answered when the connection is lost rejects with `disconnected` (it may or may not have
   * been accepted: publications are never sent twice).
   */
  publish<T = unknown>(channel: string, data: T, opts?: PublishOptions): Promise<PublishResult> {
    if (this._state !== 'connected') {
      return new Promise((resolve, reject) => {
        this.queue.push({ channel, data, opts, resolve, reject });
      });
    }
    return this.publishNow(channel, data, opts);
  }

  /** Publishes through `POST /api/v1/publish`, whatever the connection's state. */
  async publishHttp<T = unknown>(channel: string, data: T, opts?: PublishOptions): Promise<PublishResult> {
    const body: Record<string, unknown> = { channel, data };
    if (opts?.priority) body.priority = opts.priority;
    return this.http<PublishResult>('POST', '/api/v1/publish', body);
  }

  /** A channel's history: over the WebSocket when connected with it, else over HTTP. */
  async history<T = unknown>(channel: string, opts: HistoryOptions = {}): Promise<HistoryResult<T>> {
    if (this.transportInUse === 'websocket') {
      const cmd: Record<string, unknown> = { type: 'history', channel };
      if (opts.limit !== undefined) cmd.limit = opts.limit;
      if (opts.since) cmd.since = opts.since;
      return (await this.request(cmd)) as unknown as HistoryResult<T>;
    }
    const q = new URLSearchParams({ channel });
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    if (opts.since) {
      q.set('since_epoch', opts.since.epoch);
      q.set('since_offset', String(opts.since.offset));
    }
    return this.http<HistoryResult<T>>('GET', `/api/v1/history?${q}`);
  }

  /** Who is subscribed to a channel (WebSocket only). */
  async presence(channel: string): Promise<PresenceResult> {
    return (await this.request({ type: 'presence', channel })) as unknown as PresenceResult;
  }

  /** Sends a `ping` and resolves with the round trip in ms (WebSocket only). */
  async ping(): Promise<number> {
    const t0 = Date.now();
    await this.request({ type: 'ping' });
    return Date.now() - t0;
  }

  /** `GET /api/v1/query` (docs/query.md). */
  query(params: QueryParams): Promise<QueryResult> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined) continue;
      q.set(k, v instanceof Date ? String(v.getTime()) : String(v));
    }
    return this.http<QueryResult>('GET', `/api/v1/query?${q}`);
  }

  /** `GET /api/v1/alerts`: every current alert instance. */
  async alerts(filter: AlertFilter = {}): Promise<Alert[]> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v !== undefined) q.set(k, String(v));
    const s = q.toString();
    return (await this.http<{ alerts: Alert[] }>('GET', `/api/v1/alerts${s ? `?${s}` : ''}`)).alerts;
  }

  /** `POST /api/v1/alerts/{id}/ack`. */
  ackAlert(id: string, ack: { by: string; comment?: string }): Promise<Alert> {
    return this.http<Alert>('POST', `/api/v1/alerts/${encodeURIComponent(id)}/ack`, ack);
  }

  /** Any HTTP API call with the client's credentials; errors reject with the server's code. */
  async http<R>(method: string, path: string, body?: unknown): Promise<R> {
    const headers: Record<string, string> = {};
    const cred = this.options.apiKey ?? (await this.currentToken('connect'));
    if (cred) headers.Authorization = `Bearer ${cred}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await this.fetchFn()(`${this.httpBase}${path}`, init);
    if (!res.ok) throw await errorFromResponse(res);
    if (res.status === 204) return undefined as R;
    return (await res.json()) as R;
  }

  // ---- connection -------------------------------------------------------------------------

  private setState(state: ConnectionState): void {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this.emit('state', { state, previous });
  }

  private open(delay: number, transportIndex = this.preferred, tokenReason: TokenContext['reason'] = 'connect'): void {
    const name = this.options.transports[transportIndex]!;
    this.setState('connecting');
    this.emit('connecting', { transport: name, attempt: this.attempt, delay });
    void this.openTransport(name, transportIndex, tokenReason);
  }

  private async openTransport(name: TransportName, index: number, tokenReason: TokenContext['reason']): Promise<void> {
    let token: string | undefined;
    try {
      token = await this.currentToken(tokenReason);
    } catch (e) {
      this.emit('error', asError(e, 'unauthorized'));
      this.lost({ code: 4001, reason: 'getToken failed', failedToOpen: true }, index);
      return;
    }
    if (!this.wanted) return;
    let opened = false;
    let authed = false;
    let timedOut = false;
    let connectTimer: ReturnType<typeof setTimeout> | undefined;
    /** The attempt reached `connected` (or ended): its connect timeout no longer applies. */
    const settled = () => {
      clearTimeout(connectTimer);
      connectTimer = undefined;
    };
    const handlers: TransportHandlers = {
      open: () => {
        opened = true;
        this.bumpIdle();
        if (name === 'websocket' && token) {
          // Authenticate with a first `connect` frame: the token stays out of URLs and logs.
          this.request({ type: 'connect', token })
            .then((f) => {
              authed = true;
              settled();
              this.onConnected(name, index, f);
            })
            .catch((e: PulsewireError) => this.emit('error', e));
        } else if (name === 'websocket' || t.probe) {
          settled();
          this.onConnected(name, index);
        }
      },
      frame: (f) => {
        // An SSE stream is connected once its `subscribed` event arrived.
        if (name === 'sse' && f.type === 'subscribed') {
          settled();
          if (this._state !== 'connected') this.onConnected(name, index);
        }
        this.onFrame(f);
      },
      activity: () => this.bumpIdle(),
      close: (info) => {
        settled();
        if (this.transport !== t) return;
        if (info.failedToOpen || timedOut || (name === 'websocket' && token && !authed && !opened)) info.failedToOpen = true;
        this.lost(info, index);
      },
    };
    let t: Transport;
    try {
      t = name === 'websocket' ? openWebSocket(await this.wsCtor(), `${this.wsBase}/ws`, handlers) : this.openSseStream(token, handlers);
    } catch (e) {
      this.emit('error', asError(e, 'no_transport'));
      this.transport = undefined;
      this.lost({ code: 1006, reason: String((e as Error).message), failedToOpen: true }, index);
      return;
    }
    this.transport = t;
    this.transportName = name;
    // A handshake that hangs (a proxy that accepts the connection and never answers) must not
    // leave the client connecting forever: give up on the attempt as if it had been refused.
    const ms = this.options.connectTimeout;
    connectTimer = setTimeout(() => {
      connectTimer = undefined;
      if (this.transport !== t) return;
      timedOut = true;
      this.emit('error', new PulsewireError('connect_timeout', `${name}: not connected within ${ms} ms`));
      t.close(1006, `connect timeout (${ms} ms)`);
    }, ms);
  }

  private openSseStream(token: string | undefined, h: TransportHandlers): Transport {
    const headers: Record<string, string> = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (this.subs.size === 0) {
      // Nothing to stream yet (a stream needs channels): check that the server answers, and
      // count as connected; the stream opens with the first subscription.
      return probeReady(this.fetchFn(), `${this.httpBase}/ready`, h);
    }
    const channels = this.sseChannels();
    const positions = new Map<string, Position>();
    for (const c of channels) {
      const p = this.subs.get(c)?._since();
      if (p) positions.set(c, p);
    }
    for (const s of this.subs.values()) s._pending();
    const q = new URLSearchParams({ channels: [...this.subs.keys()].join(',') });
    if (positions.size > 0) q.set('last_event_id', sseResumeId(channels, positions));
    this.sseAsked = positions;
    return openSse(this.fetchFn(), `${this.httpBase}/sse?${q}`, headers, h);
  }

  private sseAsked = new Map<string, Position>();

  private sseChannels(): string[] {
    return [...this.subs.values()].filter((s) => !s.isPattern).map((s) => s.channel).sort(byteOrder);
  }

  private onConnected(name: TransportName, index: number, reply?: Record<string, unknown>): void {
    if (this._state === 'connected') return;
    this.preferred = index;
    this.attempt = 0;
    const ctx: ConnectedContext = { transport: name };
    if (reply) {
      if (typeof reply.client === 'number') ctx.client = reply.client;
      if (typeof reply.user === 'string') ctx.user = reply.user;
      if (typeof reply.tenant === 'string') ctx.tenant = reply.tenant;
      if (typeof reply.exp === 'number') ctx.exp = reply.exp;
    }
    this._connected = ctx;
    this.setState('connected');
    this.emit('connected', ctx);
    if (name === 'websocket') for (const s of this.subs.values()) this.sendSubscribe(s);
    this.flushQueue();
  }

  private lost(info: CloseInfo, index = this.preferred): void {
    this.transport = undefined;
    clearTimeout(this.idleTimer);
    this.pingSent = false;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new PulsewireError('disconnected', `connection lost (${info.code} ${info.reason})`));
    }
    this.pending.clear();
    if (this.sseReopen && this.wanted) {
      // The SSE stream was closed to change its channels: reopen at once, state unchanged.
      this.sseReopen = false;
      void this.openTransport('sse', index, 'connect');
      return;
    }
    const wasConnected = this._state === 'connected';
    this._connected = undefined;
    if (info.error) this.emit('error', info.error);
    const transports = this.options.transports;
    // A transport that would not open (a blocked upgrade): try the next one at once.
    if (this.wanted && info.failedToOpen && !wasConnected && index + 1 < transports.length && !isAuthCode(info.code)) {
      this.open(0, index + 1);
      return;
    }
    const fatal = FATAL_CODES.has(info.code) || (info.code === 4001 && !this.options.getToken);
    const canRetry = this.wanted && !fatal && this.attempt < this.options.maxReconnectAttempts;
    if (wasConnected || !canRetry) {
      this.setState('disconnected');
      this.emit('disconnected', { code: info.code, reason: info.reason, willReconnect: canRetry });
    }
    if (!canRetry) {
      this.wanted = false;
      this.rejectQueue(new PulsewireError('disconnected', 'the client stopped reconnecting'));
      return;
    }
    // Reconnects start again from the first transport once every one failed in a round.
    const startAt = info.failedToOpen && !wasConnected ? 0 : index;
    // A 4002 needs only a new token: no reason to wait.
    const delay = info.code === 4002 ? 0 : backoffDelay(this.attempt, this.options, this.options.random);
    const reason: TokenContext['reason'] = info.code === 4002 ? 'expired' : 'connect';
    this.attempt++;
    this.setState('connecting');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.wanted) this.open(delay, startAt, reason);
    }, delay);
  }

  private bumpIdle(): void {
    clearTimeout(this.idleTimer);
    this.pingSent = false;
    if (!this.transport && this._state !== 'connecting') return;
    const sse = this.transportName === 'sse';
    const wait = sse ? this.options.sseIdleTimeout : this.options.pingInterval;
    this.idleTimer = setTimeout(() => this.onIdle(), wait);
  }

  private onIdle(): void {
    const t = this.transport;
    if (!t) return;
    if (t.name === 'websocket' && !this.pingSent) {
      this.pingSent = true;
      t.send({ type: 'ping' });
      this.idleTimer = setTimeout(() => this.onIdle(), this.options.pongTimeout);
      return;
    }
    // Nothing arrived in time: the connection is dead even if the socket has not noticed.
    t.close(4005, 'client heartbeat timeout');
  }

  // ---- frames -----------------------------------------------------------------------------

  private onFrame(f: Record<string, unknown>): void {
    const id = typeof f.id === 'number' ? f.id : undefined;
    if (id !== undefined && this.pending.has(id)) {
      const p = this.pending.get(id)!;
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (f.type === 'error') p.reject(new PulsewireError(String(f.code), String(f.message ?? f.code)));
      else p.resolve(f);
      return;
    }
    switch (f.type) {
      case 'message': {
        const p = f as unknown as Publication;
        const sub = this.subs.get(p.pattern ?? p.channel);
        sub?._deliver(p);
        return;
      }
      case 'subscribed': {
        // SSE: one `subscribed` per stream, for every channel at once.
        const channels = (f.channels ?? {}) as Record<string, SubscribedInfo>;
        for (const [name, info] of Object.entries(channels)) {
          const sub = this.subs.get(name);
          sub?._subscribed(info, this.sseAsked.get(name));
        }
        return;
      }
      case 'token_expiring':
        void this.refreshToken();
        return;
      case 'error': {
        const e = new PulsewireError(String(f.code), String(f.message ?? f.code));
        this.emit('error', e);
        return;
      }
      default:
        return;
    }
  }

  private async refreshToken(): Promise<void> {
    if (!this.options.getToken || this.transportName !== 'websocket') return;
    try {
      const token = await this.options.getToken({ reason: 'expiring' });
      const r = await this.request({ type: 'refresh', token });
      this.emit('token_refreshed', { exp: Number(r.exp) });
    } catch (e) {
      this.emit('error', asError(e, 'unauthorized'));
    }
  }

  private request(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => this.send(cmd, resolve, reject));
  }

  /**
   * Sends a command; `resolve` runs synchronously when the reply arrives, before any later frame
   * is handled (a `subscribed` reply must take effect before the publications that follow it).
   */
  private send(cmd: Record<string, unknown>, resolve: Pending['resolve'], reject: Pending['reject']): void {
    const t = this.transport;
    if (!t || t.name !== 'websocket') {
      const code = t ? 'no_transport' : 'disconnected';
      reject(new PulsewireError(code, `${String(cmd.type)} needs a WebSocket connection`));
      return;
    }
    const id = this.nextId++;
    const timer = setTimeout(() => {
      this.pending.delete(id);
      reject(new PulsewireError('timeout', `no answer to ${String(cmd.type)} within ${this.options.requestTimeout} ms`));
    }, this.options.requestTimeout);
    this.pending.set(id, { resolve, reject, timer });
    t.send({ ...cmd, id });
  }

  // ---- subscriptions ----------------------------------------------------------------------

  private sendSubscribe(sub: Subscription<unknown>): void {
    if (this.transportName === 'sse') {
      this.reopenSse();
      return;
    }
    const since = sub._since();
    const cmd: Record<string, unknown> = { type: 'subscribe', channels: [sub.channel] };
    if (since) cmd.since = { [sub.channel]: since };
    sub._pending();
    this.send(
      cmd,
      (reply) => {
        if (this.subs.get(sub.channel) !== sub) return;
        const info = ((reply.channels ?? {}) as Record<string, SubscribedInfo>)[sub.channel] ?? {};
        sub._subscribed(info, since);
      },
      (e: PulsewireError) => {
        if (e.code !== 'disconnected' && this.subs.get(sub.channel) === sub) sub._error(e);
      },
    );
  }

  private unsubscribeSub(sub: Subscription<unknown>): Promise<void> {
    if (this.subs.get(sub.channel) !== sub) return Promise.resolve();
    this.subs.delete(sub.channel);
    sub._close();
    if (this._state !== 'connected') return Promise.resolve();
    if (this.transportName === 'sse') {
      this.reopenSse();
      return Promise.resolve();
    }
    return this.request({ type: 'unsubscribe', channels: [sub.channel] }).then(
      () => undefined,
      (e: PulsewireError) => {
        // Lost with the connection: the server forgets it anyway, and nothing is resubscribed.
        if (e.code !== 'disconnected') throw e;
      },
    );
  }

  /** After a gap: unsubscribe and subscribe again from the last position delivered. */
  private resync(sub: Subscription<unknown>): void {
    if (this._state !== 'connected') return;
    if (this.transportName === 'sse') {
      this.reopenSse();
      return;
    }
    this.send(
      { type: 'unsubscribe', channels: [sub.channel] },
      () => {
        if (this.subs.get(sub.channel) === sub) this.sendSubscribe(sub);
      },
      () => {},
    );
  }

  private sseReopenScheduled = false;

  /** SSE streams have a fixed set of channels: a change reopens the stream (once per tick), resuming every channel. */
  private reopenSse(): void {
    if (this.sseReopenScheduled) return;
    this.sseReopenScheduled = true;
    queueMicrotask(() => {
      this.sseReopenScheduled = false;
      const t = this.transport;
      if (!t || t.name !== 'sse' || this._state !== 'connected') return;
      this.sseReopen = true;
      t.close(1000, 'channels changed');
    });
  }

  // ---- publish queue ----------------------------------------------------------------------

  private publishNow(channel: string, data: unknown, opts?: PublishOptions): Promise<PublishResult> {
    if (this.transportName === 'sse') return this.publishHttp(channel, data, opts);
    const cmd: Record<string, unknown> = { type: 'publish', channel, data };
    if (opts?.priority) cmd.priority = opts.priority;
    return this.request(cmd).then((r) => ({ channel: String(r.channel), epoch: String(r.epoch), offset: Number(r.offset) }));
  }

  private flushQueue(): void {
    for (const q of this.queue.drain()) {
      this.publishNow(q.channel, q.data, q.opts).then(q.resolve, q.reject);
    }
  }

  private rejectQueue(e: PulsewireError): void {
    for (const q of this.queue.drain()) q.reject(e);
  }

  // ---- environment ------------------------------------------------------------------------

  private async currentToken(reason: TokenContext['reason']): Promise<string | undefined> {
    if (this.options.getToken) return await this.options.getToken({ reason });
    return this.options.token;
  }

  private fetchFn(): FetchLike {
    const f = this.options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) throw new PulsewireError('no_transport', 'no fetch implementation: pass `fetch`');
    return f.bind(globalThis) as FetchLike;
  }

  private async wsCtor(): Promise<WebSocketConstructor> {
    if (this.options.WebSocket) return this.options.WebSocket;
    const g = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (g) return g;
    // Node before 22 has no global WebSocket: use the optional peer dependency `ws`.
    // Read through `globalThis` so that the module type-checks (and bundles) for browsers too.
    const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
    const isNode = !!proc?.versions?.node;
    if (isNode) {
      try {
        const name = 'ws';
        const mod = (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as { default?: WebSocketConstructor; WebSocket?: WebSocketConstructor };
        const Ctor = mod.WebSocket ?? mod.default;
        if (Ctor) return Ctor;
      } catch {
        // not installed
      }
    }
    throw new PulsewireError('no_transport', 'no WebSocket implementation: pass `WebSocket` (e.g. from the `ws` package)');
  }
}

/** SSE without channels: `GET /ready` stands for the connection until there is a stream to open. */
function probeReady(fetchFn: FetchLike, url: string, h: TransportHandlers): Transport {
  const abort = new AbortController();
  let ended = false;
  const end = (info: CloseInfo) => {
    if (ended) return;
    ended = true;
    abort.abort();
    h.close(info);
  };
  fetchFn(url, { signal: abort.signal }).then(
    async (res) => {
      if (ended) return;
      if (res.ok) h.open();
      else {
        const error = await errorFromResponse(res);
        end({ code: res.status === 503 ? 4010 : 1006, reason: error.message, failedToOpen: true, error });
      }
    },
    (e: Error) => end({ code: 1006, reason: String(e?.message ?? e), failedToOpen: true }),
  );
  return {
    name: 'sse',
    probe: true,
    send() {},
    close: (code = 1000, reason = '') => end({ code, reason, failedToOpen: false }),
  };
}

function isAuthCode(code: number): boolean {
  return code === 4001 || code === 4002;
}

function asError(e: unknown, code: string): PulsewireError {
  if (e instanceof PulsewireError) return e;
  return new PulsewireError(code, e instanceof Error ? e.message : String(e));
}
