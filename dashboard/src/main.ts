// The dashboard: pages, the shared live connection, charts, alerts, statistics, console.

import './style.css';

import { log, renderLog } from './activity';
import { AlertStore, mountAlertFeed } from './alerts';
import { askForToken, token } from './api';
import { ChartPanel, defaultCharts, RANGES, type AnomalyEvent, type RangeSpec } from './charts';
import { mountConsole } from './console';
import { SdkLive, type LiveClient } from './live';
import { mountStatsPage, mountStrip, startStats } from './stats';

const CHARTS_KEY = 'pulsewire.charts';
const RANGE_KEY = 'pulsewire.range';

const $ = <T extends HTMLElement = HTMLElement>(sel: string) => document.querySelector(sel) as T;

// The live connection: the @pulsewire/client SDK (WebSocket, SSE as the fallback).
const live = new SdkLive({ url: location.origin, token });
const client: LiveClient = live;

// Connection state in the header and the activity log: `data-state` is the state shown,
// `data-transport` the SDK's transport while connected, `data-disconnects` how many times the
// SDK reported the connection lost.
const conn = $('[data-testid=conn-state]');
let everOpen = false;
live.sdk.on('disconnected', () => {
  conn.dataset.disconnects = String(Number(conn.dataset.disconnects ?? 0) + 1);
});
live.sdk.on('error', (e) => {
  if (e.code !== 'disconnected') log('connection', `${e.code}: ${e.message}`, 'warning');
});
client.onState((state, detail) => {
  conn.dataset.state = state;
  conn.dataset.transport = live.sdk.transportInUse ?? '';
  conn.textContent = state;
  conn.title = detail;
  log('connection', `${state}: ${detail}`, state === 'connected' ? 'ok' : 'warning');
  if (state === 'connected') {
    if (everOpen) {
      // Points written while disconnected were not published if nobody was subscribed:
      // reload what the store has.
      for (const p of panels) void p.load();
      void alerts.load();
    }
    everOpen = true;
  }
  if (state === 'unauthorized') askForToken(`The live connection was refused (${detail}). Enter an API key or connection token.`);
});
client.onResume((r) => {
  conn.dataset.resumed = String(Number(conn.dataset.resumed ?? 0) + 1);
  log('connection', `resumed ${r.channel}: ${r.recovered ? `recovered, ${r.replayed} replayed` : 'not recovered, reloading'}`, r.recovered ? 'ok' : 'warning');
});
window.addEventListener('pulsewire-token', () => {
  log('info', 'credential changed: reconnecting');
  client.reconnect();
  void alerts.load();
  for (const p of panels) void p.load();
});
$('[data-act=token]').onclick = () => askForToken('Enter an API key or connection token for this node.');

// Alerts and anomalies.
const alerts = new AlertStore(client);
mountAlertFeed($('[data-testid=alerts]'), alerts);
client.subscribe('anomalies', {
  message: (p) => {
    const a = p.data as AnomalyEvent;
    log('anomaly', `${a.measurement}.${a.field} ${Object.values(a.tags ?? {}).join(' ')}: ${a.value} (score ${a.score.toFixed(2)})`, a.severity);
    for (const panel of panels) panel.onAnomaly(a);
  },
});

// Time range.
const params = new URLSearchParams(location.hash.split('?')[1] ?? '');
let range: RangeSpec =
  RANGES.find((r) => r.label === (params.get('range') ?? localStorage.getItem(RANGE_KEY))) ?? RANGES[1];
const rangesEl = $('[data-testid=ranges]');
const drawRanges = () => {
  rangesEl.replaceChildren(
    ...RANGES.map((r) => {
      const b = document.createElement('button');
      b.textContent = r.label;
      b.dataset.range = r.label;
      b.className = r === range ? 'active' : '';
      b.onclick = () => {
        range = r;
        localStorage.setItem(RANGE_KEY, r.label);
        drawRanges();
        for (const p of panels) void p.load();
      };
      return b;
    }),
  );
};
drawRanges();

// Charts.
const chartsEl = $('[data-testid=charts]');
let panels: ChartPanel[] = [];
const save = () => localStorage.setItem(CHARTS_KEY, JSON.stringify(panels.map((p) => p.text)));
const addChart = (text: string) => {
  const p = new ChartPanel(text, client, alerts, () => range, (gone) => {
    gone.destroy();
    panels = panels.filter((x) => x !== gone);
    save();
  });
  panels.push(p);
  chartsEl.append(p.el);
};
const setCharts = (list: string[]) => {
  for (const p of panels) p.destroy();
  panels = [];
  for (const c of list) addChart(c);
};
(async () => {
  const fromUrl = params.getAll('c');
  const stored = localStorage.getItem(CHARTS_KEY);
  const list = fromUrl.length ? fromUrl : stored ? (JSON.parse(stored) as string[]) : await defaultCharts();
  setCharts(list);
})();
$<HTMLFormElement>('[data-testid=add-chart]').onsubmit = (ev) => {
  ev.preventDefault();
  const input = (ev.target as HTMLFormElement).elements.namedItem('selector') as HTMLInputElement;
  if (!input.value.trim()) return;
  addChart(input.value.trim());
  input.value = '';
  save();
};
$('[data-act=defaults]').onclick = async () => {
  localStorage.removeItem(CHARTS_KEY);
  setCharts(await defaultCharts());
};
// The window moves even when no point arrives.
setInterval(() => {
  if (!document.hidden) for (const p of panels) p.render();
}, 1_000);

// Statistics and activity.
startStats(() => live.received);
mountStrip($('[data-testid=stat-strip]'));
renderLog($('[data-testid=activity]'), 40);
let statsMounted = false;
let consoleMounted = false;

// Pages.
const route = () => {
  const page = (location.hash.replace(/^#\/?/, '').split('?')[0] || 'overview').replace(/\/$/, '');
  const name = ['stats', 'console'].includes(page) ? page : 'overview';
  for (const el of document.querySelectorAll<HTMLElement>('main > .page')) el.hidden = el.dataset.page !== name;
  for (const a of document.querySelectorAll<HTMLElement>('nav a')) a.classList.toggle('active', a.dataset.page === name);
  if (name === 'stats' && !statsMounted) {
    statsMounted = true;
    mountStatsPage($('[data-testid=stats-page]'));
    renderLog($('[data-testid=activity-full]'));
  }
  if (name === 'console' && !consoleMounted) {
    consoleMounted = true;
    mountConsole($('main > .page[data-page=console]'), client);
  }
};
window.addEventListener('hashchange', route);
route();
