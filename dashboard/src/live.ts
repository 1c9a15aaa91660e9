// The dashboard's live connection: one `PulsewireClient` of the @pulsewire/client SDK
// (clients/js), shared by every panel. The SDK does the protocol work (WebSocket with SSE as the
// fallback, reconnect with backoff and jitter, resubscribe with `since`, deduplication by offset,
// gap resync, keepalive pings). This module adds what a page of panels needs on top of it:
//
// - several panels may watch one channel: each panel holds a handle from the SDK's `share()`
//   (one subscription per channel on the server, dropped with the last panel);
// - the connection state as the header shows it: `connecting` until the first connection,
//   `connected`, then `disconnected` from a loss until the SDK is connected again (the SDK
//   itself goes `disconnected` -> `connecting` at once while it retries), and `unauthorized`
//   when the server refused the credential (4001/4002): retrying cannot help until the
//   credential changes, so the client stops until `reconnect()`;
// - resume reports (a resubscription with `since`: recovered or not, how many replayed).

import {
  PulsewireClient,
  type Position,
  type Priority,
  type Publication,
  type PulsewireError,
  type SubscribedContext,
} from '@pulsewire/client';

export type { Publication };

export type ConnState = 'connecting' | 'connected' | 'disconnected' | 'unauthorized';

export interface Handler {
  /** A publication on the channel (or a channel matching the pattern). */
  message(p: Publication): void;
  /** Publications may have been missed and could not be replayed: reload state. */
  reset?(reason: string): void;
  /** The server refused the subscription (e.g. `forbidden`). */
  error?(message: string): void;
}

export interface ResumeInfo {
  channel: string;
  recovered: boolean;
  replayed: number;
}

/** What the panels use of the connection. */
export interface LiveClient {
  readonly state: ConnState;
  /** Subscribes `handler` to a channel or pattern; returns the function that unsubscribes it. */
  subscribe(channel: string, handler: Handler): () => void;
  publish(channel: string, data: unknown, priority?: string): Promise<{ epoch: string; offset: number }>;
  onState(cb: (state: ConnState, detail: string) => void): () => void;
  onResume(cb: (info: ResumeInfo) => void): () => void;
  /** Drops the connection and connects again at once (after a credential change). */
  reconnect(): void;
  close(): void;
}

export interface LiveOptions {
  /** The node's base URL (the page's origin). */
  url: string;
  /** The credential (API key or connection token), read at every (re)connect. */
  token: () => string | null;
}

const AUTH_CODES = new Set([4001, 4002]);

export class SdkLive implements LiveClient {
  readonly sdk: PulsewireClient;
  private _state: ConnState = 'connecting';
  /** Publications and resume reports already counted: every panel on a channel sees the same object. */
  private seen = new WeakSet<object>();
  private stateListeners = new Set<(s: ConnState, d: string) => void>();
  private resumeListeners = new Set<(i: ResumeInfo) => void>();
  /** Set by a 4001/4002 close: held until `reconnect()` or a connection. */
  private refused = false;
  /** While `reconnect()` drops the connection on purpose. */
  private quiet = false;
  /** Publications delivered to this page since it loaded (each once, however many panels). */
  received = 0;

  constructor(opts: LiveOptions) {
    this.sdk = new PulsewireClient({
      url: opts.url,
      // No credential: an anonymous connection (the server closes it with 4001 if it needs one).
      getToken: () => opts.token() ?? '',
      minReconnectDelay: 250,
      maxReconnectDelay: 10_000,
      pingInterval: 15_000,
      pongTimeout: 10_000,
      autoConnect: false,
    });
    this.sdk.on('connected', (c) => {
      this.refused = false;
      this.set('connected', `connected over ${c.transport}${c.user ? ` as ${c.user}` : ''}`);
    });
    this.sdk.on('disconnected', (d) => {
      if (AUTH_CODES.has(d.code)) {
        this.refused = true;
        this.set('unauthorized', `closed ${d.code}: ${d.reason || 'unauthorized'}`);
        // Stop retrying with a credential the server refuses; `reconnect()` starts again. After
        // the SDK has scheduled its retry (this runs inside its event).
        if (d.willReconnect) queueMicrotask(() => this.sdk.disconnect());
        return;
      }
      if (this.refused || this.quiet) return;
      this.set('disconnected', `closed ${d.code}${d.reason ? `: ${d.reason}` : ''}${d.willReconnect ? '; reconnecting' : ''}`);
    });
    this.sdk.on('connecting', (c) => {
      if (this._state === 'connected' || this.refused) return;
      // Before the first connection the state stays `connecting`; after a loss `disconnected`,
      // with the attempt in the detail.
      const detail = c.attempt === 0 && c.delay === 0 ? `connecting over ${c.transport}` : `attempt ${c.attempt + 1} over ${c.transport} after ${c.delay} ms`;
      this.set(this._state, detail);
    });
    this.sdk.connect();
  }

  get state(): ConnState {
    return this._state;
  }

  subscribe(channel: string, handler: Handler): () => void {
    const sub = this.sdk.share<unknown>(channel);
    const once = (o: object) => !this.seen.has(o) && !!this.seen.add(o);
    sub.on('message', (p) => {
      if (once(p)) this.received++;
      handler.message(p);
    });
    sub.on('unrecovered', (u) => {
      handler.reset?.(u.reason === 'epoch_changed' ? 'channel history was reset (new epoch)' : 'could not resume');
    });
    sub.on('subscribed', (s: SubscribedContext) => {
      if (s.resubscribed && s.recovered !== undefined && once(s)) {
        const info = { channel, recovered: s.recovered, replayed: s.replayed ?? 0 };
        for (const cb of this.resumeListeners) cb(info);
      }
    });
    sub.on('error', (err: PulsewireError) => handler.error?.(`${err.code}: ${err.message}`));
    return () => void sub.unsubscribe().catch(() => {});
  }

  async publish(channel: string, data: unknown, priority?: string) {
    const r = await this.sdk.publish(channel, data, priority ? { priority: priority as Priority } : undefined);
    return { epoch: r.epoch, offset: r.offset };
  }

  /** The position of the last publication delivered on a channel (for tests and the console). */
  position(channel: string): Position | undefined {
    return this.sdk.getSubscription(channel)?.position;
  }

  onState(cb: (state: ConnState, detail: string) => void) {
    this.stateListeners.add(cb);
    return () => void this.stateListeners.delete(cb);
  }

  onResume(cb: (info: ResumeInfo) => void) {
    this.resumeListeners.add(cb);
    return () => void this.resumeListeners.delete(cb);
  }

  reconnect() {
    this.refused = false;
    this.quiet = true;
    try {
      this.sdk.disconnect();
    } finally {
      this.quiet = false;
    }
    this.set('connecting', 'reconnecting with the new credential');
    this.sdk.connect();
  }

  close() {
    this.sdk.disconnect();
  }

  private set(state: ConnState, detail: string) {
    this._state = state;
    for (const cb of this.stateListeners) cb(state, detail);
  }
}
