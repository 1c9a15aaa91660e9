// Connection, channel and store statistics, with rates derived from consecutive readings
// (messages in and out, ingested points, drops), every 2 s.
//
// What a credential can see decides what is shown. `GET /api/v1/stats` reports the whole node
// and answers 403 to any key but an admin key of the operator tenant (docs/security.md); the
// panels then say so and show what the key can see instead: its tenant's connections with their
// deliveries, queues and drops (`GET /api/v1/clients`) and channels (`GET /api/v1/channels`),
// which need the admin scope; and, always, what this page's own connection received. An
// endpoint that answered 403 is not asked again until the credential changes.

import uPlot from 'uplot';

import { log } from './activity';
import { api, ApiError } from './api';

export interface Stats {
  connections: { websocket: number; sse: number; total: number };
  channels: number;
  subscriptions: number;
  publications: number;
  delivered: number;
  dropped: Record<string, number>;
  queued: number;
  slow_consumer_closes: number;
  heartbeat_timeouts: number;
  messages_in_per_sec: number;
  messages_out_per_sec: number;
  tsdb: { series: number; head_points: number; part_points: number; wal_bytes: number; parts: number; part_bytes: number; checkpoints: number };
  analysis?: Record<string, number>;
}

/** The key's tenant, from the admin-scoped tenant endpoints (null: refused). */
export interface TenantView {
  connections: number | null;
  delivered: number | null;
  dropped: number | null;
  queued: number | null;
  channels: number | null;
}

/** `node`: the node's statistics; `tenant`: the tenant endpoints only; `page`: neither. */
export type Access = 'node' | 'tenant' | 'page';

export interface Sample {
  at: number;
  access: Access;
  /** Null unless `access` is `node`. */
  stats: Stats | null;
  tenant: TenantView | null;
  /** Publications this page's connection received, in total. */
  pageReceived: number;
  pagePerSec: number;
  ingestPerSec: number;
  dropsPerSec: number;
}

export const NODE_STATS_NOTICE = 'node statistics need an operator admin key';
export const TENANT_STATS_NOTICE = "your tenant's connections and channels need the admin scope";

const HISTORY = 300;
const samples: Sample[] = [];
const listeners = new Set<(s: Sample) => void>();
let failing = false;
/** Endpoints that answered 403 to the current credential. */
const refused = new Set<string>();
let pageCounter: () => number = () => 0;

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

/** GETs `path` unless it was refused; null when it is (a 403 is remembered). */
async function allowed<T>(path: string): Promise<T | null> {
  if (refused.has(path)) return null;
  try {
    return await api<T>(path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) {
      refused.add(path);
      log('info', e.message);
      return null;
    }
    throw e;
  }
}

async function tenantView(): Promise<TenantView | null> {
  const [clients, channels] = await Promise.all([
    allowed<{ clients: { delivered: number; dropped: number; queue_depth: number }[] }>('/api/v1/clients'),
    allowed<{ channels: unknown[] }>('/api/v1/channels'),
  ]);
  if (!clients && !channels) return null;
  const total = (k: 'delivered' | 'dropped' | 'queue_depth') => (clients ? clients.clients.reduce((a, c) => a + Number(c[k] ?? 0), 0) : null);
  return {
    connections: clients ? clients.clients.length : null,
    delivered: total('delivered'),
    dropped: total('dropped'),
    queued: total('queue_depth'),
    channels: channels ? channels.channels.length : null,
  };
}

function dropsOf(s: Sample): number | null {
  if (s.stats) return sum(s.stats.dropped);
  return s.tenant?.dropped ?? null;
}

async function poll() {
  try {
    const stats = await allowed<Stats>('/api/v1/stats');
    const tenant = stats ? null : await tenantView();
    const at = Date.now();
    const prev = samples[samples.length - 1];
    const dt = prev ? (at - prev.at) / 1000 : 0;
    const pageReceived = pageCounter();
    const s: Sample = {
      at,
      access: stats ? 'node' : tenant ? 'tenant' : 'page',
      stats,
      tenant,
      pageReceived,
      pagePerSec: prev && dt > 0 ? Math.max(0, (pageReceived - prev.pageReceived) / dt) : 0,
      ingestPerSec: 0,
      dropsPerSec: 0,
    };
    if (prev && dt > 0 && prev.access === s.access) {
      if (stats && prev.stats) {
        const points = stats.tsdb.head_points + stats.tsdb.part_points;
        const prevPoints = prev.stats.tsdb.head_points + prev.stats.tsdb.part_points;
        s.ingestPerSec = Math.max(0, (points - prevPoints) / dt);
      }
      const d = dropsOf(s);
      const pd = dropsOf(prev);
      if (d !== null && pd !== null) s.dropsPerSec = Math.max(0, (d - pd) / dt);
    }
    samples.push(s);
    if (samples.length > HISTORY) samples.shift();
    if (failing) log('info', 'statistics available again');
    failing = false;
    for (const l of listeners) l(s);
  } catch (e) {
    if (!failing && !(e instanceof ApiError && e.status === 401)) log('error', `stats: ${(e as Error).message}`);
    failing = true;
  }
}

/** Starts polling; `received` counts the publications this page's connection delivered. */
export function startStats(received: () => number) {
  pageCounter = received;
  // A new credential may see more (or less): ask every endpoint again.
  window.addEventListener('pulsewire-token', () => {
    refused.clear();
    samples.length = 0;
    void poll();
  });
  void poll();
  setInterval(poll, 2_000);
}

export function onStats(cb: (s: Sample) => void) {
  listeners.add(cb);
  const last = samples[samples.length - 1];
  if (last) cb(last);
  return () => void listeners.delete(cb);
}

const fmt = (n: number, digits = 0) =>
  n >= 1e9 ? `${(n / 1e9).toFixed(1)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(digits);

const fmtOr = (n: number | null, digits = 0) => (n === null ? '–' : fmt(n, digits));

/** The strip above the overview: the figures an operator glances at. */
export function mountStrip(el: HTMLElement) {
  onStats((s) => {
    el.dataset.access = s.access;
    const st = s.stats;
    if (st) {
      el.innerHTML = `
      <span title="WebSocket + SSE connections">conns <b data-stat="connections">${st.connections.total}</b></span>
      <span>msgs in <b>${fmt(st.messages_in_per_sec, 1)}/s</b></span>
      <span>out <b>${fmt(st.messages_out_per_sec, 1)}/s</b></span>
      <span>ingest <b data-stat="ingest">${fmt(s.ingestPerSec, 1)} pts/s</b></span>
      <span class="${s.dropsPerSec > 0 ? 'warn' : ''}">drops <b>${fmt(sum(st.dropped))}</b></span>
      <span>series <b>${fmt(st.tsdb.series)}</b></span>`;
      return;
    }
    const t = s.tenant;
    el.innerHTML = `
      <span class="notice" data-testid="stats-notice" title="GET /api/v1/stats reports the whole node">${NODE_STATS_NOTICE}</span>
      ${
        t
          ? `<span title="your tenant's WebSocket + SSE connections">tenant conns <b data-stat="connections">${fmtOr(t.connections)}</b></span>
      <span class="${s.dropsPerSec > 0 ? 'warn' : ''}" title="messages dropped on your tenant's connections">drops <b data-stat="drops">${fmtOr(t.dropped)}</b></span>`
          : ''
      }
      <span title="publications this page received">this page <b data-stat="page">${fmt(s.pagePerSec, 1)} msgs/s</b></span>`;
  });
}

/** The statistics page: tiles, a rate chart, the channels table. */
export function mountStatsPage(el: HTMLElement) {
  el.innerHTML = `
    <section class="panel"><header class="panel-head"><h2 data-testid="stat-scope">Node</h2><span class="status" data-testid="stats-access"></span></header><div class="tiles" data-testid="stat-tiles"></div></section>
    <section class="panel"><header class="panel-head"><h2>Rates (last 10 minutes)</h2></header><div class="rates"></div></section>
    <section class="panel"><header class="panel-head"><h2>Channels</h2><span class="status" data-testid="channels-status"></span></header>
      <table class="channels"><thead><tr><th>channel</th><th>tenant</th><th>subscribers</th><th>history</th><th>epoch</th><th>offset</th></tr></thead><tbody></tbody></table></section>`;
  const tiles = el.querySelector('.tiles') as HTMLElement;
  const ratesEl = el.querySelector('.rates') as HTMLElement;
  const scope = el.querySelector('[data-testid=stat-scope]') as HTMLElement;
  const access = el.querySelector('[data-testid=stats-access]') as HTMLElement;
  let plot: uPlot | null = null;
  let plotAccess: Access | null = null;
  const tile = (k: string, v: string, warn = false) => `<div class="tile${warn ? ' warn' : ''}"><span>${k}</span><b>${v}</b></div>`;
  onStats((s) => {
    const st = s.stats;
    const page = [tile('this page: received', fmt(s.pageReceived)), tile('this page: msgs/s', fmt(s.pagePerSec, 1))];
    if (st) {
      scope.textContent = 'Node';
      access.textContent = '';
      tiles.innerHTML = [
        tile('WebSocket', fmt(st.connections.websocket)),
        tile('SSE', fmt(st.connections.sse)),
        tile('channels', fmt(st.channels)),
        tile('subscriptions', fmt(st.subscriptions)),
        tile('messages in/s', fmt(st.messages_in_per_sec, 1)),
        tile('messages out/s', fmt(st.messages_out_per_sec, 1)),
        tile('publications', fmt(st.publications)),
        tile('delivered', fmt(st.delivered)),
        tile('queued', fmt(st.queued), st.queued > 1000),
        ...Object.entries(st.dropped).map(([k, v]) => tile(`dropped: ${k}`, fmt(v), v > 0 && k === 'queue_full')),
        tile('slow-consumer closes', fmt(st.slow_consumer_closes), st.slow_consumer_closes > 0),
        tile('heartbeat timeouts', fmt(st.heartbeat_timeouts), st.heartbeat_timeouts > 0),
        tile('ingest pts/s', fmt(s.ingestPerSec, 1)),
        tile('series', fmt(st.tsdb.series)),
        tile('head points', fmt(st.tsdb.head_points)),
        tile('parts', `${st.tsdb.parts} (${fmt(st.tsdb.part_bytes)}B)`),
        tile('WAL', `${fmt(st.tsdb.wal_bytes)}B`),
        ...Object.entries(st.analysis ?? {}).map(([k, v]) => tile(`analysis: ${k.replace(/_/g, ' ')}`, fmt(Number(v)))),
        ...page,
      ].join('');
    } else {
      const t = s.tenant;
      scope.textContent = t ? 'Your tenant' : 'This page';
      access.textContent = t ? NODE_STATS_NOTICE : `${NODE_STATS_NOTICE}; ${TENANT_STATS_NOTICE}`;
      tiles.innerHTML = [
        ...(t
          ? [
              tile('connections', fmtOr(t.connections)),
              tile('channels', fmtOr(t.channels)),
              tile('delivered', fmtOr(t.delivered)),
              tile('queued', fmtOr(t.queued), (t.queued ?? 0) > 1000),
              tile('dropped', fmtOr(t.dropped), (t.dropped ?? 0) > 0),
            ]
          : []),
        ...page,
      ].join('');
    }
    // The first reading has no rate yet; the chart's series depend on what the key can see.
    const shown = samples.slice(1).filter((x) => x.access === s.access);
    const xs = shown.map((x) => x.at / 1000);
    const line = (label: string, stroke: string) => ({ label, stroke, points: { show: false } });
    const node = s.access === 'node';
    const data: uPlot.AlignedData = node
      ? [
          xs,
          shown.map((x) => x.stats?.messages_in_per_sec ?? null),
          shown.map((x) => x.stats?.messages_out_per_sec ?? null),
          shown.map((x) => x.ingestPerSec),
          shown.map((x) => x.dropsPerSec),
        ]
      : [xs, shown.map((x) => x.pagePerSec), shown.map((x) => x.dropsPerSec)];
    if (plot && plotAccess !== s.access) {
      plot.destroy();
      plot = null;
    }
    if (!plot && ratesEl.isConnected && ratesEl.clientWidth > 0) {
      plotAccess = s.access;
      plot = new uPlot(
        {
          width: ratesEl.clientWidth,
          height: 180,
          scales: { x: { time: true } },
          axes: [{ stroke: '#9aa4b2', grid: { stroke: '#2a3240' } }, { stroke: '#9aa4b2', grid: { stroke: '#2a3240' }, size: 60 }],
          series: node
            ? [
                {},
                line('messages in/s', '#4e9af1'),
                line('messages out/s', '#5cc98a'),
                line('ingested points/s', '#f1a14e'),
                line('drops/s', '#e05d6f'),
              ]
            : [{}, line('received by this page/s', '#4e9af1'), line("your tenant's drops/s", '#e05d6f')],
        },
        data,
        ratesEl,
      );
    } else plot?.setData(data);
  });
  const tbody = el.querySelector('tbody')!;
  const status = el.querySelector('[data-testid=channels-status]')!;
  const channels = async () => {
    if (!el.isConnected || el.hidden) return;
    try {
      const r = await api<{ channels: Record<string, unknown>[] }>('/api/v1/channels');
      status.textContent = `${r.channels.length} channels`;
      tbody.replaceChildren(
        ...r.channels
          .sort((a, b) => Number(b.subscribers ?? 0) - Number(a.subscribers ?? 0))
          .slice(0, 200)
          .map((c) => {
            const tr = document.createElement('tr');
            for (const k of ['name', 'tenant', 'subscribers', 'history_size', 'epoch', 'offset']) {
              const td = document.createElement('td');
              const v = c[k] ?? '';
              td.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
              tr.append(td);
            }
            return tr;
          }),
      );
    } catch (e) {
      status.textContent = e instanceof ApiError && e.status === 403 ? 'the channel list needs an API key with the admin scope' : (e as Error).message;
    }
  };
  void channels();
  setInterval(channels, 5_000);
}
