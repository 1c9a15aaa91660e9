// Against the real server ($PULSEWIRE_BIN): delivery, resume after a cut connection, recovery
// failure after a restart, SSE fallback, unsubscribe, offline queue, backoff timing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PulsewireClient, type Subscription, type ClientOptions, type Publication, type SubscribedContext, type UnrecoveredContext } from '../../src/index.js';
import { PulsewireServer } from '../support/server.js';
import { TcpProxy } from '../support/proxy.js';
import { until } from '../support/wait.js';

let server: PulsewireServer;
const clients: PulsewireClient[] = [];
const proxies: TcpProxy[] = [];

beforeAll(async () => {
  server = await new PulsewireServer().start();
});
afterAll(async () => {
  await server?.stop();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  for (const p of proxies.splice(0)) await p.stop();
});

function client(opts: Partial<ClientOptions> & { url: string }): PulsewireClient {
  const c = new PulsewireClient({ WebSocket, minReconnectDelay: 20, maxReconnectDelay: 200, ...opts });
  clients.push(c);
  return c;
}

async function proxy(): Promise<TcpProxy> {
  const p = await new TcpProxy(server.port).start();
  proxies.push(p);
  return p;
}

function collect<T>(sub: Subscription<T>): Publication<T>[] {
  const got: Publication<T>[] = [];
  sub.on('message', (p) => got.push(p));
  return got;
}


/** The server's id of the one connection subscribed to `channel` (GET /api/v1/clients). */
async function clientIdOf(channel: string): Promise<number> {
  const r = await fetch(`${server.url}/api/v1/clients`);
  const body = (await r.json()) as { clients: { id: number; subscriptions: string[] }[] };
  const ids = body.clients.filter((x) => x.subscriptions.includes(channel)).map((x) => x.id);
  expect(ids).toHaveLength(1);
  return ids[0]!;
}

/** Makes the server drop a connection (DELETE /api/v1/clients/{id}). */
async function kick(id: number): Promise<void> {
  const r = await fetch(`${server.url}/api/v1/clients/${id}`, { method: 'DELETE' });
  expect(r.status).toBe(204);
}

/** Subscribes, receives 1..3, has the server drop the connection, publishes 4..6 meanwhile,
 *  and checks the SDK reconnected by itself and resumed exactly. */
async function resumesAfterServerDisconnect(c: PulsewireClient, channel: string): Promise<void> {
  const s = c.subscribe<number>(channel);
  const got = collect(s);
  const contexts: SubscribedContext[] = [];
  s.on('subscribed', (x) => contexts.push(x));
  const disconnects: { code: number; willReconnect: boolean }[] = [];
  c.on('disconnected', (d) => disconnects.push({ code: d.code, willReconnect: d.willReconnect }));
  await until(() => contexts.length === 1, 'subscribed');
  for (let n = 1; n <= 3; n++) await server.publish(channel, n);
  await until(() => got.length === 3, 'first three');
  await kick(await clientIdOf(channel));
  for (let n = 4; n <= 6; n++) await server.publish(channel, n);
  await until(() => disconnects.length === 1, 'the server closed the connection');
  expect(disconnects[0]).toEqual({ code: 4012, willReconnect: true });
  await until(() => contexts.length === 2, 'resubscribed');
  expect(contexts[1]).toMatchObject({ resubscribed: true, recovered: true });
  await server.publish(channel, 7);
  await until(() => got.length >= 7, 'all seven', 10_000);
  await new Promise((r) => setTimeout(r, 200));
  expect(got.map((x) => x.data)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  expect(got.map((x) => x.offset)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  expect(c.state).toBe('connected');
}

describe('WebSocket', () => {
  it('delivers HTTP publications to a subscriber, typed', async () => {
    const c = client({ url: server.url });
    const sub = c.subscribe<{ n: number }>('it:deliver');
    const got = collect(sub);
    const confirmed = new Promise<SubscribedContext>((r) => sub.once('subscribed', r));
    const ctx = await confirmed;
    expect(c.transportInUse).toBe('websocket');
    expect(ctx.resubscribed).toBe(false);
    for (let n = 1; n <= 3; n++) await server.publish('it:deliver', { n });
    await until(() => got.length === 3, 'three publications');
    expect(got.map((p) => p.data.n)).toEqual([1, 2, 3]);
    expect(got.map((p) => p.offset)).toEqual([1, 2, 3]);
    expect(sub.position).toEqual({ epoch: got[0]!.epoch, offset: 3 });
  });

  it('finds `ws` by itself on Node without a global WebSocket', async () => {
    // Node 20 has no global WebSocket (22 has): the client must have loaded `ws` itself.
    if (Number(process.versions.node.split('.')[0]) < 22) expect((globalThis as { WebSocket?: unknown }).WebSocket).toBeUndefined();
    const c = new PulsewireClient({ url: server.url });
    clients.push(c);
    await until(() => c.state === 'connected', 'connected');
    expect(c.transportInUse).toBe('websocket');
    expect(await c.ping()).toBeGreaterThanOrEqual(0);
  });

  it('publishes over the WebSocket and to pattern subscribers', async () => {
    const c = client({ url: server.url });
    const pat = c.subscribe<string>('it:pat:*');
    const got = collect(pat);
    await new Promise((r) => pat.once('subscribed', r));
    const r = await c.publish('it:pat:a', 'hello', { priority: 'high' });
    expect(r.offset).toBe(1);
    await until(() => got.length === 1, 'pattern delivery');
    expect(got[0]).toMatchObject({ channel: 'it:pat:a', pattern: 'it:pat:*', data: 'hello', priority: 'high' });
  });

  it('resumes every channel after the connection is cut, with no loss and no duplicates', async () => {
    const p = await proxy();
    const c = client({ url: p.url });
    const subs = ['it:resume:a', 'it:resume:b'].map((ch) => c.subscribe<number>(ch));
    const got = subs.map((s) => collect(s));
    const contexts: SubscribedContext[] = [];
    for (const s of subs) s.on('subscribed', (x) => contexts.push(x));
    await until(() => contexts.length === 2, 'both subscribed');
    for (let n = 1; n <= 3; n++) for (const s of subs) await server.publish(s.channel, n);
    await until(() => got.every((g) => g.length === 3), 'first three');
    const disconnects: number[] = [];
    c.on('disconnected', (d) => disconnects.push(d.code));
    // Cut, and keep the client out while more is published.
    p.refuse = true;
    expect(p.cutAll()).toBe(1);
    await until(() => c.state !== 'connected', 'loss noticed');
    for (let n = 4; n <= 6; n++) for (const s of subs) await server.publish(s.channel, n);
    p.refuse = false;
    await until(() => contexts.length === 4, 'both resubscribed');
    for (let n = 7; n <= 8; n++) for (const s of subs) await server.publish(s.channel, n);
    await until(() => got.every((g) => g.length >= 8), 'all eight', 10_000);
    for (const g of got) {
      expect(g.map((x) => x.data)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(g.map((x) => x.offset)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    }
    const resumed = contexts.slice(2);
    for (const x of resumed) expect(x).toMatchObject({ resubscribed: true, recovered: true, replayed: 3 });
    expect(disconnects).toEqual([1006]);
  });

  it('reconnects and resumes without loss after the server disconnects it (4012)', async () => {
    await resumesAfterServerDisconnect(client({ url: server.url }), 'it:kick:ws');
  });

  it('emits recovered:false when the server lost the history (restart)', async () => {
    const own = await new PulsewireServer().start();
    try {
      const p = await new TcpProxy(own.port).start();
      proxies.push(p);
      const c = client({ url: p.url });
      const sub = c.subscribe<number>('it:restart');
      const got = collect(sub);
      const lost: UnrecoveredContext[] = [];
      const contexts: SubscribedContext[] = [];
      sub.on('unrecovered', (u) => lost.push(u));
      sub.on('subscribed', (x) => contexts.push(x));
      await until(() => contexts.length === 1, 'subscribed');
      await own.publish('it:restart', 1);
      await until(() => got.length === 1, 'first');
      const before = sub.position!;
      // Kill the server (history is in memory) and start a new one behind the same proxy.
      await own.kill();
      const fresh = await new PulsewireServer().start();
      try {
        p.upstreamPort = fresh.port;
        await until(() => contexts.length === 2, 'resubscribed', 10_000);
        expect(contexts[1]).toMatchObject({ resubscribed: true, recovered: false });
        expect(lost).toHaveLength(1);
        expect(lost[0]).toMatchObject({ channel: 'it:restart', reason: 'not_recovered', from: before });
        expect(lost[0]!.to!.epoch).not.toBe(before.epoch);
        // It goes on live from the new position.
        await fresh.publish('it:restart', 2);
        await until(() => got.length === 2, 'live after restart');
        expect(got[1]!.offset).toBe(1);
      } finally {
        await fresh.stop();
      }
    } finally {
      await own.stop();
    }
  });

  it('unsubscribe stops delivery on the server and locally', async () => {
    const c = client({ url: server.url });
    const gone = c.subscribe<number>('it:unsub:gone');
    const kept = c.subscribe<number>('it:unsub:kept');
    const goneGot = collect(gone);
    const keptGot = collect(kept);
    await until(() => gone.state === 'subscribed' && kept.state === 'subscribed', 'subscribed');
    await gone.unsubscribe();
    expect(gone.state).toBe('unsubscribed');
    // The server no longer lists the subscription.
    const clientsList = (await (await fetch(`${server.url}/api/v1/clients`)).json()) as { clients: { subscriptions: string[] | number }[] };
    expect(JSON.stringify(clientsList)).not.toContain('it:unsub:gone');
    await server.publish('it:unsub:gone', 1);
    await server.publish('it:unsub:kept', 1);
    // Publications are delivered in order per connection: once the later one arrived, the
    // earlier one would have too.
    await until(() => keptGot.length === 1, 'kept channel delivery');
    expect(goneGot).toEqual([]);
    // It can be subscribed again.
    const again = c.subscribe<number>('it:unsub:gone');
    await until(() => again.state === 'subscribed', 'resubscribed');
  });

  it('queues publications while offline and rejects with queue_full past the bound', async () => {
    const p = await proxy();
    p.refuse = true;
    const c = client({ url: p.url, offlineQueueSize: 2, transports: ['websocket'] });
    const a = c.publish('it:queue', 'a');
    const b = c.publish('it:queue', 'b');
    await expect(c.publish('it:queue', 'c')).rejects.toMatchObject({ name: 'PulsewireError', code: 'queue_full' });
    expect(c.queued).toBe(2);
    p.refuse = false;
    const [ra, rb] = await Promise.all([a, b]);
    expect([ra.offset, rb.offset]).toEqual([1, 2]);
    const h = await c.history<string>('it:queue');
    expect(h.publications.map((x) => x.data)).toEqual(['a', 'b']);
  });

  it('waits with exponential backoff and full jitter, then gives up after maxReconnectAttempts', async () => {
    const p = await proxy();
    p.refuse = true;
    // random() = 1 gives the cap itself: 50, 100, 200, 200 ms.
    const c = client({
      url: p.url,
      transports: ['websocket'],
      minReconnectDelay: 50,
      maxReconnectDelay: 200,
      maxReconnectAttempts: 4,
      random: () => 0.999999,
      autoConnect: false,
    });
    const delays: number[] = [];
    c.on('connecting', (x) => delays.push(x.delay));
    c.connect();
    const gaveUp = new Promise<{ willReconnect: boolean }>((r) => c.once('disconnected', r));
    expect((await gaveUp).willReconnect).toBe(false);
    expect(c.state).toBe('disconnected');
    expect(delays).toEqual([0, 50, 100, 200, 200]);
    // One first try and four reconnects reached the proxy, each no sooner than its delay.
    expect(p.accepted).toHaveLength(5);
    const gaps = p.accepted.slice(1).map((t, i) => t - p.accepted[i]!);
    gaps.forEach((g, i) => expect(g).toBeGreaterThanOrEqual(delays[i + 1]! - 5));
  });
});

describe('SSE', () => {
  it('connects over SSE with no subscription yet, then streams the first one', async () => {
    const c = client({ url: server.url, transports: ['sse'] });
    await until(() => c.state === 'connected', 'connected without channels');
    expect(c.transportInUse).toBe('sse');
    const pat = c.subscribe<string>('it:sseonly:*');
    const got = collect(pat);
    await until(() => pat.state === 'subscribed', 'pattern-only stream');
    await server.publish('it:sseonly:x', 'x');
    await until(() => got.length === 1, 'delivery');
  });

  it('does not count as connected over SSE when the server is down', async () => {
    const p = await proxy();
    p.refuse = true;
    const c = client({ url: p.url, transports: ['sse'], maxReconnectAttempts: 1 });
    const d = await new Promise<{ willReconnect: boolean }>((r) => c.once('disconnected', r));
    expect(d.willReconnect).toBe(false);
    expect(p.accepted.length).toBe(2);
  });

  it('falls back to SSE when the WebSocket upgrade is blocked, and publishes over HTTP', async () => {
    const p = await proxy();
    p.blockWebSocket = true;
    const c = client({ url: p.url });
    const sub = c.subscribe<{ n: number }>('it:sse:a');
    const got = collect(sub);
    await until(() => sub.state === 'subscribed', 'subscribed over SSE');
    expect(c.transportInUse).toBe('sse');
    expect(p.requests.some((r) => r.startsWith('GET /ws'))).toBe(true);
    const r = await c.publish('it:sse:a', { n: 1 });
    expect(r.offset).toBe(1);
    await server.publish('it:sse:a', { n: 2 });
    await until(() => got.length === 2, 'two over SSE');
    expect(got.map((x) => x.data.n)).toEqual([1, 2]);
  });

  it('falls back to SSE after connectTimeout when the WebSocket upgrade is never answered', async () => {
    const p = await proxy();
    p.holdWebSocket = true;
    const c = client({ url: p.url, connectTimeout: 300 });
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.code));
    const sub = c.subscribe<{ n: number }>('it:sse:held');
    const got = collect(sub);
    const t0 = Date.now();
    await until(() => sub.state === 'subscribed', 'subscribed over SSE');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(c.transportInUse).toBe('sse');
    expect(errors).toContain('connect_timeout');
    expect(p.requests.some((r) => r.startsWith('GET /ws'))).toBe(true);
    await server.publish('it:sse:held', { n: 1 });
    await until(() => got.length === 1, 'delivered over SSE');
    expect(got[0]!.data.n).toBe(1);
  });

  it('reconnects and resumes without loss after the server ends the stream (4012)', async () => {
    await resumesAfterServerDisconnect(client({ url: server.url, transports: ['sse'] }), 'it:kick:sse');
  });

  it('resumes over SSE after a cut, and keeps positions when channels are added', async () => {
    const p = await proxy();
    p.blockWebSocket = true;
    const c = client({ url: p.url, transports: ['sse'] });
    let losses = 0;
    c.on('disconnected', () => losses++);
    const a = c.subscribe<number>('it:sse:r1');
    const gotA = collect(a);
    const ctxA: SubscribedContext[] = [];
    a.on('subscribed', (x) => ctxA.push(x));
    await until(() => ctxA.length === 1, 'a subscribed');
    await server.publish('it:sse:r1', 1);
    await until(() => gotA.length === 1, 'a first');
    // A second subscription reopens the stream with both channels: `a` resumes, nothing repeats.
    const b = c.subscribe<number>('it:sse:r2');
    const gotB = collect(b);
    await until(() => ctxA.length === 2 && b.state === 'subscribed', 'stream reopened');
    expect(ctxA[1]).toMatchObject({ recovered: true, replayed: 0 });
    p.refuse = true;
    expect(p.cutAll()).toBe(1);
    await until(() => losses === 1, 'loss noticed');
    await server.publish('it:sse:r1', 2);
    await server.publish('it:sse:r2', 1);
    p.refuse = false;
    await until(() => gotA.length === 2 && gotB.length === 1, 'resumed over SSE');
    // Every resubscription of `a` resumed (the stream was reopened, then cut and reopened).
    expect(ctxA.length).toBeGreaterThanOrEqual(3);
    for (const x of ctxA.slice(1)) expect(x).toMatchObject({ resubscribed: true, recovered: true });
    expect(gotA.map((x) => x.data)).toEqual([1, 2]);
    expect(gotB.map((x) => x.offset)).toEqual([1]);
    // Patterns stream over SSE too.
    const pat = c.subscribe<number>('it:sse:*');
    const gotPat = collect(pat);
    await until(() => pat.state === 'subscribed', 'pattern subscribed over SSE');
    await server.publish('it:sse:r9', 9);
    await until(() => gotPat.length === 1, 'pattern delivery over SSE');
    expect(gotPat[0]).toMatchObject({ channel: 'it:sse:r9', pattern: 'it:sse:*', data: 9 });
    await pat.unsubscribe();
    // Unsubscribing over SSE reopens without the channel; nothing more arrives for it.
    await b.unsubscribe();
    await server.publish('it:sse:r2', 2);
    await server.publish('it:sse:r1', 3);
    await until(() => gotA.length === 3, 'a third');
    expect(gotB).toHaveLength(1);
  });
});
