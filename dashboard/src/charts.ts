// Live charts: each panel shows the series one selector picks. History comes from the query API
// (a step chosen from the range), then points arrive live on `metrics:<measurement>` and are
// merged in (deduplicated by timestamp, bucketed to the step on longer ranges, dropped once out
// of the window). Anomaly scores (`<measurement>:anomaly` in the store, the `anomalies` channel
// live) are drawn as dots, alerts whose labels name a series as vertical marks.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { log } from './activity';
import type { AlertStore } from './alerts';
import { api, enc } from './api';
import type { LiveClient } from './live';
import { align, emptyPoints, insertPoint, nearest, trimBefore, type Points } from './merge';
import { anomalySelector, matchesTags, parseSelector, seriesKey, type Selector } from './selector';

export interface RangeSpec {
  label: string;
  ms: number;
  /** Query step, or null for raw points. */
  step: string | null;
  stepMs: number;
}

export const RANGES: RangeSpec[] = [
  { label: '5m', ms: 5 * 60_000, step: null, stepMs: 0 },
  { label: '15m', ms: 15 * 60_000, step: '5s', stepMs: 5_000 },
  { label: '1h', ms: 3_600_000, step: '15s', stepMs: 15_000 },
  { label: '6h', ms: 6 * 3_600_000, step: '1m', stepMs: 60_000 },
  { label: '24h', ms: 24 * 3_600_000, step: '5m', stepMs: 300_000 },
];

const PALETTE = [
  '#4e9af1', '#f1a14e', '#5cc98a', '#e05d6f', '#a98bf0', '#e0c34e', '#4ed0d8', '#f07cc0',
  '#8fb34f', '#c97a4e', '#7b8cff', '#50b5a0',
];

interface Series extends Points {
  key: string;
  field: string;
  tags: Record<string, string>;
  label: string;
}

interface Anomaly {
  key: string;
  ts: number;
  score: number;
}

interface QuerySeries {
  measurement: string;
  field: string;
  tags: Record<string, string>;
  points: [number, unknown][];
}

interface LivePoint {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, unknown>;
  ts: number;
}

export interface AnomalyEvent {
  measurement: string;
  field: string;
  tags: Record<string, string>;
  ts: number;
  value: number;
  score: number;
  severity?: string;
}

/** Redraws at most once per animation frame, only the panels whose data changed. */
const dirty = new Set<ChartPanel>();
let frameQueued = false;
/** How long each batched redraw took (ms), the latest 1000: the browser tests read them. */
const redrawMs: number[] = [];
(globalThis as unknown as { __pulsewireRedrawMs: number[] }).__pulsewireRedrawMs = redrawMs;
function markDirty(p: ChartPanel) {
  dirty.add(p);
  if (!frameQueued) {
    frameQueued = true;
    requestAnimationFrame(() => {
      frameQueued = false;
      const t0 = performance.now();
      const list = [...dirty];
      dirty.clear();
      for (const panel of list) panel.render();
      // uPlot draws in a microtask queued by setData; this one runs after it.
      queueMicrotask(() => {
        redrawMs.push(performance.now() - t0);
        if (redrawMs.length > 1000) redrawMs.shift();
      });
    });
  }
}

function label(sel: Selector, field: string, tags: Record<string, string>): string {
  const fixed = new Set(sel.matchers.filter((m) => m.op === '=').map((m) => m.tag));
  const t = Object.entries(tags)
    .filter(([k]) => !fixed.has(k))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const f = sel.field ? '' : field;
  return [f, t].filter(Boolean).join(' ') || field;
}

export class ChartPanel {
  readonly el: HTMLElement;
  readonly sel: Selector | null;
  private series = new Map<string, Series>();
  private anomalies: Anomaly[] = [];
  private plot: uPlot | null = null;
  private plotKeys = '';
  private plotEl: HTMLElement;
  private statusEl: HTMLElement;
  private unsub: (() => void)[] = [];
  private loading = 0;
  /** Live points that arrived while history was loading; merged after it. */
  private buffered: LivePoint[] | null = null;
  private resize: ResizeObserver;
  private width = 400;

  constructor(
    readonly text: string,
    client: LiveClient,
    private alerts: AlertStore,
    private range: () => RangeSpec,
    onRemove: (p: ChartPanel) => void,
  ) {
    this.el = document.createElement('section');
    this.el.className = 'panel chart';
    this.el.dataset.testid = 'chart';
    this.el.dataset.selector = text;
    this.el.innerHTML = `<header class="panel-head"><h3 class="chart-title"></h3><span class="status"></span>
      <button class="icon" data-act="reload" title="Reload history">⟳</button>
      <button class="icon" data-act="remove" title="Remove chart">×</button></header><div class="plot"></div>`;
    (this.el.querySelector('.chart-title') as HTMLElement).textContent = text;
    this.plotEl = this.el.querySelector('.plot')!;
    this.statusEl = this.el.querySelector('.status')!;
    this.el.querySelector('[data-act=remove]')!.addEventListener('click', () => onRemove(this));
    this.el.querySelector('[data-act=reload]')!.addEventListener('click', () => void this.load());
    this.resize = new ResizeObserver((entries) => {
      const w = Math.floor(entries[0].contentRect.width);
      if (w > 0 && w !== this.width) {
        this.width = w;
        this.plot?.setSize({ width: w, height: 220 });
      }
    });
    this.resize.observe(this.plotEl);
    let sel: Selector | null = null;
    try {
      sel = parseSelector(text);
    } catch (e) {
      this.status(`bad selector: ${(e as Error).message}`, 'error');
    }
    this.sel = sel;
    if (!sel) return;
    if (/^[A-Za-z0-9_\-.@=]+$/.test(sel.measurement)) {
      this.unsub.push(
        client.subscribe(`metrics:${sel.measurement}`, {
          message: (p) => this.onLive((p.data as { points?: LivePoint[] }).points ?? []),
          reset: () => void this.load(),
          error: (m) => this.status(`live updates refused: ${m}`, 'error'),
        }),
      );
    }
    this.unsub.push(alerts.onChange(() => markDirty(this)));
    void this.load();
  }

  destroy() {
    for (const u of this.unsub) u();
    this.resize.disconnect();
    this.plot?.destroy();
    dirty.delete(this);
    this.el.remove();
  }

  private status(text: string, kind = '') {
    this.statusEl.textContent = text;
    this.statusEl.className = `status ${kind}`;
  }

  /** (Re)loads the window's history and anomaly scores, keeping live points that race it. */
  async load() {
    const sel = this.sel;
    if (!sel) return;
    const seq = ++this.loading;
    this.buffered = [];
    const r = this.range();
    const step = r.step ? `&step=${r.step}&agg=avg` : '';
    const from = `now-${r.label}`;
    this.status('loading…');
    try {
      const [data, scores] = await Promise.all([
        api<{ series: QuerySeries[] }>(`/api/v1/query?q=${enc(sel.text)}&from=${from}${step}`),
        api<{ series: QuerySeries[] }>(`/api/v1/query?q=${enc(anomalySelector(sel))}&from=${from}`).catch(() => ({
          series: [] as QuerySeries[],
        })),
      ]);
      if (seq !== this.loading) return;
      this.series.clear();
      for (const s of data.series) {
        const ser = this.get(s.field, s.tags);
        for (const [ts, v] of s.points) if (typeof v === 'number') this.insert(ser, ts, v, false);
      }
      this.anomalies = [];
      for (const s of scores.series) {
        const key = seriesKey(s.field, s.tags);
        for (const [ts, v] of s.points) if (typeof v === 'number' && v >= 0.5) this.anomalies.push({ key, ts, score: v });
      }
      const late = this.buffered ?? [];
      this.buffered = null;
      this.onLive(late);
      this.status(this.series.size ? '' : 'no data yet');
    } catch (e) {
      if (seq !== this.loading) return;
      this.buffered = null;
      this.status((e as Error).message, 'error');
    }
    markDirty(this);
  }

  private get(field: string, tags: Record<string, string>): Series {
    const key = seriesKey(field, tags);
    let s = this.series.get(key);
    if (!s) {
      s = { key, field, tags, label: label(this.sel!, field, tags), ...emptyPoints() };
      this.series.set(key, s);
    }
    return s;
  }

  private insert(s: Series, ts: number, v: number, live: boolean) {
    insertPoint(s, ts, v, this.range().stepMs, live);
  }

  private onLive(points: LivePoint[]) {
    const sel = this.sel;
    if (!sel || !points.length) return;
    if (this.buffered) {
      this.buffered.push(...points);
      return;
    }
    let changed = false;
    const before = this.series.size;
    for (const p of points) {
      if (p.measurement !== sel.measurement || !matchesTags(sel, p.tags)) continue;
      for (const [f, v] of Object.entries(p.fields)) {
        if ((sel.field && f !== sel.field) || typeof v !== 'number') continue;
        this.insert(this.get(f, p.tags), p.ts, v, true);
        changed = true;
      }
    }
    if (changed) {
      if (before === 0) this.status('');
      markDirty(this);
    }
  }

  onAnomaly(a: AnomalyEvent) {
    const sel = this.sel;
    if (!sel || a.measurement !== sel.measurement || (sel.field && a.field !== sel.field) || !matchesTags(sel, a.tags)) return;
    this.anomalies.push({ key: seriesKey(a.field, a.tags), ts: a.ts, score: a.score });
    markDirty(this);
  }

  /**
   * Figures the end-to-end tests read: series, points, anomalies and alert marks held (the
   * draw hook adds `data-anomaly-dots-drawn` and `data-alert-lines-drawn`: what it painted).
   */
  private expose(points: number, marks: number) {
    const d = this.el.dataset;
    d.series = String(this.series.size);
    d.points = String(points);
    d.anomalies = String(this.anomalies.length);
    d.alertMarks = String(marks);
    let last = 0;
    for (const s of this.series.values()) last = Math.max(last, s.ts[s.ts.length - 1] ?? 0);
    d.lastTs = String(last);
  }

  render() {
    const r = this.range();
    const now = Date.now();
    const start = now - r.ms - r.stepMs;
    // Drop what left the window.
    for (const s of this.series.values()) trimBefore(s, start);
    this.anomalies = this.anomalies.filter((a) => a.ts >= start);
    const list = [...this.series.values()].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
    // One shared x axis: the union of the series' timestamps.
    const { xs, ys } = align(list);
    const data: (number | null)[][] = [xs.map((t) => t / 1000), ...ys];
    let points = 0;
    for (const s of list) points += s.ts.length;
    const keys = list.map((s) => s.key).join('|');
    const marks = this.sel ? this.alertMarks(list) : [];
    this.expose(points, marks.length);
    if (!this.plot || keys !== this.plotKeys) {
      this.plot?.destroy();
      this.plotKeys = keys;
      this.plot = new uPlot(this.options(list, r), data as uPlot.AlignedData, this.plotEl);
    } else {
      this.plot.setData(data as uPlot.AlignedData);
    }
  }

  private alertMarks(list: Series[]) {
    const seen = new Set<string>();
    const out: { ts: number; kind: string }[] = [];
    for (const s of list) {
      for (const m of this.alerts.marksFor(this.sel!.measurement, s.field, s.tags)) {
        const k = `${m.kind}${m.ts}`;
        if (!seen.has(k)) {
          seen.add(k);
          out.push(m);
        }
      }
    }
    return out;
  }

  private options(list: Series[], r: RangeSpec): uPlot.Options {
    const indexOf = new Map(list.map((s, i) => [s.key, i + 1]));
    const panel = this;
    return {
      width: this.width,
      height: 220,
      legend: { show: list.length <= 12 },
      cursor: { points: { size: 5 } },
      scales: {
        x: { time: true, range: () => [(Date.now() - r.ms) / 1000, Date.now() / 1000] },
      },
      axes: [
        { stroke: '#9aa4b2', grid: { stroke: '#2a3240' }, ticks: { stroke: '#2a3240' } },
        { stroke: '#9aa4b2', grid: { stroke: '#2a3240' }, ticks: { stroke: '#2a3240' }, size: 60 },
      ],
      series: [
        {},
        ...list.map((s, i) => ({
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: false },
        })),
      ],
      hooks: {
        draw: [
          (u: uPlot) => {
            const ctx = u.ctx;
            const { left, top, width, height } = u.bbox;
            ctx.save();
            ctx.beginPath();
            ctx.rect(left, top, width, height);
            ctx.clip();
            // What was painted inside the plot area, for the end-to-end tests.
            let lines = 0;
            let dots = 0;
            const inside = (x: number) => x >= left && x <= left + width;
            // Alert start (red, dashed) and resolve (green) marks.
            for (const m of panel.alertMarks(list)) {
              const x = u.valToPos(m.ts / 1000, 'x', true);
              if (inside(x)) lines++;
              ctx.strokeStyle = m.kind === 'start' ? '#ff5c6c' : '#46c37b';
              ctx.setLineDash(m.kind === 'start' ? [6, 4] : []);
              ctx.lineWidth = 1.5 * devicePixelRatio;
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
            }
            ctx.setLineDash([]);
            // Anomaly dots on the series they belong to.
            for (const a of panel.anomalies) {
              const si = indexOf.get(a.key);
              const s = si && panel.series.get(a.key);
              const i = s ? nearest(s.ts, a.ts) : -1;
              if (!s || i < 0) continue;
              const x = u.valToPos(a.ts / 1000, 'x', true);
              const y = u.valToPos(s.v[i], 'y', true);
              if (inside(x)) dots++;
              ctx.fillStyle = a.score >= 0.9 ? '#ff3b4e' : '#ffb020';
              ctx.beginPath();
              ctx.arc(x, y, 4 * devicePixelRatio, 0, 2 * Math.PI);
              ctx.fill();
            }
            ctx.restore();
            panel.el.dataset.alertLinesDrawn = String(lines);
            panel.el.dataset.anomalyDotsDrawn = String(dots);
          },
        ],
      },
    };
  }
}

/** Which charts a first visit shows: those of the candidates that have series. */
export const CANDIDATES = [
  'cpu.usage_active{cpu="cpu-total"}',
  'mem.used_percent',
  'system.load1',
  'http.latency_ms',
  'net.bytes_recv_per_sec{interface!="lo"}',
  'diskio.write_bytes_per_sec',
];

export async function defaultCharts(): Promise<string[]> {
  const found = await Promise.all(
    CANDIDATES.map((c) =>
      api<{ series: unknown[] }>(`/api/v1/series?q=${enc(c)}`).then(
        (r) => r.series.length > 0,
        () => false,
      ),
    ),
  );
  const chosen = CANDIDATES.filter((_, i) => found[i]).slice(0, 4);
  if (!chosen.length) log('info', 'no host or demo series yet: showing the default charts empty');
  return chosen.length ? chosen : CANDIDATES.slice(0, 3);
}
