import { createParser } from 'eventsource-parser';
import { PulsewireError } from './errors.js';

/** How a transport ended. `code` is the WebSocket close code (or the SSE `close` event's). */
export interface CloseInfo {
  code: number;
  reason: string;
  /** True when the transport never opened (failed upgrade, refused request). */
  failedToOpen: boolean;
  /** For a refused SSE request (or a failed upgrade, where known): the server's error. */
  error?: PulsewireError;
}

export interface TransportHandlers {
  open(): void;
  frame(frame: Record<string, unknown>): void;
  /** Anything at all arrived (a frame, an SSE comment): the peer is alive. */
  activity(): void;
  close(info: CloseInfo): void;
}

export interface Transport {
  readonly name: 'websocket' | 'sse';
  /** SSE with nothing to stream: a readiness check stands for the connection. */
  readonly probe?: boolean;
  send(frame: object): void;
  close(code?: number, reason?: string): void;
}

/** The parts of the WHATWG WebSocket this client uses (browsers, Node 22+, and `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

// Loose on purpose: implementations differ in their overloads (`ws` takes more arguments) and
// event types; the client only uses what `WebSocketLike` lists.
// biome-ignore lint: any
export type WebSocketConstructor = new (url: string, ...rest: any[]) => any;

export type FetchLike = typeof fetch;

export function openWebSocket(Ctor: WebSocketConstructor, url: string, h: TransportHandlers): Transport {
  const ws = new Ctor(url) as WebSocketLike;
  let opened = false;
  let ended = false;
  const end = (info: CloseInfo) => {
    if (ended) return;
    ended = true;
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Not null: `ws` (Node) closed during its handshake emits an `error` after this, and an
    // `error` without a listener is thrown as an uncaught exception.
    ws.onerror = () => {};
    h.close(info);
  };
  ws.onopen = () => {
    opened = true;
    h.open();
  };
  ws.onmessage = (ev) => {
    h.activity();
    if (typeof ev.data !== 'string') return;
    let frame: unknown;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (frame && typeof frame === 'object') h.frame(frame as Record<string, unknown>);
  };
  ws.onclose = (ev) => end({ code: ev.code, reason: ev.reason, failedToOpen: !opened });
  // An error is always followed by a close event; the close carries what we report.
  ws.onerror = () => {};
  // `ws` (Node) exposes the server's ping frames: they prove the connection alive too.
  const emitter = ws as unknown as { on?: (ev: string, fn: () => void) => void };
  if (typeof emitter.on === 'function') emitter.on('ping', () => h.activity());
  return {
    name: 'websocket',
    send(frame) {
      if (ws.readyState === 1) ws.send(JSON.stringify(frame));
    },
    close(code = 1000, reason = '') {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
      end({ code, reason, failedToOpen: !opened });
    },
  };
}

/**
 * An SSE stream read with `fetch` (so that it can carry an `Authorization` header, and works the
 * same in browsers and Node), parsed with `eventsource-parser`. The stream does not reconnect by
 * itself: the client does, with its own backoff and resume id.
 */
export function openSse(fetchFn: FetchLike, url: string, headers: Record<string, string>, h: TransportHandlers): Transport {
  const abort = new AbortController();
  let ended = false;
  let opened = false;
  const end = (info: CloseInfo) => {
    if (ended) return;
    ended = true;
    abort.abort();
    h.close(info);
  };
  (async () => {
    let res: Response;
    try {
      res = await fetchFn(url, {
        headers: { Accept: 'text/event-stream', ...headers },
        signal: abort.signal,
        cache: 'no-store',
      });
    } catch (e) {
      end({ code: 1006, reason: String((e as Error)?.message ?? e), failedToOpen: true });
      return;
    }
    if (!res.ok || !res.body) {
      const error = await errorFromResponse(res);
      end({ code: closeCodeForStatus(res.status, error.code), reason: error.message, failedToOpen: true, error });
      return;
    }
    opened = true;
    h.open();
    let closeFrame: { code: number; reason: string } | undefined;
    const parser = createParser({
      onEvent(ev) {
        h.activity();
        let frame: Record<string, unknown>;
        try {
          frame = JSON.parse(ev.data) as Record<string, unknown>;
        } catch {
          return;
        }
        if (ev.event === 'close' || frame.type === 'close') {
          closeFrame = { code: Number(frame.code) || 1000, reason: String(frame.reason ?? '') };
          return;
        }
        h.frame(frame);
      },
      onComment() {
        h.activity();
      },
    });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
        if (closeFrame) break;
      }
    } catch {
      // aborted or the connection broke: reported below
    }
    end(closeFrame ? { ...closeFrame, failedToOpen: false } : { code: 1006, reason: 'stream ended', failedToOpen: !opened });
  })();
  return {
    name: 'sse',
    send() {
      throw new PulsewireError('no_transport', 'SSE cannot send frames');
    },
    close(code = 1000, reason = '') {
      end({ code, reason, failedToOpen: !opened });
    },
  };
}

/** Reads a `{"code","message"}` error body (docs/protocol.md) from a failed HTTP answer. */
export async function errorFromResponse(res: Response): Promise<PulsewireError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // no body
  }
  try {
    const body = JSON.parse(text) as { code?: string; message?: string; error?: string };
    if (body && typeof body.code === 'string') return new PulsewireError(body.code, body.message ?? body.code, res.status);
    if (body && typeof body.error === 'string') return new PulsewireError('http', body.error, res.status);
  } catch {
    // not JSON
  }
  return new PulsewireError('http', `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`, res.status);
}

/** The close code a refused SSE request stands for, so both transports end the same way. */
function closeCodeForStatus(status: number, code: string): number {
  if (code === 'token_expired') return 4002;
  if (status === 401) return 4001;
  if (code === 'shutting_down') return 4010;
  if (status === 429) return 4029;
  return 1006;
}
