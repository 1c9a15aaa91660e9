// @vitest-environment happy-dom
// The React hooks against the real server: useChannel, useSeries (query, then live points),
// useAlerts, useConnectionState.
import { act, cleanup, configure, renderHook, waitFor } from '@testing-library/react';
import { createElement, type ReactNode } from 'react';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PulsewireClient } from '../../src/index.js';
import { PulsewireProvider, useAlerts, useChannel, useConnectionState, useSeries } from '../../src/react/index.js';
import { PulsewireServer } from '../support/server.js';

// waitFor's default of 1 s is short for a loaded machine running a debug server.
configure({ asyncUtilTimeout: 10_000 });

let server: PulsewireServer;
let client: PulsewireClient;
const wrapper = ({ children }: { children?: ReactNode }) => createElement(PulsewireProvider, { client }, children);

beforeAll(async () => {
  server = await new PulsewireServer().start();
  client = new PulsewireClient({ url: server.url, WebSocket });
});
afterEach(() => cleanup());
afterAll(async () => {
  client?.disconnect();
  await server?.stop();
});

async function write(lines: string): Promise<void> {
  const r = await fetch(`${server.url}/write?db=t`, { method: 'POST', body: lines });
  expect(r.status).toBe(204);
}

it('useConnectionState and useChannel follow the connection and the channel', async () => {
  const { result } = renderHook(() => ({ state: useConnectionState(), ch: useChannel<{ v: number }>('react:ch') }), { wrapper });
  await waitFor(() => expect(result.current.state).toBe('connected'));
  await waitFor(() => expect(result.current.ch.subscribed).toBe(true));
  await act(async () => {
    await server.publish('react:ch', { v: 7 });
  });
  await waitFor(() => expect(result.current.ch.last?.data.v).toBe(7));
  expect(result.current.ch.messages).toHaveLength(1);
});

it('useSeries loads history from the query API, then appends live points', async () => {
  const t0 = Date.now() - 60_000;
  await write(`rcpu,host=a usage=1 ${t0}000000\nrcpu,host=b usage=5 ${t0}000000\n`);
  const { result, unmount } = renderHook(() => useSeries({ measurement: 'rcpu', field: 'usage', tags: { host: 'a' }, from: 'now-1h' }), { wrapper });
  await waitFor(() => expect(result.current.loading).toBe(false));
  expect(result.current.error).toBeUndefined();
  expect(result.current.series).toHaveLength(1);
  expect(result.current.series[0]!.points).toEqual([[t0, 1]]);
  // Live points arrive once the subscription is confirmed.
  await waitFor(() => expect(client.getSubscription('metrics:rcpu')?.state).toBe('subscribed'));
  await act(async () => {
    await write(`rcpu,host=a usage=2 ${t0 + 1000}000000\nrcpu,host=b usage=6 ${t0 + 1000}000000\n`);
  });
  await waitFor(() => expect(result.current.series[0]!.points).toEqual([[t0, 1], [t0 + 1000, 2]]));
  unmount();
  await waitFor(() => expect(client.getSubscription('metrics:rcpu')).toBeUndefined());
});

it('useAlerts lists alerts and follows the alerts channel', async () => {
  const r = await fetch(`${server.url}/api/v1/rules`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'react_hot', kind: 'threshold', expr: 'avg(rtemp.v)', window: '1m', op: '>', threshold: 50, severity: 'critical' }),
  });
  expect(r.status).toBe(201);
  const { result } = renderHook(() => useAlerts(), { wrapper });
  await waitFor(() => expect(result.current.loading).toBe(false));
  await waitFor(() => expect(client.getSubscription('alerts')?.state).toBe('subscribed'));
  expect(result.current.alerts.filter((a) => a.rule === 'react_hot')).toEqual([]);
  await act(async () => {
    await write(`rtemp v=99 ${Date.now()}000000\n`);
  });
  await waitFor(() => expect(result.current.alerts.find((a) => a.rule === 'react_hot')?.state).toBe('firing'));
  const id = result.current.alerts.find((a) => a.rule === 'react_hot')!.id;
  const acked = await result.current.ack(id, 'alice', 'looking');
  expect(acked.ack?.by).toBe('alice');
});

it('hooks share a channel: two useSeries of one measurement, useAlerts beside useChannel("alerts")', async () => {
  const t0 = Date.now() - 30_000;
  await write(`rshared,host=a x=1,y=10 ${t0}000000\n`);
  const { result, unmount } = renderHook(
    () => ({
      x: useSeries({ measurement: 'rshared', field: 'x', from: 'now-1h' }),
      y: useSeries({ measurement: 'rshared', field: 'y', from: 'now-1h' }),
      ch: useChannel('alerts'),
      alerts: useAlerts(),
    }),
    { wrapper },
  );
  await waitFor(() => expect(result.current.x.loading || result.current.y.loading).toBe(false));
  await waitFor(() => expect(client.getSubscription('metrics:rshared')?.state).toBe('subscribed'));
  await act(async () => {
    await write(`rshared,host=a x=2,y=20 ${t0 + 1000}000000\n`);
  });
  await waitFor(() => expect(result.current.x.series[0]?.points).toEqual([[t0, 1], [t0 + 1000, 2]]));
  await waitFor(() => expect(result.current.y.series[0]?.points).toEqual([[t0, 10], [t0 + 1000, 20]]));
  await waitFor(() => expect(result.current.ch.subscribed).toBe(true));
  expect(result.current.alerts.error).toBeUndefined();
  unmount();
  await waitFor(() => expect(client.getSubscription('metrics:rshared')).toBeUndefined());
  await waitFor(() => expect(client.getSubscription('alerts')).toBeUndefined());
});
