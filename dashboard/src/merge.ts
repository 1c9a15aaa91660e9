// The charts' data handling, without DOM or uPlot: points kept per series in time order,
// history and live points merged (deduplicated by timestamp, folded into buckets on aggregated
// ranges), trimmed to the window, aligned on one shared x axis, and the point an anomaly dot
// sits on. Unit-tested in dashboard/test/.

/** One series' points in time order; `n` counts the points folded into each bucket. */
export interface Points {
  ts: number[];
  v: number[];
  n: number[];
}

export const emptyPoints = (): Points => ({ ts: [], v: [], n: [] });

/** The first index whose value is at least `x` (`a` sorted ascending). */
export function lowerBound(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Merges one point. History points (`live` false) replace a point at the same time. Live points
 * on an aggregated range (`stepMs` > 0) go into the bucket their time falls in, as a running
 * mean, as the query's `avg` would give; on raw ranges they replace a point at the same time.
 */
export function insertPoint(s: Points, ts: number, v: number, stepMs: number, live: boolean) {
  if (stepMs && live) ts = Math.floor(ts / stepMs) * stepMs;
  const last = s.ts.length - 1;
  // Points mostly arrive in order: append without searching.
  const i = last >= 0 && ts > s.ts[last] ? last + 1 : lowerBound(s.ts, ts);
  if (s.ts[i] === ts) {
    if (stepMs && live) {
      s.v[i] = (s.v[i] * s.n[i] + v) / (s.n[i] + 1);
      s.n[i]++;
    } else s.v[i] = v;
    return;
  }
  s.ts.splice(i, 0, ts);
  s.v.splice(i, 0, v);
  s.n.splice(i, 0, 1);
}

/** Drops the points before `start`; returns how many. */
export function trimBefore(s: Points, start: number): number {
  const cut = lowerBound(s.ts, start);
  if (cut > 0) {
    s.ts.splice(0, cut);
    s.v.splice(0, cut);
    s.n.splice(0, cut);
  }
  return cut;
}

/**
 * One shared x axis for several series: the union of their timestamps, and each series' values
 * on it (null where it has no point). When every series has the same timestamps (points written
 * together), the first one's are the axis.
 */
export function align(list: Points[]): { xs: number[]; ys: (number | null)[][] } {
  if (!list.length) return { xs: [], ys: [] };
  const first = list[0].ts;
  const same = list.every((s) => s.ts.length === first.length && s.ts.every((t, i) => t === first[i]));
  if (same) return { xs: first.slice(), ys: list.map((s) => s.v.slice()) };
  const all = new Set<number>();
  for (const s of list) for (const t of s.ts) all.add(t);
  const xs = [...all].sort((a, b) => a - b);
  const index = new Map<number, number>();
  xs.forEach((t, i) => index.set(t, i));
  const ys = list.map((s) => {
    const y: (number | null)[] = new Array(xs.length).fill(null);
    for (let i = 0; i < s.ts.length; i++) y[index.get(s.ts[i])!] = s.v[i];
    return y;
  });
  return { xs, ys };
}

/** The index of the point nearest `ts` (the earlier one on a tie), or -1 without points. */
export function nearest(ts: number[], at: number): number {
  if (!ts.length) return -1;
  const i = lowerBound(ts, at);
  if (i >= ts.length) return ts.length - 1;
  if (i > 0 && at - ts[i - 1] <= ts[i] - at) return i - 1;
  return i;
}
