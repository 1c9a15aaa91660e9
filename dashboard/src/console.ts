// The console: subscribe to channels and patterns, watch what arrives, publish by hand.

import { log } from './activity';
import type { LiveClient, Publication } from './live';

const MAX = 500;

export function mountConsole(el: HTMLElement, client: LiveClient) {
  el.innerHTML = `
    <section class="panel console">
      <header class="panel-head"><h2>Subscribe</h2></header>
      <form class="row" data-testid="subscribe-form">
        <input name="channels" placeholder="channels or patterns, comma-separated: news, metrics:*, alerts" required />
        <button>Subscribe</button>
      </form>
      <ul class="subs" data-testid="subscriptions"></ul>
    </section>
    <section class="panel console">
      <header class="panel-head"><h2>Publish</h2><span class="status" data-testid="publish-result"></span></header>
      <form class="publish" data-testid="publish-form">
        <div class="row">
          <input name="channel" placeholder="channel" required />
          <select name="priority"><option>normal</option><option>low</option><option>high</option><option>critical</option></select>
          <button>Publish</button>
        </div>
        <textarea name="data" rows="4" spellcheck="false">{"hello": "world"}</textarea>
      </form>
    </section>
    <section class="panel console messages-panel">
      <header class="panel-head"><h2>Messages</h2><span class="status" data-testid="message-count"></span>
        <label><input type="checkbox" name="pause" /> pause</label><button data-act="clear">Clear</button></header>
      <ul class="messages" data-testid="messages"></ul>
    </section>`;
  const subs = new Map<string, () => void>();
  const messages: (Publication & { note?: string })[] = [];
  let total = 0;
  const list = el.querySelector('.messages') as HTMLElement;
  const count = el.querySelector('[data-testid=message-count]') as HTMLElement;
  const pause = el.querySelector('[name=pause]') as HTMLInputElement;
  const subsEl = el.querySelector('.subs') as HTMLElement;
  let queued = false;
  const draw = () => {
    queued = false;
    count.textContent = `${total} received, ${messages.length} shown`;
    if (pause.checked) return;
    list.replaceChildren(
      ...messages.map((m) => {
        const li = document.createElement('li');
        li.dataset.channel = m.channel;
        const head = document.createElement('div');
        head.className = 'msg-head';
        head.textContent = `${new Date(m.ts).toLocaleTimeString()}  ${m.channel}  #${m.offset}${m.pattern ? `  via ${m.pattern}` : ''}${m.priority ? `  ${m.priority}` : ''}${m.note ? `  ${m.note}` : ''}`;
        const body = document.createElement('pre');
        const text = JSON.stringify(m.data);
        body.textContent = text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
        li.append(head, body);
        return li;
      }),
    );
  };
  const schedule = () => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(draw);
    }
  };
  const drawSubs = () => {
    subsEl.replaceChildren(
      ...[...subs.keys()].map((c) => {
        const li = document.createElement('li');
        li.dataset.channel = c;
        li.textContent = c;
        const b = document.createElement('button');
        b.className = 'icon';
        b.title = `Unsubscribe from ${c}`;
        b.textContent = '×';
        b.onclick = () => {
          subs.get(c)?.();
          subs.delete(c);
          drawSubs();
        };
        li.append(b);
        return li;
      }),
    );
  };
  (el.querySelector('[data-testid=subscribe-form]') as HTMLFormElement).onsubmit = (ev) => {
    ev.preventDefault();
    const input = (ev.target as HTMLFormElement).elements.namedItem('channels') as HTMLInputElement;
    for (const c of input.value.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (subs.has(c)) continue;
      subs.set(
        c,
        client.subscribe(c, {
          message: (p) => {
            total++;
            messages.unshift(p);
            if (messages.length > MAX) messages.length = MAX;
            schedule();
          },
          reset: (reason) => {
            log('connection', `${c}: ${reason}`, 'warning');
          },
          error: (message) => {
            log('error', `subscribe ${c}: ${message}`);
          },
        }),
      );
    }
    input.value = '';
    drawSubs();
  };
  (el.querySelector('[data-testid=publish-form]') as HTMLFormElement).onsubmit = async (ev) => {
    ev.preventDefault();
    const f = ev.target as HTMLFormElement;
    const get = (n: string) => (f.elements.namedItem(n) as HTMLInputElement).value;
    const out = el.querySelector('[data-testid=publish-result]') as HTMLElement;
    let data: unknown;
    try {
      data = JSON.parse(get('data'));
    } catch (e) {
      out.textContent = `not JSON: ${(e as Error).message}`;
      out.className = 'status error';
      return;
    }
    try {
      const r = await client.publish(get('channel').trim(), data, get('priority'));
      out.textContent = `published at offset ${r.offset} (epoch ${r.epoch})`;
      out.className = 'status ok';
    } catch (e) {
      out.textContent = (e as Error).message;
      out.className = 'status error';
    }
  };
  (el.querySelector('[data-act=clear]') as HTMLButtonElement).onclick = () => {
    messages.length = 0;
    schedule();
  };
  pause.onchange = schedule;
}
