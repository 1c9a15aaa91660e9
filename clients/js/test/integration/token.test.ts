// Connection tokens against the real server with [auth] on: a 4002 at connect makes the client
// ask `getToken` again, and `token_expiring` is answered with a `refresh`.
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PulsewireClient, type TokenContext } from '../../src/index.js';
import { PulsewireServer } from '../support/server.js';
import { until } from '../support/wait.js';

const SECRET = 'test-secret-of-at-least-32-bytes-for-hs256!';

/** An HS256 JWT, signed here with node:crypto (the server verifies it with `jsonwebtoken`). */
function sign(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

let server: PulsewireServer;
beforeAll(async () => {
  server = await new PulsewireServer({
    config: `[auth]\nenabled = true\n\n[auth.jwt]\nhmac_secret = "${SECRET}"\ndefault_tenant = "acme"\nexpiry_warning = "30s"\n`,
  }).start();
});
afterAll(async () => {
  await server?.stop();
});

it('gets a new token after 4002 and refreshes on token_expiring', async () => {
  const now = Math.floor(Date.now() / 1000);
  const reasons: TokenContext['reason'][] = [];
  const c = new PulsewireClient({
    url: server.url,
    WebSocket,
    minReconnectDelay: 20,
    getToken: ({ reason }) => {
      reasons.push(reason);
      // First an expired token (refused with 4002), then one that expires within the warning.
      const exp = reasons.length === 1 ? now - 3600 : reason === 'expiring' ? now + 3600 : now + 20;
      return sign({ sub: 'alice', exp });
    },
  });
  try {
    const codes: number[] = [];
    const errors: string[] = [];
    c.on('disconnected', (d) => codes.push(d.code));
    c.on('error', (e) => errors.push(e.code));
    const refreshed = new Promise<{ exp: number }>((r) => c.once('token_refreshed', r));
    await until(() => c.state === 'connected', 'connected');
    expect(c.connection).toMatchObject({ transport: 'websocket', user: 'alice', tenant: 'acme' });
    expect((await refreshed).exp).toBe(now + 3600);
    expect(reasons).toEqual(['connect', 'expired', 'expiring']);
    expect(errors).toContain('token_expired');
    // The connection lives on with its subscriptions after the refresh.
    const sub = c.subscribe<string>('room');
    const got: string[] = [];
    sub.on('message', (p) => got.push(p.data));
    await until(() => sub.state === 'subscribed', 'subscribed');
    await c.publish('room', 'hi');
    await until(() => got.length === 1, 'delivery');
  } finally {
    c.disconnect();
  }
});

it('over SSE, reconnects with a new token when the stream ends with 4002, and resumes', async () => {
  const sse = await new PulsewireServer({
    config: `[auth]\nenabled = true\n\n[auth.jwt]\nhmac_secret = "${SECRET}"\ndefault_tenant = "acme"\nleeway = "0s"\n`,
  }).start();
  const reasons: TokenContext['reason'][] = [];
  const c = new PulsewireClient({
    url: sse.url,
    transports: ['sse'],
    minReconnectDelay: 20,
    getToken: ({ reason }) => {
      reasons.push(reason);
      // The first token expires in about two seconds; the next ones last.
      const exp = Math.floor(Date.now() / 1000) + (reasons.length === 1 ? 2 : 3600);
      return sign({ sub: 'bob', exp });
    },
  });
  try {
    const codes: number[] = [];
    c.on('disconnected', (d) => codes.push(d.code));
    const sub = c.subscribe<number>('feed');
    const got: number[] = [];
    sub.on('message', (p) => got.push(p.data));
    const contexts: { recovered?: boolean }[] = [];
    sub.on('subscribed', (x) => contexts.push(x));
    await until(() => sub.state === 'subscribed', 'subscribed over SSE');
    // The server refuses HTTP publishes without an API key: publish over a WebSocket with a token.
    const pub = new PulsewireClient({ url: sse.url, WebSocket, token: sign({ sub: 'pub', exp: Math.floor(Date.now() / 1000) + 3600 }) });
    try {
      await pub.publish('feed', 1);
      await until(() => got.length === 1, 'first');
      await until(() => codes.length === 1, 'the stream ended at expiry', 10_000);
      expect(codes).toEqual([4002]);
      await pub.publish('feed', 2);
      await until(() => got.length === 2 && contexts.length === 2, 'resumed with a new token', 10_000);
      expect(reasons).toEqual(['connect', 'expired']);
      expect(got).toEqual([1, 2]);
      expect(contexts[1]).toMatchObject({ recovered: true });
    } finally {
      pub.disconnect();
    }
  } finally {
    c.disconnect();
    await sse.stop();
  }
});
