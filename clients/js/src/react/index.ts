import { createContext, createElement, useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import type { PulsewireClient } from '../client.js';
import type { PulsewireError } from '../errors.js';
import type { Alert, ConnectionState, LivePoints, PointValue, Publication, QuerySeries, UnrecoveredContext } from '../types.js';

const Ctx = createContext<PulsewireClient | null>(null);

/** Makes a client available to the hooks below. */
export function PulsewireProvider(props: { client: PulsewireClient; children?: ReactNode }) {
  return createElement(Ctx.Provider, { value: props.client }, props.children);
}

/** The client from `PulsewireProvider` (or the one given). */
export function usePulsewire(client?: PulsewireClient): PulsewireClient {
  const c = useContext(Ctx);
  const r = client ?? c;
  if (!r) throw new Error('no Pulsewire client: wrap the tree in <PulsewireProvider client={...}> or pass one');
  return r;
}

/** The connection's state, re-rendering on each change. */
export function useConnectionState(client?: PulsewireClient): ConnectionState {
  const c = usePulsewire(client);
  return useSyncExternalStore(
    (cb) => c.on('state', cb),
    () => c.state,
    () => c.state,
  );
}

export interface ChannelOptions<T> {
  /** How many recent publications `messages` keeps (default 100). */
  keep?: number;
  /** Called for every publication (in addition to the state update). */
  onMessage?: (p: Publication<T>) => void;
  /** Called when continuity is lost: reload what depends on the channel. */
  onUnrecovered?: (u: UnrecoveredContext) => void;
  client?: PulsewireClient;
}

export interface ChannelState<T> {
  messages: Publication<T>[];
  last: Publication<T> | undefined;
  subscribed: boolean;
  error: PulsewireError | undefined;
}

/**
 * Subscribes while mounted (and while `channel` is set); unsubscribes on unmount. The hooks hold
 * their channels with `client.share()`: any number of them (and `useSeries`/`useAlerts`) may watch
 * one channel; the server subscription ends with the last.
 */
export function useChannel<T = unknown>(channel: string | null | undefined, opts: ChannelOptions<T> = {}): ChannelState<T> {
  const c = usePulsewire(opts.client);
  const keep = opts.keep ?? 100;
  const cb = useRef(opts);
  cb.current = opts;
  const [state, setState] = useState<ChannelState<T>>({ messages: [], last: undefined, subscribed: false, error: undefined });
  useEffect(() => {
    setState({ messages: [], last: undefined, subscribed: false, error: undefined });
    if (!channel) return;
    const sub = c.share<T>(channel);
    // Joining a channel another holder already subscribed: no `subscribed` event will come.
    if (sub.state === 'subscribed') setState((s) => ({ ...s, subscribed: true }));
    const offs = [
      sub.on('message', (p) => {
        cb.current.onMessage?.(p);
        setState((s) => ({ ...s, last: p, messages: keep > 0 ? [...s.messages, p].slice(-keep) : s.messages }));
      }),
      sub.on('subscribed', () => setState((s) => ({ ...s, subscribed: true, error: undefined }))),
      sub.on('state', (st) => st !== 'subscribed' && setState((s) => ({ ...s, subscribed: false }))),
      sub.on('error', (error) => setState((s) => ({ ...s, error }))),
      sub.on('unrecovered', (u) => cb.current.onUnrecovered?.(u)),
    ];
    return () => {
      for (const off of offs) off();
      void sub.unsubscribe().catch(() => {});
    };
  }, [c, channel, keep]);
  return state;
}

export interface SeriesOptions {
  measurement: string;
  field: string;
  /** Exact tag values the series must have. */
  tags?: Record<string, string>;
  /** History start (default `now-1h`); live points older than the same span are trimmed. */
  from?: string;
  /** Aggregation step for the history part (raw points when absent). */
  step?: string;
  agg?: 'avg' | 'min' | 'max' | 'sum' | 'count' | 'last' | 'median' | 'p50' | 'p95' | 'p99' | 'stddev' | 'rate';
  client?: PulsewireClient;
}

export interface SeriesState {
  /** One entry per matching series (tag set), points `[ms, value]` in time order. */
  series: QuerySeries[];
  loading: boolean;
  error: PulsewireError | Error | undefined;
}

/** The selector for a measurement, field and exact tags (docs/query.md). */
export function selector(measurement: string, field: string, tags: Record<string, string> = {}): string {
  const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const m = Object.entries(tags).map(([k, v]) => `${q(k)}=${q(v)}`);
  return `${q(measurement)}.${q(field)}${m.length ? `{${m.join(',')}}` : ''}`;
}

const RANGE = /^now-(\d+)(ms|s|m|h|d|w)$/;
const UNIT: Record<string, number> = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };

/**
 * A metric series: its history from `GET /api/v1/query`, then its live points from
 * `metrics:<measurement>`. The live subscription starts first and its points are buffered, so
 * nothing falls between the query and the stream; points not newer than the history's last
 * are dropped.
 */
export function useSeries(opts: SeriesOptions): SeriesState {
  const c = usePulsewire(opts.client);
  const { measurement, field, from = 'now-1h', step, agg } = opts;
  const tagsKey = JSON.stringify(opts.tags ?? {});
  const [state, setState] = useState<SeriesState>({ series: [], loading: true, error: undefined });
  useEffect(() => {
    const tags = JSON.parse(tagsKey) as Record<string, string>;
    let cancelled = false;
    let ready = false;
    let buffered: LivePoints[] = [];
    const series = new Map<string, QuerySeries>();
    const span = RANGE.exec(from);
    const keepMs = span ? Number(span[1]) * UNIT[span[2]!]! : undefined;
    const keyOf = (t: Record<string, string>) => JSON.stringify(Object.entries(t).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const publish = () => setState({ series: [...series.values()].map((s) => ({ ...s, points: [...s.points] })), loading: false, error: undefined });
    const apply = (batch: LivePoints) => {
      let changed = false;
      for (const p of batch.points ?? []) {
        if (p.measurement !== measurement || !(field in p.fields)) continue;
        if (!Object.entries(tags).every(([k, v]) => p.tags[k] === v)) continue;
        const key = keyOf(p.tags);
        let s = series.get(key);
        if (!s) {
          s = { measurement, field, tags: p.tags, points: [] };
          series.set(key, s);
        }
        const lastTs = s.points.length ? s.points[s.points.length - 1]![0] : -Infinity;
        if (p.ts <= lastTs) continue;
        s.points.push([p.ts, p.fields[field] as PointValue]);
        if (keepMs !== undefined) {
          const cut = p.ts - keepMs;
          while (s.points.length && s.points[0]![0] < cut) s.points.shift();
        }
        changed = true;
      }
      if (changed) publish();
    };
    const sub = c.share<LivePoints>(`metrics:${measurement}`);
    const off = sub.on('message', (p) => (ready ? apply(p.data) : buffered.push(p.data)));
    setState({ series: [], loading: true, error: undefined });
    const params: Parameters<PulsewireClient['query']>[0] = { q: selector(measurement, field, tags), from };
    if (step) params.step = step;
    if (agg) params.agg = agg;
    c.query(params).then(
      (r) => {
        if (cancelled) return;
        for (const s of r.series) series.set(keyOf(s.tags), { ...s, points: [...s.points] });
        ready = true;
        publish();
        for (const b of buffered) apply(b);
        buffered = [];
      },
      (error: Error) => !cancelled && setState({ series: [], loading: false, error }),
    );
    return () => {
      cancelled = true;
      off();
      void sub.unsubscribe().catch(() => {});
    };
  }, [c, measurement, field, tagsKey, from, step, agg]);
  return state;
}

export interface AlertsState {
  /** Current alert instances by id, as of their latest event. */
  alerts: Alert[];
  loading: boolean;
  error: PulsewireError | Error | undefined;
  /** Acknowledges an alert (`POST /api/v1/alerts/{id}/ack`). */
  ack: (id: string, by: string, comment?: string) => Promise<Alert>;
}

/** The current alerts (`GET /api/v1/alerts`), kept up to date from the `alerts` channel. */
export function useAlerts(opts: { client?: PulsewireClient; includeResolved?: boolean } = {}): AlertsState {
  const c = usePulsewire(opts.client);
  const includeResolved = opts.includeResolved ?? true;
  const [state, setState] = useState<Omit<AlertsState, 'ack'>>({ alerts: [], loading: true, error: undefined });
  useEffect(() => {
    let cancelled = false;
    let ready = false;
    const byId = new Map<string, Alert>();
    let buffered: Alert[] = [];
    const publish = () =>
      setState({ alerts: [...byId.values()].filter((a) => includeResolved || a.state !== 'resolved'), loading: false, error: undefined });
    const apply = (a: Alert) => {
      byId.set(a.id, { ...byId.get(a.id), ...a });
      publish();
    };
    const sub = c.share<Alert>('alerts');
    const offs = [
      sub.on('message', (p) => (ready ? apply(p.data) : buffered.push(p.data))),
      // Events were lost (reconnect beyond the history): list again.
      sub.on('unrecovered', () => void load()),
    ];
    const load = () =>
      c.alerts().then(
        (list) => {
          if (cancelled) return;
          byId.clear();
          for (const a of list) byId.set(a.id, a);
          ready = true;
          for (const a of buffered) byId.set(a.id, { ...byId.get(a.id), ...a });
          buffered = [];
          publish();
        },
        (error: Error) => !cancelled && setState((s) => ({ ...s, loading: false, error })),
      );
    void load();
    return () => {
      cancelled = true;
      for (const off of offs) off();
      void sub.unsubscribe().catch(() => {});
    };
  }, [c, includeResolved]);
  const ack = useCallback((id: string, by: string, comment?: string) => c.ackAlert(id, comment ? { by, comment } : { by }), [c]);
  return { ...state, ack };
}
