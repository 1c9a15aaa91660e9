import { describe, expect, it } from 'vitest';

import { align, emptyPoints, insertPoint, lowerBound, nearest, trimBefore, type Points } from '../src/merge';

const of = (pairs: [number, number][]): Points => {
  const p = emptyPoints();
  for (const [t, v] of pairs) insertPoint(p, t, v, 0, false);
  return p;
};

describe('insertPoint', () => {
  it('keeps points in time order whatever order they come in', () => {
    const p = of([
      [3000, 3],
      [1000, 1],
      [2000, 2],
      [5000, 5],
      [4000, 4],
    ]);
    expect(p.ts).toEqual([1000, 2000, 3000, 4000, 5000]);
    expect(p.v).toEqual([1, 2, 3, 4, 5]);
  });

  it('deduplicates by timestamp: the later value wins (history then the same point live)', () => {
    const p = of([[1000, 1]]);
    insertPoint(p, 1000, 7, 0, true);
    insertPoint(p, 1000, 8, 0, false);
    expect(p).toEqual({ ts: [1000], v: [8], n: [1] });
  });

  it('folds live points into their bucket as a running mean on aggregated ranges', () => {
    const p = emptyPoints();
    // A history bucket at 0 (the query's avg), then live points in it and in the next bucket.
    insertPoint(p, 0, 10, 5000, false);
    insertPoint(p, 1200, 20, 5000, true);
    insertPoint(p, 4999, 30, 5000, true);
    insertPoint(p, 5000, 1, 5000, true);
    insertPoint(p, 7500, 3, 5000, true);
    expect(p.ts).toEqual([0, 5000]);
    expect(p.v).toEqual([20, 2]);
    expect(p.n).toEqual([3, 2]);
  });

  it('replaces history buckets instead of averaging them', () => {
    const p = emptyPoints();
    insertPoint(p, 5000, 10, 5000, false);
    insertPoint(p, 5000, 12, 5000, false);
    expect(p).toEqual({ ts: [5000], v: [12], n: [1] });
  });
});

describe('trimBefore', () => {
  it('drops what left the window and keeps the rest aligned', () => {
    const p = of([
      [1000, 1],
      [2000, 2],
      [3000, 3],
    ]);
    expect(trimBefore(p, 2000)).toBe(1);
    expect(p).toEqual({ ts: [2000, 3000], v: [2, 3], n: [1, 1] });
    expect(trimBefore(p, 0)).toBe(0);
    expect(trimBefore(p, 9000)).toBe(2);
    expect(p).toEqual(emptyPoints());
  });
});

describe('align', () => {
  it('uses the shared timestamps when every series has the same', () => {
    const a = of([
      [1, 10],
      [2, 20],
    ]);
    const b = of([
      [1, 11],
      [2, 21],
    ]);
    expect(align([a, b])).toEqual({ xs: [1, 2], ys: [[10, 20], [11, 21]] });
  });

  it('puts every point on the union of timestamps, null where a series has none', () => {
    const a = of([
      [1, 10],
      [3, 30],
    ]);
    const b = of([
      [2, 21],
      [3, 31],
      [4, 41],
    ]);
    expect(align([a, b])).toEqual({
      xs: [1, 2, 3, 4],
      ys: [
        [10, null, 30, null],
        [null, 21, 31, 41],
      ],
    });
  });

  it('does not take series with the same count, first and last time for the same timestamps', () => {
    const a = of([
      [1, 10],
      [2, 20],
      [4, 40],
    ]);
    const b = of([
      [1, 11],
      [3, 31],
      [4, 41],
    ]);
    const { xs, ys } = align([a, b]);
    expect(xs).toEqual([1, 2, 3, 4]);
    expect(ys[1]).toEqual([11, null, 31, 41]);
  });

  it('copies, so later merges do not change what was drawn', () => {
    const a = of([[1, 10]]);
    const { xs, ys } = align([a]);
    insertPoint(a, 2, 20, 0, true);
    expect(xs).toEqual([1]);
    expect(ys).toEqual([[10]]);
    expect(align([])).toEqual({ xs: [], ys: [] });
  });
});

describe('lowerBound and nearest', () => {
  it('finds the insertion point', () => {
    expect([0, 1, 2, 3, 4, 5].map((x) => lowerBound([1, 2, 2, 4], x))).toEqual([0, 0, 1, 3, 3, 4]);
  });
  it('finds the point an anomaly dot sits on', () => {
    const ts = [1000, 2000, 3000];
    expect(nearest(ts, 2000)).toBe(1);
    expect(nearest(ts, 2400)).toBe(1);
    expect(nearest(ts, 2600)).toBe(2);
    expect(nearest(ts, 2500)).toBe(1);
    expect(nearest(ts, 0)).toBe(0);
    expect(nearest(ts, 9000)).toBe(2);
    expect(nearest([], 1)).toBe(-1);
  });
});
