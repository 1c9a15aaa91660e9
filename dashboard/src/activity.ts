// The activity log: recent events of every kind (alerts, anomalies, connection changes), newest
// first, bounded.

export interface Activity {
  at: number;
  kind: 'alert' | 'anomaly' | 'connection' | 'info' | 'error';
  text: string;
  level?: string;
}

const MAX = 300;
const entries: Activity[] = [];
const listeners = new Set<() => void>();

export function log(kind: Activity['kind'], text: string, level?: string) {
  entries.unshift({ at: Date.now(), kind, text, level });
  if (entries.length > MAX) entries.length = MAX;
  for (const l of listeners) l();
}

export function recent(): readonly Activity[] {
  return entries;
}

export function onActivity(cb: () => void) {
  listeners.add(cb);
  return () => void listeners.delete(cb);
}

export function renderLog(el: HTMLElement, limit = MAX) {
  let queued = false;
  const draw = () => {
    queued = false;
    const frag = document.createDocumentFragment();
    for (const e of entries.slice(0, limit)) {
      const li = document.createElement('li');
      li.className = `act act-${e.kind}${e.level ? ` lvl-${e.level}` : ''}`;
      li.dataset.kind = e.kind;
      const t = document.createElement('time');
      t.textContent = new Date(e.at).toLocaleTimeString();
      const k = document.createElement('span');
      k.className = 'act-kind';
      k.textContent = e.kind;
      const m = document.createElement('span');
      m.textContent = e.text;
      li.append(t, k, m);
      frag.append(li);
    }
    el.replaceChildren(frag);
  };
  draw();
  // Redrawn at most once per frame however many events arrive.
  return onActivity(() => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(draw);
    }
  });
}
