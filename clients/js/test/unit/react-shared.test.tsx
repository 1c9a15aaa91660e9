// @vitest-environment happy-dom
// Hooks that watch one channel together (useChannel twice, useAlerts beside useChannel('alerts')),
// driven through a FAKE WebSocket and a FAKE fetch: no server. The same hooks run against the real
// server in test/integration/react.test.tsx.
import { act, cleanup, renderHook } from '@testing-library/react';
import { createElement, type ReactNode } from 'react';
import { afterEach, expect, it } from 'vitest';
import { PulsewireClient } from '../../src/index.js';
import { PulsewireProvider, useAlerts, useChannel } from '../../src/react/index.js';
import { FakeSocket } from '../support/fake-socket.js';

/** FAKE: `GET /api/v1/alerts` answers an empty list. */
const fakeFetch = (async () => new Response(JSON.stringify({ alerts: [] }), { status: 200 })) as unknown as typeof fetch;

afterEach(() => {
  cleanup();
  FakeSocket.all = [];
});

async function connected() {
  const client = new PulsewireClient({ url: 'http://pulsewire.test', WebSocket: FakeSocket, fetch: fakeFetch, transports: ['websocket'] });
  await act(async () => {
    await new Promise((r) => setTimeout(r, 0));
  });
  const s = FakeSocket.all[0]!;
  act(() => s.open());
  const wrapper = ({ children }: { children?: ReactNode }) => createElement(PulsewireProvider, { client }, children);
  return { client, s, wrapper };
}

it('two useChannel on one channel: one subscription, delivery to both, the last unmount ends it', async () => {
  const { client, s, wrapper } = await connected();
  const one = renderHook(() => useChannel<number>('shared:a'), { wrapper });
  const two = renderHook(() => useChannel<number>('shared:a'), { wrapper });
  expect(s.of('subscribe')).toHaveLength(1);
  act(() => s.receive({ type: 'subscribed', id: s.of('subscribe')[0]!.id, channels: { 'shared:a': { epoch: 'E', offset: 0 } } }));
  expect(one.result.current.subscribed).toBe(true);
  expect(two.result.current.subscribed).toBe(true);
  act(() => s.receive({ type: 'message', channel: 'shared:a', epoch: 'E', offset: 1, ts: 1, data: 1 }));
  expect(one.result.current.messages.map((p) => p.data)).toEqual([1]);
  expect(two.result.current.messages.map((p) => p.data)).toEqual([1]);

  // A third one mounted later joins the running subscription and shows it as subscribed.
  const three = renderHook(() => useChannel<number>('shared:a'), { wrapper });
  expect(three.result.current.subscribed).toBe(true);
  three.unmount();

  one.unmount();
  expect(s.of('unsubscribe')).toHaveLength(0);
  act(() => s.receive({ type: 'message', channel: 'shared:a', epoch: 'E', offset: 2, ts: 1, data: 2 }));
  expect(two.result.current.messages.map((p) => p.data)).toEqual([1, 2]);
  expect(client.getSubscription('shared:a')?.state).toBe('subscribed');

  two.unmount();
  expect(s.of('unsubscribe')).toHaveLength(1);
  expect(s.of('unsubscribe')[0]).toMatchObject({ channels: ['shared:a'] });
  expect(client.getSubscription('shared:a')).toBeUndefined();
  client.disconnect();
});

it('useAlerts beside useChannel("alerts") does not throw and both see the events', async () => {
  const { client, s, wrapper } = await connected();
  const { result } = renderHook(() => ({ ch: useChannel<{ id: string }>('alerts'), alerts: useAlerts() }), { wrapper });
  expect(s.of('subscribe')).toHaveLength(1);
  await act(async () => {
    await new Promise((r) => setTimeout(r, 0));
  });
  expect(result.current.alerts.loading).toBe(false);
  act(() => s.receive({ type: 'subscribed', id: s.of('subscribe')[0]!.id, channels: { alerts: { epoch: 'E', offset: 0 } } }));
  const alert = { id: 'r1/x', rule: 'r1', state: 'firing' };
  act(() => s.receive({ type: 'message', channel: 'alerts', epoch: 'E', offset: 1, ts: 1, data: alert }));
  expect(result.current.ch.last?.data.id).toBe('r1/x');
  expect(result.current.alerts.alerts.map((a) => a.id)).toEqual(['r1/x']);
  client.disconnect();
});
