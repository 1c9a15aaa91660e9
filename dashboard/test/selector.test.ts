import { describe, expect, it } from 'vitest';

import { anomalySelector, matchesTags, parseSelector, seriesKey } from '../src/selector';

describe('parseSelector', () => {
  it('reads a measurement, a field and matchers of every kind', () => {
    const s = parseSelector(' cpu.usage_active{host=~"web.*", cpu="cpu-total" ,dc!="b",role!~"db|cache"} ');
    expect(s.measurement).toBe('cpu');
    expect(s.field).toBe('usage_active');
    expect(s.text).toBe('cpu.usage_active{host=~"web.*", cpu="cpu-total" ,dc!="b",role!~"db|cache"}');
    expect(s.matchers.map(({ tag, op, value }) => [tag, op, value])).toEqual([
      ['host', '=~', 'web.*'],
      ['cpu', '=', 'cpu-total'],
      ['dc', '!=', 'b'],
      ['role', '!~', 'db|cache'],
    ]);
  });

  it('takes a bare measurement, quoted names and escapes', () => {
    expect(parseSelector('mem')).toMatchObject({ measurement: 'mem', field: null, matchers: [] });
    const s = parseSelector('"cpu:anomaly"."usage"{"host"="a\\"b\\\\c"}');
    expect(s).toMatchObject({ measurement: 'cpu:anomaly', field: 'usage' });
    expect(s.matchers[0]).toMatchObject({ tag: 'host', op: '=', value: 'a"b\\c' });
    expect(parseSelector('m{}').matchers).toEqual([]);
  });

  it('points at the column of a mistake', () => {
    for (const [text, message] of [
      ['', 'expected a name at column 1'],
      ['cpu.', 'expected a name at column 5'],
      ['cpu{host}', 'expected =, !=, =~ or !~ at column 9'],
      ['cpu{host=a}', 'expected a double-quoted value at column 10'],
      ['cpu{host="a" dc="b"}', 'expected , or } at column 14'],
      ['cpu{host="a', 'unterminated quoted string'],
      ['cpu extra', 'unexpected text at column 5'],
    ] as const) {
      expect(() => parseSelector(text), text).toThrow(message);
    }
  });
});

describe('matchesTags', () => {
  const sel = parseSelector('cpu{host=~"web-[0-9]+",dc!="b",role!~"db|cache"}');
  it('applies every matcher, anchored regexes included', () => {
    expect(matchesTags(sel, { host: 'web-1', dc: 'a', role: 'web' })).toBe(true);
    expect(matchesTags(sel, { host: 'web-1x', dc: 'a' })).toBe(false);
    expect(matchesTags(sel, { host: 'xweb-1', dc: 'a' })).toBe(false);
    expect(matchesTags(sel, { host: 'web-2', dc: 'b' })).toBe(false);
    expect(matchesTags(sel, { host: 'web-2', role: 'cache' })).toBe(false);
  });
  it('reads a missing tag as the empty string', () => {
    expect(matchesTags(parseSelector('m{dc=""}'), {})).toBe(true);
    expect(matchesTags(parseSelector('m{dc!=""}'), {})).toBe(false);
    expect(matchesTags(parseSelector('m{dc=~".*"}'), {})).toBe(true);
  });
});

describe('anomalySelector and seriesKey', () => {
  it('names the score series of the same selection, quoted so that it parses back', () => {
    const text = anomalySelector(parseSelector('http.latency_ms{service="check\\"out",host=~"a|b"}'));
    expect(text).toBe('"http:anomaly"."latency_ms"{"service"="check\\"out","host"=~"a|b"}');
    const back = parseSelector(text);
    expect(back).toMatchObject({ measurement: 'http:anomaly', field: 'latency_ms' });
    expect(back.matchers.map((m) => m.value)).toEqual(['check"out', 'a|b']);
    expect(anomalySelector(parseSelector('mem'))).toBe('"mem:anomaly"');
  });
  it('keys a series by field and sorted tags', () => {
    expect(seriesKey('v', { b: '2', a: '1' })).toBe('v{a=1,b=2}');
    expect(seriesKey('v', {})).toBe('v{}');
  });
});
