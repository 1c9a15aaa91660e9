import { describe, expect, it } from 'vitest';
import { BoundedQueue, PulsewireError, backoffCap, backoffDelay, judge, sseFingerprint, sseResumeId, isPattern } from '../../src/index.js';

describe('backoff', () => {
  const o = { minReconnectDelay: 100, maxReconnectDelay: 5000 };
  it('doubles the cap per attempt up to the maximum', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 10, 1000].map((n) => backoffCap(n, o))).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });
  it('draws uniformly in [0, cap] (full jitter)', () => {
    expect(backoffDelay(3, o, () => 0)).toBe(0);
    expect(backoffDelay(3, o, () => 0.5)).toBe(400);
    expect(backoffDelay(3, o, () => 0.9999999)).toBe(800);
    for (let i = 0; i < 1000; i++) {
      const d = backoffDelay(i % 12, o);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(backoffCap(i % 12, o));
    }
  });
});

describe('dedupe by position', () => {
  const held = { epoch: 'E', offset: 5 };
  it('judges each publication against the last delivered', () => {
    expect(judge(undefined, { epoch: 'E', offset: 9 })).toBe('deliver');
    expect(judge({ epoch: '', offset: 0 }, { epoch: 'E', offset: 1 })).toBe('deliver');
    expect(judge(held, { epoch: 'E', offset: 6 })).toBe('deliver');
    expect(judge(held, { epoch: 'E', offset: 5 })).toBe('duplicate');
    expect(judge(held, { epoch: 'E', offset: 2 })).toBe('duplicate');
    expect(judge(held, { epoch: 'E', offset: 8 })).toBe('gap');
    expect(judge(held, { epoch: 'F', offset: 1 })).toBe('reset');
  });
});

describe('offline queue', () => {
  it('keeps order and refuses past its bound with queue_full', () => {
    const q = new BoundedQueue<number>(3);
    q.push(1);
    q.push(2);
    q.push(3);
    expect(() => q.push(4)).toThrowError(PulsewireError);
    try {
      q.push(4);
    } catch (e) {
      expect((e as PulsewireError).code).toBe('queue_full');
    }
    expect(q.drain()).toEqual([1, 2, 3]);
    expect(q.size).toBe(0);
    q.push(5);
    expect(q.drain()).toEqual([5]);
    expect(() => new BoundedQueue(0).push(1)).toThrow(/full/);
  });
});

describe('SSE resume id', () => {
  it('matches the server encoding (FNV-1a fingerprint of sorted names)', () => {
    // The same values as crates/server/src/sse.rs computes: FNV-1a 32 over "a,b:c,".
    let h = 0x811c9dc5;
    for (const b of Buffer.from('a,b:c,')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    expect(sseFingerprint(['a', 'b:c'])).toBe(h.toString(16).padStart(8, '0'));
    const id = sseResumeId(['b:c', 'a'], new Map([['a', { epoch: 'E1', offset: 4 }]]));
    expect(id).toBe(`v1.${sseFingerprint(['a', 'b:c'])}.E1-4.-0`);
  });
  it('knows patterns', () => {
    expect(isPattern('a:*:c')).toBe(true);
    expect(isPattern('logs:>')).toBe(true);
    expect(isPattern('a:b*')).toBe(false);
  });
});
