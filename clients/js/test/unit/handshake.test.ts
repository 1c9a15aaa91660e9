// `disconnect()` while a WebSocket of the `ws` package is still in its handshake: `ws` then
// emits an `error` event after the close, which must not escape as an uncaught exception. A
// local TCP server that accepts and never answers holds the handshake open (no Pulsewire
// server needed).
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PulsewireClient } from '../../src/index.js';

const sockets = new Set<net.Socket>();
let server: net.Server | undefined;

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await new Promise<void>((done) => (server ? server.close(() => done()) : done()));
  server = undefined;
});

it('disconnect() during the handshake ends quietly', async () => {
  let accepted!: () => void;
  const connected = new Promise<void>((r) => (accepted = r));
  server = net.createServer((s) => {
    sockets.add(s);
    accepted();
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    const client = new PulsewireClient({ url: `http://127.0.0.1:${port}`, WebSocket, transports: ['websocket'] });
    const states: string[] = [];
    client.on('state', (s) => states.push(s.state));
    await connected;
    expect(client.state).toBe('connecting');
    client.disconnect();
    // `ws` emits its error on a later tick.
    await new Promise((r) => setTimeout(r, 50));
    expect(uncaught).toEqual([]);
    expect(client.state).toBe('disconnected');
    expect(states).toEqual(['disconnected']);
  } finally {
    process.off('uncaughtException', onUncaught);
  }
});
