// Connection, channel and store statistics from GET /api/v1/stats (every 2 s), with rates
// derived from consecutive readings: messages in and out, ingested points, drops.

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

export interface Sample {
  at: number;
  stats: Stats;
  ingestPerSec: number;
  dropsPerSec: number;
}

const HISTORY = 300;
const samples: Sample[] = [];
const listeners = new Set<(s: Sample) => void>();
let failing = false;

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

async function poll() {
  try {
    const stats = await api<Stats>('/api/v1/stats');
    const at = Date.now();
    const prev = samples[samples.length - 1];
    const dt = prev ? (at - prev.at) / 1000 : 0;
    const points = stats.tsdb.head_points + stats.tsdb.part_points;
    const prevPoints = prev ? prev.stats.tsdb.head_points + prev.stats.tsdb.part_points : points;
    const ingestPerSec = dt > 0 ? Math.max(0, (points - prevPoints) / dt) : 0;
    const dropsPerSec = dt > 0 ? Math.max(0, (sum(stats.dropped) - sum(prev.stats.dropped)) / dt) : 0;
    const s = { at, stats, ingestPerSec, dropsPerSec };
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

export function startStats() {
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

/** The strip above the overview: the figures an operator glances at. */
export function mountStrip(el: HTMLElement) {
  onStats((s) => {
    const st = s.stats;
    el.innerHTML = `
      <span title="WebSocket + SSE connections">conns <b data-stat="connections">${st.connections.total}</b></span>
      <span>msgs in <b>${fmt(st.messages_in_per_sec, 1)}/s</b></span>
      <span>out <b>${fmt(st.messages_out_per_sec, 1)}/s</b></span>
      <span>ingest <b data-stat="ingest">${fmt(s.ingestPerSec, 1)} pts/s</b></span>
      <span class="${s.dropsPerSec > 0 ? 'warn' : ''}">drops <b>${fmt(sum(st.dropped))}</b></span>
      <span>series <b>${fmt(st.tsdb.series)}</b></span>`;
  });
}

/** The statistics page: tiles, a rate chart, the channels table. */
export function mountStatsPage(el: HTMLElement) {
  el.innerHTML = `
    <section class="panel"><header class="panel-head"><h2>Node</h2></header><div class="tiles" data-testid="stat-tiles"></div></section>
    <section class="panel"><header class="panel-head"><h2>Rates (last 10 minutes)</h2></header><div class="rates"></div></section>
    <section class="panel"><header class="panel-head"><h2>Channels</h2><span class="status"></span></header>
      <table class="channels"><thead><tr><th>channel</th><th>tenant</th><th>subscribers</th><th>history</th><th>epoch</th><th>offset</th></tr></thead><tbody></tbody></table></section>`;
  const tiles = el.querySelector('.tiles') as HTMLElement;
  const ratesEl = el.querySelector('.rates') as HTMLElement;
  let plot: uPlot | null = null;
  onStats((s) => {
    const st = s.stats;
    const tile = (k: string, v: string, warn = false) => `<div class="tile${warn ? ' warn' : ''}"><span>${k}</span><b>${v}</b></div>`;
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
    ].join('');
    // The first reading has no rate yet.
    const shown = samples.slice(1);
    const xs = shown.map((x) => x.at / 1000);
    const data: uPlot.AlignedData = [
      xs,
      shown.map((x) => x.stats.messages_in_per_sec),
      shown.map((x) => x.stats.messages_out_per_sec),
      shown.map((x) => x.ingestPerSec),
      shown.map((x) => x.dropsPerSec),
    ];
    if (!plot && ratesEl.isConnected && ratesEl.clientWidth > 0) {
      plot = new uPlot(
        {
          width: ratesEl.clientWidth,
          height: 180,
          scales: { x: { time: true } },
          axes: [{ stroke: '#9aa4b2', grid: { stroke: '#2a3240' } }, { stroke: '#9aa4b2', grid: { stroke: '#2a3240' }, size: 60 }],
          series: [
            {},
            { label: 'messages in/s', stroke: '#4e9af1', points: { show: false } },
            { label: 'messages out/s', stroke: '#5cc98a', points: { show: false } },
            { label: 'ingested points/s', stroke: '#f1a14e', points: { show: false } },
            { label: 'drops/s', stroke: '#e05d6f', points: { show: false } },
          ],
        },
        data,
        ratesEl,
      );
    } else plot?.setData(data);
  });
  const tbody = el.querySelector('tbody')!;
  const status = el.querySelector('.status')!;
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
