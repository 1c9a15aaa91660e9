// The connection state machine, driven through a FAKE WebSocket (FakeSocket below): no server,
// no network. Integration tests run the same paths against the real server.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PulsewireClient, type StateChange, type UnrecoveredContext } from '../../src/index.js';
import { FakeSocket } from '../support/fake-socket.js';

const last = () => FakeSocket.all[FakeSocket.all.length - 1]!;

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function make(opts: Record<string, unknown> = {}) {
  return new PulsewireClient({
    url: 'http://pulsewire.test',
    WebSocket: FakeSocket,
    transports: ['websocket'],
    random: () => 0.5,
    ...opts,
  });
}

describe('state machine (fake socket)', () => {
  it('goes connecting -> connected -> connecting on loss, with backoff, and resubscribes with since', async () => {
    const c = make({ minReconnectDelay: 1000, maxReconnectDelay: 8000 });
    const states: string[] = [];
    c.on('state', (s: StateChange) => states.push(s.state));
    await vi.advanceTimersByTimeAsync(0);
    expect(c.state).toBe('connecting');
    const s1 = last();
    expect(s1.url).toBe('ws://pulsewire.test/ws');
    s1.open();
    expect(c.state).toBe('connected');
    const sub = c.subscribe<number>('a');
    const got: number[] = [];
    sub.on('message', (p) => got.push(p.data));
    const cmd = s1.last('subscribe');
    expect(cmd).toMatchObject({ channels: ['a'] });
    expect(cmd.since).toBeUndefined();
    s1.receive({ type: 'subscribed', id: cmd.id, channels: { a: { epoch: 'E', offset: 2 } } });
    s1.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 3, ts: 1, data: 3 });
    s1.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 3, ts: 1, data: 3 });
    expect(got).toEqual([3]);

    const disc: number[] = [];
    c.on('disconnected', (d) => disc.push(d.code));
    s1.drop(4008);
    expect(disc).toEqual([4008]);
    expect(c.state).toBe('connecting');
    // random 0.5 of cap 1000: 500 ms.
    await vi.advanceTimersByTimeAsync(499);
    expect(FakeSocket.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeSocket.all).toHaveLength(2);
    const s2 = last();
    s2.open();
    const again = s2.last('subscribe');
    expect(again.since).toEqual({ a: { epoch: 'E', offset: 3 } });
    s2.receive({ type: 'subscribed', id: again.id, channels: { a: { epoch: 'E', offset: 5, recovered: true, replayed: 2 } } });
    // The replay may repeat what was delivered; only new offsets come through.
    for (const o of [3, 4, 5]) s2.receive({ type: 'message', channel: 'a', epoch: 'E', offset: o, ts: 1, data: o });
    expect(got).toEqual([3, 4, 5]);
    expect(states).toEqual(['connected', 'disconnected', 'connecting', 'connected']);
  });

  it('emits unrecovered when the server could not resume, then goes on from the new position', async () => {
    const c = make();
    await vi.advanceTimersByTimeAsync(0);
    last().open();
    const sub = c.subscribe('a', { since: { epoch: 'OLD', offset: 7 } });
    const lost: UnrecoveredContext[] = [];
    sub.on('unrecovered', (u) => lost.push(u));
    const cmd = last().last('subscribe');
    expect(cmd.since).toEqual({ a: { epoch: 'OLD', offset: 7 } });
    last().receive({ type: 'subscribed', id: cmd.id, channels: { a: { epoch: 'NEW', offset: 2, recovered: false, replayed: 0 } } });
    expect(lost).toEqual([{ channel: 'a', reason: 'not_recovered', from: { epoch: 'OLD', offset: 7 }, to: { epoch: 'NEW', offset: 2 } }]);
    expect(sub.position).toEqual({ epoch: 'NEW', offset: 2 });
  });

  it('resubscribes from the last position on a gap, holding live messages back', async () => {
    const c = make();
    await vi.advanceTimersByTimeAsync(0);
    const s = last();
    s.open();
    const sub = c.subscribe<number>('a');
    const got: number[] = [];
    sub.on('message', (p) => got.push(p.offset));
    s.receive({ type: 'subscribed', id: s.last('subscribe').id, channels: { a: { epoch: 'E', offset: 0 } } });
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 1, ts: 1, data: 1 });
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 4, ts: 1, data: 4 });
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 5, ts: 1, data: 5 });
    expect(got).toEqual([1]);
    const unsub = s.last('unsubscribe');
    s.receive({ type: 'unsubscribed', id: unsub.id, channels: ['a'] });
    await vi.advanceTimersByTimeAsync(0);
    const re = s.last('subscribe');
    expect(re.since).toEqual({ a: { epoch: 'E', offset: 1 } });
    s.receive({ type: 'subscribed', id: re.id, channels: { a: { epoch: 'E', offset: 5, recovered: true, replayed: 4 } } });
    for (const o of [2, 3, 4, 5]) s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: o, ts: 1, data: o });
    expect(got).toEqual([1, 2, 3, 4, 5]);
  });

  it('pings when idle and closes a connection that stays silent', async () => {
    const c = make({ pingInterval: 1000, pongTimeout: 500 });
    await vi.advanceTimersByTimeAsync(0);
    const s = last();
    s.open();
    const disc: { code: number }[] = [];
    c.on('disconnected', (d) => disc.push(d));
    await vi.advanceTimersByTimeAsync(1000);
    const ping = s.last('ping');
    expect(ping).toBeDefined();
    s.receive({ type: 'pong', id: ping.id });
    await vi.advanceTimersByTimeAsync(1400);
    expect(disc).toEqual([]);
    await vi.advanceTimersByTimeAsync(200);
    expect(disc).toEqual([expect.objectContaining({ code: 4005 })]);
  });

  it('does not reconnect after disconnect() or after a close code that needs a fix', async () => {
    const c = make();
    await vi.advanceTimersByTimeAsync(0);
    last().open();
    const disc: { code: number; willReconnect: boolean }[] = [];
    c.on('disconnected', (d) => disc.push(d));
    last().drop(4003);
    expect(disc).toEqual([expect.objectContaining({ code: 4003, willReconnect: false })]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(1);
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    last().open();
    c.disconnect();
    expect(c.state).toBe('disconnected');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all).toHaveLength(2);
  });

  it('rejects an unanswered publish with `disconnected` when the connection drops, and queues while offline', async () => {
    const c = make({ offlineQueueSize: 1 });
    await vi.advanceTimersByTimeAsync(0);
    const queued = c.publish('a', 1);
    await expect(c.publish('a', 2)).rejects.toMatchObject({ code: 'queue_full' });
    const s = last();
    s.open();
    const p = s.last('publish');
    expect(p).toMatchObject({ channel: 'a', data: 1 });
    s.receive({ type: 'published', id: p.id, channel: 'a', epoch: 'E', offset: 1 });
    await expect(queued).resolves.toEqual({ channel: 'a', epoch: 'E', offset: 1 });
    const inflight = c.publish('a', 3);
    s.drop();
    await expect(inflight).rejects.toMatchObject({ code: 'disconnected' });
  });

  it('unsubscribe() stops delivery at once and tells the server', async () => {
    const c = make();
    await vi.advanceTimersByTimeAsync(0);
    const s = last();
    s.open();
    const sub = c.subscribe('a');
    const got: unknown[] = [];
    sub.on('message', (p) => got.push(p));
    s.receive({ type: 'subscribed', id: s.last('subscribe').id, channels: { a: { epoch: 'E', offset: 0 } } });
    const done = sub.unsubscribe();
    expect(s.last('unsubscribe')).toMatchObject({ channels: ['a'] });
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 1, ts: 1, data: 1 });
    expect(got).toEqual([]);
    s.receive({ type: 'unsubscribed', id: s.last('unsubscribe').id, channels: ['a'] });
    await done;
    expect(c.getSubscription('a')).toBeUndefined();
  });
});

describe('connect timeout (fake socket, fake timers)', () => {
  /** FAKE: a fetch that answers `GET /ready` with 200 and records every URL. */
  function readyFetch(urls: string[]) {
    return (async (url: string) => {
      urls.push(String(url));
      return new Response('ok', { status: 200 });
    }) as unknown as typeof fetch;
  }

  it('gives up on an upgrade that never answers and falls back to SSE', async () => {
    const urls: string[] = [];
    const c = make({ transports: ['websocket', 'sse'], fetch: readyFetch(urls), connectTimeout: 5000 });
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.code));
    await vi.advanceTimersByTimeAsync(0);
    const s = last();
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(4999);
    expect(urls).toEqual([]);
    expect(s.readyState).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    // The hanging socket is closed, and the next transport tried at once (no backoff).
    expect(s.readyState).toBe(3);
    expect(errors).toEqual(['connect_timeout']);
    await vi.advanceTimersByTimeAsync(0);
    expect(urls).toEqual(['http://pulsewire.test/ready']);
    expect(c.state).toBe('connected');
    expect(c.transportInUse).toBe('sse');
    c.disconnect();
  });

  it('bounds the wait for the `connected` reply to the connect frame too', async () => {
    const urls: string[] = [];
    const c = make({ transports: ['websocket', 'sse'], fetch: readyFetch(urls), token: 'T', connectTimeout: 3000, requestTimeout: 60_000 });
    await vi.advanceTimersByTimeAsync(0);
    const s = last();
    s.open();
    expect(s.last('connect')).toMatchObject({ token: 'T' });
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(2999);
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(s.readyState).toBe(3);
    expect(urls).toEqual(['http://pulsewire.test/ready']);
    expect(c.transportInUse).toBe('sse');
    c.disconnect();
  });

  it('does not fire once connected, and retries with backoff when the only transport hangs', async () => {
    const c = make({ connectTimeout: 1000, minReconnectDelay: 1000, maxReconnectDelay: 1000 });
    await vi.advanceTimersByTimeAsync(0);
    last().open();
    expect(c.state).toBe('connected');
    await vi.advanceTimersByTimeAsync(5000);
    expect(c.state).toBe('connected');
    expect(FakeSocket.all).toHaveLength(1);
    last().drop();
    // Backoff (500 ms at random 0.5), then a socket that never opens: closed after 1000 ms,
    // then another attempt after the backoff.
    await vi.advanceTimersByTimeAsync(500);
    expect(FakeSocket.all).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeSocket.all[1]!.readyState).toBe(3);
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(500);
    expect(FakeSocket.all).toHaveLength(3);
    c.disconnect();
  });

  it('rejects a connectTimeout that is not a positive number', () => {
    expect(() => make({ connectTimeout: 0 })).toThrow(expect.objectContaining({ code: 'invalid_option' }));
    expect(() => make({ connectTimeout: Number.NaN })).toThrow(/connectTimeout/);
  });
});

describe('share() (fake socket)', () => {
  it('holds one subscription for many handles, and ends it with the last', async () => {
    const c = make();
    await vi.advanceTimersByTimeAsync(0);
    const s = last();
    s.open();
    const a = c.share<number>('a');
    const b = c.share<number>('a');
    expect(s.sent.filter((f) => f.type === 'subscribe')).toHaveLength(1);
    expect(a.subscription).toBe(b.subscription);
    const gotA: number[] = [];
    const gotB: number[] = [];
    a.on('message', (p) => gotA.push(p.data));
    b.on('message', (p) => gotB.push(p.data));
    s.receive({ type: 'subscribed', id: s.last('subscribe').id, channels: { a: { epoch: 'E', offset: 0 } } });
    expect(a.state).toBe('subscribed');
    expect(b.state).toBe('subscribed');
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 1, ts: 1, data: 1 });
    expect(gotA).toEqual([1]);
    expect(gotB).toEqual([1]);
    // Another part of the application cannot take the channel for itself.
    expect(() => c.subscribe('a')).toThrow(expect.objectContaining({ code: 'already_subscribed' }));

    await a.unsubscribe();
    expect(a.state).toBe('unsubscribed');
    expect(b.state).toBe('subscribed');
    expect(s.sent.filter((f) => f.type === 'unsubscribe')).toHaveLength(0);
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 2, ts: 1, data: 2 });
    expect(gotA).toEqual([1]);
    expect(gotB).toEqual([1, 2]);
    expect(c.getSubscription('a')?.state).toBe('subscribed');

    const done = b.unsubscribe();
    expect(s.last('unsubscribe')).toMatchObject({ channels: ['a'] });
    s.receive({ type: 'message', channel: 'a', epoch: 'E', offset: 3, ts: 1, data: 3 });
    expect(gotB).toEqual([1, 2]);
    s.receive({ type: 'unsubscribed', id: s.last('unsubscribe').id, channels: ['a'] });
    await done;
    expect(c.getSubscription('a')).toBeUndefined();
    // A later share() subscribes again.
    const again = c.share('a');
    expect(s.sent.filter((f) => f.type === 'subscribe')).toHaveLength(2);
    void again.unsubscribe().catch(() => {});
    c.disconnect();
  });

  it('does not share a channel taken with subscribe()', async () => {
    const c = make();
    await vi.advanceTimersByTimeAsync(0);
    last().open();
    const sub = c.subscribe('x');
    expect(() => c.share('x')).toThrow(expect.objectContaining({ code: 'already_subscribed' }));
    void sub.unsubscribe().catch(() => {});
    c.disconnect();
  });
});
