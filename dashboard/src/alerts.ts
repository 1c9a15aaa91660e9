// Alerts: the current instances (GET /api/v1/alerts) kept up to date from the `alerts` channel,
// the feed with acknowledge and silence buttons, and the marks charts draw for them.

import { log } from './activity';
import { api, enc } from './api';
import type { LiveClient } from './live';

export interface Alert {
  id: string;
  rule: string;
  state: 'pending' | 'firing' | 'resolved';
  severity: 'info' | 'warning' | 'critical';
  labels: Record<string, string>;
  value: number | null;
  since: number;
  active_since?: number;
  at?: number;
  annotations: Record<string, string>;
  ack?: { by: string; at: number; comment?: string };
  flapping?: boolean;
}

/** A vertical mark on charts whose series the alert's labels name. */
export interface AlertMark {
  ts: number;
  kind: 'start' | 'resolve';
  alert: Alert;
}

const RANK = { firing: 0, pending: 1, resolved: 2 } as const;

export class AlertStore {
  readonly alerts = new Map<string, Alert>();
  /** Start and resolve times per alert id, kept across state changes for the chart marks. */
  private marks = new Map<string, AlertMark[]>();
  private listeners = new Set<() => void>();

  constructor(client: LiveClient) {
    client.subscribe('alerts', {
      message: (p) => this.apply(p.data as Alert, true),
      reset: () => void this.load(),
    });
    void this.load();
  }

  async load() {
    try {
      const r = await api<{ alerts: Alert[] }>('/api/v1/alerts');
      for (const a of r.alerts) this.apply(a, false);
    } catch (e) {
      log('error', `cannot load alerts: ${(e as Error).message}`);
    }
  }

  private apply(a: Alert, live: boolean) {
    const prev = this.alerts.get(a.id);
    // An event older than what is held (the list raced the channel) changes nothing.
    if (prev && (prev.at ?? 0) > (a.at ?? 0)) return;
    this.alerts.set(a.id, a);
    const marks = this.marks.get(a.id) ?? [];
    const start = a.active_since ?? a.since;
    if (a.state !== 'resolved' || a.active_since !== undefined) {
      if (!marks.some((m) => m.kind === 'start' && m.ts === start)) marks.push({ ts: start, kind: 'start', alert: a });
    }
    if (a.state === 'resolved' && !marks.some((m) => m.kind === 'resolve' && m.ts === a.since)) {
      marks.push({ ts: a.since, kind: 'resolve', alert: a });
    }
    for (const m of marks) m.alert = a;
    this.marks.set(a.id, marks);
    if (live && (!prev || prev.state !== a.state)) {
      log('alert', `${a.rule} ${a.state}${describe(a)}`, a.state === 'resolved' ? 'ok' : a.severity);
    }
    for (const l of this.listeners) l();
  }

  onChange(cb: () => void) {
    this.listeners.add(cb);
    return () => void this.listeners.delete(cb);
  }

  sorted(filter: string): Alert[] {
    return [...this.alerts.values()]
      .filter((a) => filter === 'all' || a.state === filter)
      .sort((a, b) => RANK[a.state] - RANK[b.state] || b.since - a.since);
  }

  /** Marks of alerts whose labels name a series of `measurement.field` with these tags. */
  marksFor(measurement: string, field: string, tags: Record<string, string>): AlertMark[] {
    const out: AlertMark[] = [];
    for (const [, marks] of this.marks) {
      const l = marks[0]?.alert.labels;
      if (!l || l.__name__ !== `${measurement}.${field}`) continue;
      if (Object.entries(tags).every(([k, v]) => l[k] === undefined || l[k] === v)) out.push(...marks);
    }
    return out;
  }

  async ack(id: string, comment: string) {
    const by = localStorage.getItem('pulsewire.user') || 'dashboard';
    const a = await api<Alert>(`/api/v1/alerts/${enc(id)}/ack`, {
      method: 'POST',
      body: JSON.stringify({ by, comment }),
    });
    this.apply({ ...a, at: Math.max(a.at ?? 0, this.alerts.get(id)?.at ?? 0) }, false);
    log('alert', `acknowledged ${a.rule}${describe(a)} as ${by}`, 'ok');
  }

  async silence(a: Alert, minutes: number) {
    const matchers = Object.entries(a.labels)
      .filter(([k]) => k !== '__name__')
      .map(([name, value]) => ({ name, op: '=', value }));
    if (!matchers.some((m) => m.name === 'alertname')) matchers.push({ name: 'alertname', op: '=', value: a.rule });
    const now = Date.now();
    const s = await api<{ id: string }>('/api/v1/silences', {
      method: 'POST',
      body: JSON.stringify({
        matchers,
        starts_at: new Date(now).toISOString(),
        ends_at: new Date(now + minutes * 60_000).toISOString(),
        created_by: localStorage.getItem('pulsewire.user') || 'dashboard',
        comment: `silenced from the dashboard for ${minutes} min`,
      }),
    });
    log('alert', `silenced ${a.rule}${describe(a)} for ${minutes} min (silence ${s.id})`, 'info');
  }
}

function describe(a: Alert): string {
  const who = a.labels.host ?? a.labels.service ?? a.labels.source;
  return who ? ` on ${who}` : '';
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m ago`;
}

/** The alert feed panel. */
export function mountAlertFeed(el: HTMLElement, store: AlertStore) {
  el.innerHTML = `
    <header class="panel-head"><h2>Alerts</h2>
      <select data-testid="alert-filter" aria-label="Filter alerts" style="margin-left:auto">
        <option value="all">all</option><option value="firing">firing</option>
        <option value="pending">pending</option><option value="resolved">resolved</option>
      </select>
      <select data-testid="silence-duration" aria-label="Silence duration">
        <option value="15">silence 15m</option><option value="60" selected>silence 1h</option>
        <option value="240">silence 4h</option><option value="1440">silence 24h</option>
      </select>
    </header>
    <div class="counts" data-testid="alert-counts"></div>
    <ul class="alert-list" data-testid="alert-list"></ul>`;
  const list = el.querySelector('ul')!;
  const filter = el.querySelector('[data-testid=alert-filter]') as HTMLSelectElement;
  const duration = el.querySelector('[data-testid=silence-duration]') as HTMLSelectElement;
  const counts = el.querySelector('.counts')!;
  let queued = false;
  const draw = () => {
    queued = false;
    const all = [...store.alerts.values()];
    const n = (s: string) => all.filter((a) => a.state === s).length;
    counts.textContent = `${n('firing')} firing · ${n('pending')} pending · ${n('resolved')} resolved`;
    const items = store.sorted(filter.value).slice(0, 200);
    if (!items.length) {
      list.innerHTML = '<li class="empty">No alerts.</li>';
      return;
    }
    list.replaceChildren(
      ...items.map((a) => {
        const li = document.createElement('li');
        li.className = `alert sev-${a.severity} st-${a.state}`;
        li.dataset.id = a.id;
        li.dataset.rule = a.rule;
        li.dataset.state = a.state;
        li.dataset.acked = a.ack ? 'true' : 'false';
        const labels = Object.entries(a.labels)
          .filter(([k]) => !['__name__', 'alertname', 'severity'].includes(k))
          .map(([k, v]) => `${k}=${v}`)
          .join(' ');
        const summary = a.annotations?.summary ?? '';
        const value = typeof a.value === 'number' ? a.value.toFixed(2) : '';
        li.innerHTML = `
          <div class="alert-top">
            <span class="sev">${a.severity}</span>
            <span class="state">${a.state}${a.flapping ? ' · flapping' : ''}</span>
            <strong class="rule"></strong>
            <span class="since" title="${new Date(a.since).toISOString()}">${ago(a.since)}</span>
          </div>
          <div class="alert-body"><span class="summary"></span> <code class="labels"></code>
            <span class="value">${value ? `value ${value}` : ''}</span></div>
          <div class="alert-actions">
            ${a.ack ? `<span class="acked" data-testid="acked">acked by <b></b></span>` : ''}
            ${a.state !== 'resolved' && !a.ack ? '<button data-act="ack">Acknowledge</button>' : ''}
            ${a.state !== 'resolved' ? '<button data-act="silence">Silence</button>' : ''}
          </div>`;
        (li.querySelector('.rule') as HTMLElement).textContent = a.rule;
        (li.querySelector('.summary') as HTMLElement).textContent = summary;
        (li.querySelector('.labels') as HTMLElement).textContent = labels;
        const b = li.querySelector('.acked b');
        if (b && a.ack) b.textContent = a.ack.by;
        return li;
      }),
    );
  };
  const schedule = () => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(draw);
    }
  };
  list.addEventListener('click', async (ev) => {
    const btn = (ev.target as HTMLElement).closest('button');
    const li = btn?.closest('li');
    const a = li && store.alerts.get(li.dataset.id!);
    if (!btn || !a) return;
    btn.disabled = true;
    try {
      if (btn.dataset.act === 'ack') await store.ack(a.id, 'acknowledged from the dashboard');
      else await store.silence(a, Number(duration.value));
    } catch (e) {
      log('error', `${btn.dataset.act} ${a.rule}: ${(e as Error).message}`);
      btn.disabled = false;
    }
  });
  filter.onchange = schedule;
  draw();
  const tick = setInterval(schedule, 5_000);
  const off = store.onChange(schedule);
  return () => {
    off();
    clearInterval(tick);
  };
}
