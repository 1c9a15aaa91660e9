// End-to-end tests of the dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the real `pulsewire` binary ($PW_BIN) reached through a TCP proxy
// that the tests can cut. Run by crates/pulsewire/tests/dashboard_browser.rs, or by hand:
//   PW_BIN=target/debug/pulsewire npm run test:e2e      (in dashboard/)
// Screenshots and the frame-time figures go to $PW_ARTIFACTS (default ../target/dashboard-e2e).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = fileURLToPath(new URL('.', import.meta.url));
const BIN = process.env.PW_BIN;
const CHROMIUM = process.env.PW_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = resolve(process.env.PW_ARTIFACTS ?? join(here, '../../target/dashboard-e2e'));

const children = [];
let api; // the server's own address (tests write and publish there directly)
let proxy;
let context;
let page;
const dirs = [];

/** A TCP proxy in front of the server: `cut()` ends every connection, `block` refuses new ones. */
function startProxy(target) {
  const sockets = new Set();
  const p = {
    block: false,
    url: '',
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
  };
  const srv = net.createServer((client) => {
    if (p.block) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.hostname);
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  p.close = () => new Promise((r) => srv.close(r));
  return new Promise((r) =>
    srv.listen(0, '127.0.0.1', () => {
      p.url = `http://127.0.0.1:${srv.address().port}`;
      r(p);
    }),
  );
}

async function http(method, path, body) {
  const resp = await fetch(`${api}${path}`, {
    method,
    body: typeof body === 'string' || body === undefined ? body : JSON.stringify(body),
    headers: typeof body === 'object' ? { 'content-type': 'application/json' } : {},
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

const write = (lines) => http('POST', '/write?db=e2e&precision=ms', lines.join('\n'));

async function until(what, fn, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const chart = (selector) => page.locator(`[data-testid=chart][data-selector='${selector}']`);
const dataOf = async (selector, name) => Number(await chart(selector).getAttribute(`data-${name}`));
const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });

/** Starts `pulsewire serve` on a free loopback port with a fresh data directory. */
async function startServer(env, data = mkdtempSync(join(tmpdir(), 'pulsewire-e2e-'))) {
  dirs.push(data);
  let log = '';
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', data], {
    env: { ...process.env, PULSEWIRE_COLLECTOR__ENABLED: 'false', PULSEWIRE_LOG__LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  child.stderr.on('data', (d) => (log += d));
  const url = await new Promise((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`pulsewire did not start; log:\n${log}`)), 20_000);
    child.stdout.on('data', (d) => {
      log += d;
      const m = /is serving on (http:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(t);
        ok(m[1]);
      }
    });
    child.on('exit', (code) => fail(new Error(`pulsewire exited with ${code}; log:\n${log}`)));
  });
  return { url, child, log: () => log };
}

before(async () => {
  assert.ok(BIN, 'PW_BIN must name the pulsewire binary (cargo test sets it)');
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  ({ url: api } = await startServer({}));
  proxy = await startProxy(new URL(api));
  const profile = mkdtempSync(join(tmpdir(), 'pulsewire-e2e-chromium-'));
  dirs.push(profile);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error('page error:', e));
});

after(async () => {
  await context?.close();
  await proxy?.close();
  // Each node shuts down (and stops writing its data directory) before the directory goes.
  await Promise.all(
    children.map(
      (c) =>
        new Promise((done) => {
          if (c.exitCode !== null || c.signalCode !== null) return done();
          const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
          c.once('exit', () => {
            clearTimeout(t);
            done();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const A = 'e2e.value{host="a"}';
const FLEET = 'fleet.v';

test('a chart loads history, then shows points ingested over HTTP as they arrive', async () => {
  const now = Date.now();
  await write([30, 20, 10].map((ago, i) => `e2e,host=a value=${10 + i} ${now - ago * 1000}`));
  const hash = `#/?range=5m&c=${encodeURIComponent(A)}&c=${encodeURIComponent(FLEET)}`;
  await page.goto(`${proxy.url}/${hash}`);
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor();
  await until('the history', async () => (await dataOf(A, 'points')) >= 3);
  // Each point written from now on can only reach the chart live (history was loaded once).
  let seen = 0;
  await until(
    'a live point',
    async () => {
      const ts = Date.now();
      await write([`e2e,host=a value=${40 + (seen++ % 5)} ${ts}`]);
      await new Promise((r) => setTimeout(r, 300));
      return (await dataOf(A, 'last-ts')) >= ts;
    },
    15_000,
  );
  assert.ok((await dataOf(A, 'points')) >= 4);
  await shot('chart-live');
});

test('an alert from a rule made over the API appears in the feed and on the chart, and is acknowledged', async () => {
  await http('POST', '/api/v1/rules', {
    name: 'e2e_high',
    kind: 'threshold',
    expr: 'last(e2e.value{host="a"})',
    window: '30s',
    op: '>',
    threshold: 90,
    severity: 'critical',
    annotations: { summary: 'value {{ $value | printf "%.1f" }} on {{ $labels.host }}' },
  });
  await write([`e2e,host=a value=99.04 ${Date.now()}`]);
  const row = page.locator('[data-testid=alert-list] li[data-rule=e2e_high][data-state=firing]');
  await row.waitFor({ timeout: 10_000 });
  assert.match(await row.innerText(), /critical/i);
  assert.equal(await row.locator('.summary').innerText(), 'value 99.0 on a');
  // The annotation on the chart: a line where the alert started, held and painted.
  await until('the alert mark on the chart', async () => (await dataOf(A, 'alert-marks')) >= 1);
  await until('the alert line drawn on the chart', async () => (await dataOf(A, 'alert-lines-drawn')) >= 1);
  await row.getByRole('button', { name: 'Acknowledge' }).click();
  await page.locator('[data-testid=alert-list] li[data-rule=e2e_high][data-acked=true]').waitFor();
  const id = await row.getAttribute('data-id');
  const stored = await http('GET', `/api/v1/alerts/${id}`);
  assert.equal(stored.ack?.by, 'dashboard');
  await shot('alert-acked');
});

test('a spike ingested over HTTP is scored as an anomaly and drawn on its chart, live and after a reload', async () => {
  const S = 'e2e_spike.value{host="s"}';
  await page.goto(`${proxy.url}/#/?range=5m&c=${encodeURIComponent(S)}`);
  await page.reload();
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor();
  await chart(S).locator('canvas').first().waitFor();
  // Five minutes of a steady value with a little noise, one point a second: the detector warms
  // up on it and finds nothing unusual.
  const spikeAt = Date.now() - 1000;
  const steady = [];
  for (let i = 0; i < 300; i++) steady.push(`e2e_spike,host=s value=${50 + ((i * 7919) % 13) / 10} ${spikeAt - (300 - i) * 1000}`);
  await write(steady);
  await until('the steady points on the chart', async () => (await dataOf(S, 'points')) >= 250);
  assert.equal(await dataOf(S, 'anomalies'), 0, 'nothing in the steady part is an anomaly');
  // Then a spike: pushed on `anomalies` and drawn as a dot on the series.
  await write([`e2e_spike,host=s value=500 ${spikeAt}`]);
  await until('the anomaly held by the chart', async () => (await dataOf(S, 'anomalies')) >= 1);
  await until('the anomaly dot drawn', async () => (await dataOf(S, 'anomaly-dots-drawn')) >= 1);
  await shot('anomaly-live');
  // After a reload the dot comes from the score kept in the store (`e2e_spike:anomaly`).
  await page.reload();
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor();
  await until('the stored anomaly drawn after a reload', async () => (await dataOf(S, 'anomaly-dots-drawn')) >= 1);
  const stored = await http('GET', `/api/v1/query?q=${encodeURIComponent('e2e_spike:anomaly.value{host="s"}')}&from=now-10m`);
  const spikeScore = stored.series[0].points.find(([ts]) => ts === spikeAt);
  assert.ok(spikeScore && spikeScore[1] >= 0.5, `the spike's score is stored: ${JSON.stringify(stored)}`);
});

test('after the server drops the connection the SDK reconnects and resumes without loss', async () => {
  await page.goto(`${proxy.url}/#/console`);
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor();
  await page.locator('[data-testid=subscribe-form] input').fill('e2e-resume');
  await page.locator('[data-testid=subscribe-form] button').click();
  const messages = page.locator('[data-testid=messages] li[data-channel=e2e-resume]');
  await until('the subscription', async () => {
    await http('POST', '/api/v1/publish', { channel: 'e2e-resume', data: { n: 1 } });
    return (await messages.count()) >= 1;
  });
  const before = await messages.count();
  const conn = page.locator('[data-testid=conn-state]');
  const resumedBefore = Number((await conn.getAttribute('data-resumed')) ?? 0);
  const lossesBefore = Number((await conn.getAttribute('data-disconnects')) ?? 0);
  // The page's connection is the SDK's, over WebSocket.
  assert.equal(await conn.getAttribute('data-transport'), 'websocket');

  // Cut every connection and keep refusing new ones while a publication is made.
  proxy.block = true;
  proxy.cut();
  // The SDK's `disconnected` event shows in the header, and stays there while it retries.
  await page.locator('[data-testid=conn-state][data-state=disconnected]').waitFor();
  assert.equal(Number(await conn.getAttribute('data-disconnects')), lossesBefore + 1, 'the SDK reported the loss once');
  await http('POST', '/api/v1/publish', { channel: 'e2e-resume', data: { n: 'during-outage' } });
  proxy.block = false;

  // Then its `connected` event. (Usually back on WebSocket; SSE if the proxy reopened between the
  // two transports of one attempt, which resumes the same way.)
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor({ timeout: 15_000 });
  // The publication made while disconnected is replayed from the channel's history.
  await page.locator('[data-testid=messages] li[data-channel=e2e-resume]', { hasText: 'during-outage' }).waitFor();
  assert.equal(await messages.count(), before + 1, 'one message more: replayed once, nothing duplicated');
  const resumed = Number(await conn.getAttribute('data-resumed'));
  assert.ok(resumed > resumedBefore, 'the SDK resubscribed with `since`');
  // What the SDK's `subscribed` event said for the channel: recovered, the one publication replayed.
  await until('the resume in the activity log', async () =>
    (await page.locator('[data-testid=activity] li', { hasText: 'resumed e2e-resume: recovered, 1 replayed' }).count()) === 1,
  );
  await page.waitForTimeout(500);
  assert.equal(await messages.count(), before + 1, 'still nothing duplicated');
  await shot('console-resumed');
});

test('after the server disconnects the page (DELETE /api/v1/clients/{id}) the SDK reconnects and resumes without loss', async () => {
  await page.goto(`${proxy.url}/#/console`);
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor();
  await page.locator('[data-testid=subscribe-form] input').fill('e2e-kick');
  await page.locator('[data-testid=subscribe-form] button').click();
  const messages = page.locator('[data-testid=messages] li[data-channel=e2e-kick]');
  await until('the subscription', async () => {
    await http('POST', '/api/v1/publish', { channel: 'e2e-kick', data: { n: 1 } });
    return (await messages.count()) >= 1;
  });
  const before = await messages.count();
  const conn = page.locator('[data-testid=conn-state]');
  const resumedBefore = Number((await conn.getAttribute('data-resumed')) ?? 0);
  const lossesBefore = Number((await conn.getAttribute('data-disconnects')) ?? 0);

  // The page's connection, as the server lists it: the one subscribed to the channel.
  const { clients } = await http('GET', '/api/v1/clients');
  const mine = clients.filter((c) => c.subscriptions.includes('e2e-kick'));
  assert.equal(mine.length, 1, `one connection subscribed: ${JSON.stringify(clients)}`);
  // The server closes it (4012, reconnect allowed); the network stays up.
  await http('DELETE', `/api/v1/clients/${mine[0].id}`);
  await http('POST', '/api/v1/publish', { channel: 'e2e-kick', data: { n: 'after-disconnect' } });

  await until('the SDK reported the loss', async () => Number(await conn.getAttribute('data-disconnects')) === lossesBefore + 1);
  await until('resubscribed with `since`', async () => Number(await conn.getAttribute('data-resumed')) > resumedBefore, 15_000);
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor({ timeout: 15_000 });
  await page.locator('[data-testid=messages] li[data-channel=e2e-kick]', { hasText: 'after-disconnect' }).waitFor();
  assert.equal(await messages.count(), before + 1, 'one message more: delivered once, nothing lost or duplicated');
  // A new connection took the old one's place.
  const after = (await http('GET', '/api/v1/clients')).clients.filter((c) => c.subscriptions.includes('e2e-kick'));
  assert.equal(after.length, 1);
  assert.notEqual(after[0].id, mine[0].id);
  await page.waitForTimeout(500);
  assert.equal(await messages.count(), before + 1, 'still nothing duplicated');
  assert.equal(Number(await conn.getAttribute('data-disconnects')), lossesBefore + 1, 'one loss, no reconnect loop');
});

test('fifty series updating every second stay smooth (frame times recorded)', async () => {
  await page.goto(`${proxy.url}/#/?range=5m&c=${encodeURIComponent(A)}&c=${encodeURIComponent(FLEET)}`);
  await page.reload();
  await page.locator('[data-testid=conn-state][data-state=connected]').waitFor();
  let stop = false;
  const writer = (async () => {
    let k = 0;
    while (!stop) {
      const ts = Date.now();
      const lines = [];
      for (let h = 0; h < 50; h++) {
        lines.push(`fleet,host=h${String(h).padStart(2, '0')} v=${50 + 30 * Math.sin((k + h) / 5) + Math.random() * 5} ${ts}`);
      }
      await write(lines);
      k++;
      await new Promise((r) => setTimeout(r, 1000 - (Date.now() - ts)));
    }
  })();
  try {
    await until('50 live series', async () => (await dataOf(FLEET, 'series')) === 50, 15_000);
    const measured = await page.evaluate(async (ms) => {
      const deltas = [];
      const longTasks = [];
      const po = new PerformanceObserver((l) => {
        for (const e of l.getEntries()) longTasks.push(e.duration);
      });
      po.observe({ entryTypes: ['longtask'] });
      const pointsBefore = Number(document.querySelector('[data-selector="fleet.v"]').dataset.points);
      const redraws = globalThis.__pulsewireRedrawMs;
      redraws.length = 0;
      await new Promise((done) => {
        const start = performance.now();
        let last = start;
        const frame = (t) => {
          deltas.push(t - last);
          last = t;
          if (t - start < ms) requestAnimationFrame(frame);
          else done();
        };
        requestAnimationFrame(frame);
      });
      po.disconnect();
      const pointsAfter = Number(document.querySelector('[data-selector="fleet.v"]').dataset.points);
      return { deltas: deltas.slice(1), longTasks, pointsBefore, pointsAfter, redraws: [...redraws] };
    }, 10_000);
    const sorted = [...measured.deltas].sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))];
    const work = [...measured.redraws].sort((a, b) => a - b);
    const qw = (p) => work[Math.min(work.length - 1, Math.floor(p * (work.length - 1)))] ?? 0;
    const figures = {
      series: 50,
      seconds: 10,
      frames: sorted.length,
      p50_ms: +q(0.5).toFixed(2),
      p99_ms: +q(0.99).toFixed(2),
      max_ms: +sorted[sorted.length - 1].toFixed(2),
      long_tasks: measured.longTasks.length,
      long_task_ms_total: +measured.longTasks.reduce((a, b) => a + b, 0).toFixed(1),
      points_added: measured.pointsAfter - measured.pointsBefore,
      redraws: work.length,
      redraw_p50_ms: +qw(0.5).toFixed(2),
      redraw_p99_ms: +qw(0.99).toFixed(2),
    };
    writeFileSync(join(ARTIFACTS, 'frames.json'), JSON.stringify(figures, null, 2));
    console.log(`frame times with 50 series at 1 Hz: ${JSON.stringify(figures)}`);
    await shot('fifty-series');
    assert.ok(figures.points_added >= 50 * 5, `the chart kept updating while measured (${figures.points_added} points)`);
    // Bounds loose enough for a loaded 2-core machine without a GPU, tight enough to catch a
    // chart that redraws everything on every message or blocks the main thread.
    assert.ok(figures.p50_ms < 40, `p50 frame time ${figures.p50_ms} ms`);
    assert.ok(figures.p99_ms < 100, `p99 frame time ${figures.p99_ms} ms`);
    assert.ok(figures.redraws >= 5, `the chart redrew as points arrived (${figures.redraws} redraws)`);
    assert.ok(figures.redraw_p99_ms < 50, `p99 redraw ${figures.redraw_p99_ms} ms`);
    assert.ok(figures.long_task_ms_total < 2_000, `long tasks took ${figures.long_task_ms_total} ms of 10 s`);
  } finally {
    stop = true;
    await writer;
  }
});

/** The node with authentication on, and its keys (made before it starts). */
let authed;

function createKey(data, tenant, scope, name) {
  const made = spawnSync(BIN, ['keys', 'create', '--data-dir', data, '--tenant', tenant, '--scope', scope, '--name', name], {
    encoding: 'utf8',
  });
  assert.equal(made.status, 0, made.stderr);
  return made.stdout.trim();
}

test('with authentication on, the page loads without a key, asks for one on 401 and then works', async () => {
  const data = mkdtempSync(join(tmpdir(), 'pulsewire-e2e-auth-'));
  // `default` is the operator tenant: its admin key sees the node's statistics.
  const key = createKey(data, 'default', 'read,ingest,admin,publish', 'e2e');
  const tenantAdmin = createKey(data, 'acme', 'read,admin', 'acme-admin');
  const tenantReader = createKey(data, 'acme', 'read', 'acme-reader');
  const { url } = await startServer({ PULSEWIRE_AUTH__ENABLED: 'true' }, data);
  authed = { url, tenantAdmin, tenantReader };
  const p = await context.newPage();
  try {
    await p.goto(`${url}/#/?range=5m&c=auth.v`);
    const dialog = p.locator('#token-dialog[open]');
    await dialog.waitFor();
    await p.screenshot({ path: join(ARTIFACTS, 'auth-dialog.png') });
    await dialog.locator('input').fill(key);
    await dialog.getByRole('button', { name: 'Save' }).click();
    await p.locator('[data-testid=conn-state][data-state=connected]').waitFor({ timeout: 15_000 });
    const chartEl = p.locator('[data-testid=chart][data-selector="auth.v"]');
    await until('a point written with the key on the chart', async () => {
      const resp = await fetch(`${url}/write?db=e2e&precision=ms`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
        body: `auth v=7 ${Date.now()}`,
      });
      assert.equal(resp.status, 204);
      await new Promise((r) => setTimeout(r, 300));
      return Number(await chartEl.getAttribute('data-points')) >= 1;
    });
    assert.equal(await p.evaluate(() => localStorage.getItem('pulsewire.token')), key);
    // The operator's admin key sees the node's statistics.
    await p.locator('[data-testid=stat-strip][data-access=node] [data-stat=connections]').waitFor();
  } finally {
    await p.close();
  }
});

test('a key outside the operator tenant sees what it may instead of node statistics, and is told why', async () => {
  assert.ok(authed, 'runs after the authentication test, on its node');
  const open = async (key, hash) => {
    const p = await context.newPage();
    await p.addInitScript((k) => localStorage.setItem('pulsewire.token', k), key);
    await p.goto(`${authed.url}/${hash}`);
    await p.locator('[data-testid=conn-state][data-state=connected]').waitFor({ timeout: 15_000 });
    return p;
  };
  const NOTICE = 'node statistics need an operator admin key';
  // An admin key of another tenant: its tenant's connections and channels.
  let p = await open(authed.tenantAdmin, '#/stats');
  try {
    const strip = p.locator('[data-testid=stat-strip][data-access=tenant]');
    await strip.waitFor();
    assert.equal(await strip.locator('[data-testid=stats-notice]').innerText(), NOTICE);
    // This page's own connection is one of the tenant's.
    await until('the tenant connections', async () => Number(await strip.locator('[data-stat=connections]').innerText()) >= 1);
    assert.equal(await p.locator('[data-testid=stat-scope]').innerText(), 'Your tenant');
    assert.equal(await p.locator('[data-testid=stats-access]').innerText(), NOTICE);
    const tiles = await p.locator('[data-testid=stat-tiles]').innerText();
    for (const want of ['connections', 'channels', 'dropped', 'this page: received']) assert.ok(tiles.includes(want), `${want} in ${tiles}`);
    // Degraded, not failed: no error in the activity log.
    assert.equal(await p.locator('[data-testid=activity-full] li[data-kind=error]').count(), 0);
    await p.screenshot({ path: join(ARTIFACTS, 'stats-tenant.png') });
  } finally {
    await p.close();
  }
  // A read-only key: only what this page received, and both reasons.
  p = await open(authed.tenantReader, '#/stats');
  try {
    await p.locator('[data-testid=stat-strip][data-access=page] [data-testid=stats-notice]').waitFor();
    await until('the reasons', async () => (await p.locator('[data-testid=stats-access]').innerText()).includes('need the admin scope'));
    assert.equal(await p.locator('[data-testid=stat-scope]').innerText(), 'This page');
    await until('the channel table says why it is empty', async () => {
      const text = await p.locator('[data-testid=channels-status]').innerText();
      if (!text.includes('admin scope')) throw new Error(`the channel table's status: ${JSON.stringify(text)}`);
      return true;
    });
    assert.equal(await p.locator('[data-testid=activity-full] li[data-kind=error]').count(), 0);
  } finally {
    await p.close();
  }
});
