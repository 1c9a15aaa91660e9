// Starts the real Pulsewire binary ($PULSEWIRE_BIN) on a free loopback port with a temp data dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function binary(): string {
  const bin = process.env.PULSEWIRE_BIN;
  if (!bin) {
    throw new Error(
      'PULSEWIRE_BIN is not set: build the server (cargo build -p pulsewire) and set PULSEWIRE_BIN=target/debug/pulsewire',
    );
  }
  return bin;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  /** TOML configuration written to a file and passed with --config. */
  config?: string;
  env?: Record<string, string>;
  port?: number;
  dataDir?: string;
}

export class PulsewireServer {
  private child: ChildProcess | undefined;
  private output = '';
  readonly dataDir: string;
  private readonly ownsDir: boolean;
  port = 0;

  constructor(private readonly opts: ServerOptions = {}) {
    this.ownsDir = !opts.dataDir;
    this.dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'pulsewire-js-'));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.port = this.port || this.opts.port || (await freePort());
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', join(this.dataDir, 'data')];
    if (this.opts.config) {
      const file = join(this.dataDir, 'pulsewire.toml');
      writeFileSync(file, this.opts.config);
      args.push('--config', file);
    }
    // PULSEWIRE_* variables are configuration to the server (PULSEWIRE_BIN would be an unknown key).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PULSEWIRE_')));
    const child = spawn(binary(), args, {
      env: { ...env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...this.opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.output = '';
    child.stdout!.on('data', (d) => (this.output += d));
    child.stderr!.on('data', (d) => (this.output += d));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`pulsewire exited with ${child.exitCode}:\n${this.output}`);
      try {
        const r = await fetch(`${this.url}/ready`);
        if (r.ok) return this;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`pulsewire did not become ready:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL: in-memory history is lost. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  async publish(channel: string, data: unknown): Promise<{ epoch: string; offset: number }> {
    const r = await fetch(`${this.url}/api/v1/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    if (!r.ok) throw new Error(`publish: ${r.status} ${await r.text()}`);
    return (await r.json()) as { epoch: string; offset: number };
  }
}
