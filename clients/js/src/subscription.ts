import { Emitter } from './emitter.js';
import type { PulsewireError } from './errors.js';
import { judge, type Position } from './position.js';
import type {
  HistoryOptions,
  HistoryResult,
  PresenceResult,
  Publication,
  SubscribedContext,
  SubscribedInfo,
  UnrecoveredContext,
} from './types.js';

export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

export interface SubscriptionEvents<T> extends Record<string, unknown> {
  message: Publication<T>;
  subscribed: SubscribedContext;
  /** Continuity was lost: reload state for the channel (see `UnrecoveredContext.reason`). */
  unrecovered: UnrecoveredContext;
  error: PulsewireError;
  state: SubscriptionState;
}

/** What the subscription needs from its client (kept narrow, so tests can drive it alone). */
export interface SubscriptionHost {
  unsubscribe(sub: Subscription<never>): Promise<void>;
  resync(sub: Subscription<never>): void;
  history<T>(channel: string, opts?: HistoryOptions): Promise<HistoryResult<T>>;
  presence(channel: string): Promise<PresenceResult>;
}

/**
 * One channel (or pattern) subscription. Delivers each publication once, in offset order:
 * duplicates (same epoch, offset not ahead of the last delivered) are dropped, so replays after
 * a reconnect never repeat what was delivered.
 */
export class Subscription<T = unknown> extends Emitter<SubscriptionEvents<T>> {
  readonly channel: string;
  readonly isPattern: boolean;
  private _state: SubscriptionState = 'subscribing';
  private _position: Position | undefined;
  /** Pattern subscriptions: the last position per matched channel (duplicates within a connection). */
  private matched = new Map<string, Position>();
  /** Set once the server confirmed the subscription at least once. */
  private confirmed = false;
  /** While resyncing after a gap: live publications are held back until the replay. */
  resyncing = false;

  constructor(
    private readonly host: SubscriptionHost,
    channel: string,
    isPattern: boolean,
    since?: Position,
  ) {
    super();
    this.channel = channel;
    this.isPattern = isPattern;
    this._position = since ? { ...since } : undefined;
  }

  get state(): SubscriptionState {
    return this._state;
  }

  /** The position of the last publication delivered (or the subscribe position). Channels only. */
  get position(): Position | undefined {
    return this._position ? { ...this._position } : undefined;
  }

  /** Stops delivery at once (nothing more is emitted) and unsubscribes on the server. */
  unsubscribe(): Promise<void> {
    if (this._state === 'unsubscribed') return Promise.resolve();
    this.setState('unsubscribed');
    return this.host.unsubscribe(this as unknown as Subscription<never>);
  }

  history(opts?: HistoryOptions): Promise<HistoryResult<T>> {
    return this.host.history<T>(this.channel, opts);
  }

  presence(): Promise<PresenceResult> {
    return this.host.presence(this.channel);
  }

  /** @internal Called when the subscription is (re)sent to the server. */
  _pending(): void {
    if (this._state !== 'unsubscribed') this.setState('subscribing');
  }

  /** @internal Whether a resume position should be sent, and which. */
  _since(): Position | undefined {
    if (this.isPattern || !this._position || this._position.epoch === '') return undefined;
    return { ...this._position };
  }

  /** @internal The server confirmed the subscription. */
  _subscribed(info: SubscribedInfo, askedSince: Position | undefined): void {
    if (this._state === 'unsubscribed') return;
    const resubscribed = this.confirmed;
    this.confirmed = true;
    this.resyncing = false;
    this.matched.clear();
    const current = info.epoch !== undefined ? { epoch: info.epoch, offset: info.offset ?? 0 } : undefined;
    let recovered: boolean | undefined;
    if (!this.isPattern) {
      if (askedSince && info.recovered !== undefined) {
        recovered = info.recovered;
        if (!recovered) {
          const from = this._position;
          this._position = current;
          this.setState('subscribed');
          this.emit('subscribed', ctx(this.channel, current, resubscribed, false, info.replayed));
          this.emit('unrecovered', { channel: this.channel, reason: 'not_recovered', from, to: current });
          return;
        }
        // Recovered: the replay continues from the held position.
      } else {
        this._position = current;
      }
    }
    this.setState('subscribed');
    this.emit('subscribed', ctx(this.channel, current, resubscribed, recovered, info.replayed));
  }

  /** @internal A publication for this subscription. Returns false if it was not delivered. */
  _deliver(p: Publication<T>): boolean {
    if (this._state === 'unsubscribed' || this.resyncing) return false;
    if (this.isPattern) {
      const held = this.matched.get(p.channel);
      const v = judge(held, p);
      if (v === 'duplicate') return false;
      this.matched.set(p.channel, { epoch: p.epoch, offset: p.offset });
      this.emit('message', p);
      return true;
    }
    const verdict = judge(this._position, p);
    switch (verdict) {
      case 'duplicate':
        return false;
      case 'gap':
        // The connection's queue dropped publications: resubscribe from the last one delivered,
        // holding live ones back until the replay (which is delivered in order, deduplicated).
        this.resyncing = true;
        this.host.resync(this as unknown as Subscription<never>);
        return false;
      case 'reset': {
        const from = this._position;
        this._position = { epoch: p.epoch, offset: p.offset };
        this.emit('unrecovered', { channel: this.channel, reason: 'epoch_changed', from, to: this.position });
        this.emit('message', p);
        return true;
      }
      case 'deliver':
        this._position = { epoch: p.epoch, offset: p.offset };
        this.emit('message', p);
        return true;
    }
  }

  /** @internal */
  _error(e: PulsewireError): void {
    this.emit('error', e);
  }

  /** @internal */
  _close(): void {
    this.setState('unsubscribed');
    this.removeAllListeners();
  }

  private setState(s: SubscriptionState): void {
    if (this._state === s) return;
    this._state = s;
    this.emit('state', s);
  }
}

function ctx(
  channel: string,
  position: Position | undefined,
  resubscribed: boolean,
  recovered: boolean | undefined,
  replayed: number | undefined,
): SubscribedContext {
  const c: SubscribedContext = { channel, resubscribed };
  if (position) c.position = position;
  if (recovered !== undefined) c.recovered = recovered;
  if (replayed !== undefined) c.replayed = replayed;
  return c;
}

/**
 * One holder's handle on a shared channel subscription (`client.share()`). Any number of handles
 * share one `Subscription` (one subscription on the server); each has its own listeners, and
 * `unsubscribe()` ends only this handle's delivery. The subscription ends with the last handle.
 */
export class SharedSubscription<T = unknown> extends Emitter<SubscriptionEvents<T>> {
  private offs: (() => void)[];
  private closed = false;

  constructor(
    /** The subscription shared by every handle on the channel. */
    readonly subscription: Subscription<T>,
    private readonly release: (h: SharedSubscription<T>) => Promise<void>,
  ) {
    super();
    const forward = <K extends keyof SubscriptionEvents<T>>(event: K) =>
      subscription.on(event, (v) => {
        if (!this.closed) this.emit(event, v);
      });
    this.offs = [forward('message'), forward('subscribed'), forward('unrecovered'), forward('error'), forward('state')];
  }

  get channel(): string {
    return this.subscription.channel;
  }

  get isPattern(): boolean {
    return this.subscription.isPattern;
  }

  /** `unsubscribed` once this handle unsubscribed, else the shared subscription's state. */
  get state(): SubscriptionState {
    return this.closed ? 'unsubscribed' : this.subscription.state;
  }

  get position(): Position | undefined {
    return this.subscription.position;
  }

  /**
   * Stops delivery to this handle at once. The shared subscription goes on for the other
   * handles; the last handle's `unsubscribe()` unsubscribes on the server too.
   */
  unsubscribe(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const off of this.offs) off();
    this.offs = [];
    this.emit('state', 'unsubscribed');
    this.removeAllListeners();
    return this.release(this);
  }

  history(opts?: HistoryOptions): Promise<HistoryResult<T>> {
    return this.subscription.history(opts);
  }

  presence(): Promise<PresenceResult> {
    return this.subscription.presence();
  }
}
