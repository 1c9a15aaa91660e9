// The query API's selector grammar (docs/query.md), parsed on the page so that live points from
// `metrics:<measurement>` can be matched against a chart's selector as the server matches them.

export type Op = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  tag: string;
  op: Op;
  value: string;
  re?: RegExp;
}

export interface Selector {
  measurement: string;
  field: string | null;
  matchers: Matcher[];
  text: string;
}

const BARE = /^[A-Za-z_][A-Za-z0-9_:-]*/;

export function parseSelector(text: string): Selector {
  let i = 0;
  const s = text.trim();
  const ws = () => {
    while (i < s.length && /\s/.test(s[i])) i++;
  };
  const name = (): string => {
    if (s[i] === '"') return quoted();
    const m = BARE.exec(s.slice(i));
    if (!m) throw new Error(`expected a name at column ${i + 1}`);
    i += m[0].length;
    return m[0];
  };
  const quoted = (): string => {
    if (s[i] !== '"') throw new Error(`expected a double-quoted value at column ${i + 1}`);
    i++;
    let out = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && (s[i + 1] === '"' || s[i + 1] === '\\')) {
        out += s[i + 1];
        i += 2;
      } else out += s[i++];
    }
    if (s[i] !== '"') throw new Error('unterminated quoted string');
    i++;
    return out;
  };
  const measurement = name();
  let field: string | null = null;
  if (s[i] === '.') {
    i++;
    field = name();
  }
  ws();
  const matchers: Matcher[] = [];
  if (s[i] === '{') {
    i++;
    ws();
    while (s[i] !== '}') {
      const tag = name();
      ws();
      const op = (['=~', '!~', '!=', '='] as Op[]).find((o) => s.startsWith(o, i));
      if (!op) throw new Error(`expected =, !=, =~ or !~ at column ${i + 1}`);
      i += op.length;
      ws();
      const value = quoted();
      const m: Matcher = { tag, op, value };
      if (op === '=~' || op === '!~') m.re = new RegExp(`^(?:${value})$`);
      matchers.push(m);
      ws();
      if (s[i] === ',') {
        i++;
        ws();
      } else if (s[i] !== '}') throw new Error(`expected , or } at column ${i + 1}`);
    }
    i++;
  }
  ws();
  if (i < s.length) throw new Error(`unexpected text at column ${i + 1}`);
  return { measurement, field, matchers, text: s };
}

/** Whether a series' tags satisfy every matcher; a missing tag counts as "". */
export function matchesTags(sel: Selector, tags: Record<string, string>): boolean {
  for (const m of sel.matchers) {
    const v = tags[m.tag] ?? '';
    const ok = m.op === '=' ? v === m.value : m.op === '!=' ? v !== m.value : m.re!.test(v);
    if (m.op === '!~' ? ok : !ok) return false;
  }
  return true;
}

/** The selector for the anomaly scores of the same series. */
export function anomalySelector(sel: Selector): string {
  const q = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const m = sel.matchers.map((x) => `${q(x.tag)}${x.op}${q(x.value)}`).join(',');
  return `${q(`${sel.measurement}:anomaly`)}${sel.field ? `.${q(sel.field)}` : ''}${m ? `{${m}}` : ''}`;
}

export function seriesKey(field: string, tags: Record<string, string>): string {
  const t = Object.keys(tags)
    .sort()
    .map((k) => `${k}=${tags[k]}`)
    .join(',');
  return `${field}{${t}}`;
}
