// A TCP proxy between the client and the server, so that tests can cut connections the way a
// network does (no close frame), refuse new ones, or block the WebSocket upgrade as some
// corporate proxies do, without the server's help.
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private server: Server;
  private pairs = new Set<[Socket, Socket]>();
  /** Refuse every new connection (accept, then reset at once). */
  refuse = false;
  /** Answer `GET /ws` requests with 403 instead of forwarding them. */
  blockWebSocket = false;
  /** Hold `GET /ws` requests open without ever answering (a proxy that swallows the upgrade). */
  holdWebSocket = false;
  /** Connections accepted (including refused ones), with the time of each. */
  readonly accepted: number[] = [];
  /** Requests seen, by their first line. */
  readonly requests: string[] = [];
  port = 0;

  constructor(public upstreamPort: number) {
    this.server = createServer((client) => this.onClient(client));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  private sockets = new Set<Socket>();

  private onClient(client: Socket): void {
    this.accepted.push(Date.now());
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    if (this.refuse) {
      client.resetAndDestroy();
      return;
    }
    client.once('data', (first) => {
      const line = first.toString('latin1').split('\r\n', 1)[0] ?? '';
      this.requests.push(line);
      if (this.blockWebSocket && /^GET \/ws[ ?]/.test(line)) {
        client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      if (this.holdWebSocket && /^GET \/ws[ ?]/.test(line)) return;
      const upstream = connect(this.upstreamPort, '127.0.0.1');
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    client.on('error', () => {});
  }

  /** Cuts every open connection at once, with a reset: no close frame reaches either side. */
  cutAll(): number {
    const n = this.pairs.size;
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
    return n;
  }

  get open(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    this.cutAll();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
