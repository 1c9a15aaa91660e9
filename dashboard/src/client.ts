// The dashboard's live connection: one WebSocket to /ws, shared by every panel. Everything the
// rest of the dashboard needs is the `LiveClient` interface below, so that this module can be
// replaced by the `@pulsewire/client` SDK without touching the panels.
//
// Protocol (docs/protocol.md): subscriptions are made with `subscribe`; every publication carries
// its channel's (epoch, offset); after a reconnect the client subscribes again with `since` set to
// the last position it saw on each channel, and the server replays what was missed
// (`recovered: true`) or says it cannot (`recovered: false`, then listeners get `reset`).

export interface Publication {
  channel: string;
  epoch: string;
  offset: number;
  ts: number;
  data: unknown;
  priority?: string;
  pattern?: string;
}

export type ConnState = 'connecting' | 'open' | 'reconnecting' | 'unauthorized';

export interface Handler {
  /** A publication on the channel (or a channel matching the pattern). */
  message(p: Publication): void;
  /** Publications may have been missed and could not be replayed: reload state. */
  reset?(reason: string): void;
}

export interface ResumeInfo {
  channel: string;
  recovered: boolean;
  replayed: number;
}

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

export interface ClientOptions {
  url: string;
  /** The credential to send as `?access_token=`, read at every (re)connect. */
  token?: () => string | null;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** An application ping this often; no pong within `pingTimeoutMs` drops the connection. */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
}

interface Pending {
  resolve(v: Record<string, unknown>): void;
  reject(e: Error): void;
}

const isPattern = (c: string) => c.split(':').some((s) => s === '*' || s === '>');

export class WsClient implements LiveClient {
  state: ConnState = 'connecting';
  private ws: WebSocket | null = null;
  private handlers = new Map<string, Set<Handler>>();
  /** Last position seen per channel (not pattern), for `since` on resubscribe. */
  private positions = new Map<string, { epoch: string; offset: number }>();
  /** Channels the server has confirmed on the current connection. */
  private live = new Set<string>();
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pinger: ReturnType<typeof setInterval> | null = null;
  private closed = false;
  private stateListeners = new Set<(s: ConnState, d: string) => void>();
  private resumeListeners = new Set<(i: ResumeInfo) => void>();
  private readonly opts: Required<ClientOptions>;

  constructor(opts: ClientOptions) {
    this.opts = {
      token: () => null,
      minBackoffMs: 250,
      maxBackoffMs: 10_000,
      pingIntervalMs: 15_000,
      pingTimeoutMs: 10_000,
      ...opts,
    };
    this.connect();
  }

  subscribe(channel: string, handler: Handler): () => void {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      if (this.state === 'open') this.sendSubscribe([channel]);
    }
    set.add(handler);
    return () => {
      const s = this.handlers.get(channel);
      if (!s) return;
      s.delete(handler);
      if (s.size === 0) {
        this.handlers.delete(channel);
        this.positions.delete(channel);
        if (this.state === 'open' && this.live.delete(channel)) {
          this.request({ type: 'unsubscribe', channels: [channel] }).catch(() => {});
        }
      }
    };
  }

  publish(channel: string, data: unknown, priority?: string) {
    const cmd: Record<string, unknown> = { type: 'publish', channel, data };
    if (priority) cmd.priority = priority;
    return this.request(cmd).then((r) => ({ epoch: String(r.epoch), offset: Number(r.offset) }));
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
    this.attempt = 0;
    if (this.ws) this.ws.close(1000, 'reconnect');
    else this.connect();
  }

  close() {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close(1000, 'bye');
  }

  private setState(s: ConnState, detail: string) {
    this.state = s;
    for (const cb of this.stateListeners) cb(s, detail);
  }

  private connect() {
    if (this.closed) return;
    this.timer = null;
    const token = this.opts.token();
    const url = token ? `${this.opts.url}?access_token=${encodeURIComponent(token)}` : this.opts.url;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.scheduleReconnect(String(e));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.live.clear();
      this.setState('open', 'connected');
      const channels = [...this.handlers.keys()];
      if (channels.length) this.sendSubscribe(channels);
      this.startPing();
    };
    ws.onmessage = (ev) => this.onFrame(String(ev.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopPing();
      this.live.clear();
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
      if (ev.code === 4001 || ev.code === 4002) {
        this.setState('unauthorized', `closed ${ev.code}: ${ev.reason || 'unauthorized'}`);
      }
      this.scheduleReconnect(`closed ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`);
    };
  }

  private scheduleReconnect(why: string) {
    if (this.closed || this.timer) return;
    // Exponential backoff with full jitter, so that a restarted server is not hit by every
    // dashboard at once.
    const cap = Math.min(this.opts.maxBackoffMs, this.opts.minBackoffMs * 2 ** this.attempt);
    const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
    this.attempt++;
    if (this.state !== 'unauthorized') this.setState('reconnecting', `${why}; retrying in ${delay} ms`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private startPing() {
    this.stopPing();
    this.pinger = setInterval(() => {
      const ws = this.ws;
      const t = setTimeout(() => ws?.close(4000, 'ping timeout'), this.opts.pingTimeoutMs);
      this.request({ type: 'ping' }).then(
        () => clearTimeout(t),
        () => clearTimeout(t),
      );
    }, this.opts.pingIntervalMs);
  }

  private stopPing() {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
  }

  private sendSubscribe(channels: string[]) {
    const since: Record<string, { epoch: string; offset: number }> = {};
    for (const c of channels) {
      const p = this.positions.get(c);
      if (p && !isPattern(c)) since[c] = p;
    }
    const cmd: Record<string, unknown> = { type: 'subscribe', channels };
    if (Object.keys(since).length) cmd.since = since;
    this.request(cmd).then(
      (reply) => {
        const chans = (reply.channels ?? {}) as Record<string, Record<string, unknown>>;
        for (const [c, info] of Object.entries(chans)) {
          this.live.add(c);
          if (typeof info.epoch === 'string' && info.epoch !== '' && typeof info.offset === 'number') {
            if (c in since) {
              const recovered = info.recovered === true;
              const replayed = Number(info.replayed ?? 0);
              for (const cb of this.resumeListeners) cb({ channel: c, recovered, replayed });
              if (!recovered) {
                this.positions.set(c, { epoch: info.epoch, offset: info.offset });
                this.resetChannel(c, 'could not resume');
              }
            } else if (!this.positions.has(c)) {
              this.positions.set(c, { epoch: info.epoch, offset: info.offset });
            }
          }
        }
      },
      (e: Error) => {
        for (const c of channels) this.resetChannel(c, `subscribe failed: ${e.message}`);
      },
    );
  }

  private resetChannel(channel: string, reason: string) {
    for (const h of this.handlers.get(channel) ?? []) h.reset?.(reason);
  }

  private request(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ ...cmd, id }));
    });
  }

  private onFrame(text: string) {
    let f: Record<string, unknown>;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (f.type === 'message') {
      this.onMessage(f as unknown as Publication);
      return;
    }
    const id = typeof f.id === 'number' ? f.id : undefined;
    if (id !== undefined && this.pending.has(id)) {
      const p = this.pending.get(id)!;
      this.pending.delete(id);
      if (f.type === 'error') p.reject(new Error(`${f.code}: ${f.message}`));
      else p.resolve(f);
    }
  }

  private onMessage(m: Publication) {
    if (m.pattern) {
      for (const h of this.handlers.get(m.pattern) ?? []) h.message(m);
      return;
    }
    const last = this.positions.get(m.channel);
    if (last && last.epoch === m.epoch) {
      // Already seen (a replay overlapping what arrived live): deliver once.
      if (m.offset <= last.offset) return;
      if (m.offset > last.offset + 1) this.resetChannel(m.channel, `gap: offsets ${last.offset + 1}..${m.offset - 1} dropped`);
    } else if (last && last.epoch && last.epoch !== m.epoch) {
      this.resetChannel(m.channel, 'channel history was reset (new epoch)');
    }
    this.positions.set(m.channel, { epoch: m.epoch, offset: m.offset });
    for (const h of this.handlers.get(m.channel) ?? []) h.message(m);
  }
}
