// permissions_hash must match upstream byte for byte: Go encoding/json of the role map.
import { createHash } from 'node:crypto';
import { goJson } from '../src/fleet/go-json';
import { permissionsHash } from '../src/fleet/parsed-policy';
import { parseDuration } from '../src/util/duration';

test('Go encoding: sorted keys at every level, HTML escaping, trailing newline', () => {
  const roles = { b: { x: '<a&b>', list: [3, 1.5, true, null] }, a: { cluster: ['monitor'], 'ü': 1, Z: 2 } };
  const expected = '{"a":{"Z":2,"cluster":["monitor"],"ü":1},"b":{"list":[3,1.5,true,null],"x":"\\u003ca\\u0026b\\u003e"}}\n';
  expect(goJson(roles)).toBe(expected);
  expect(permissionsHash(roles as never)).toBe(createHash('sha256').update(expected).digest('hex'));
});

test('Go float formatting for large and small numbers, and line separators', () => {
  expect(goJson([1e21, 1e-7, 123456789, 0.000001, -0])).toBe('[1e+21,1e-7,123456789,0.000001,0]\n');
  expect(goJson('a\u2028b')).toBe('"a\\u2028b"\n');
});

test('Go duration strings', () => {
  expect(parseDuration('5m')).toBe(300_000);
  expect(parseDuration('14m30s')).toBe(870_000);
  expect(parseDuration('0.5ms')).toBe(0.5);
  expect(parseDuration('1h2m3s4ms')).toBe(3_723_004);
  expect(parseDuration('0')).toBe(0);
  expect(() => parseDuration('5')).toThrow();
  expect(() => parseDuration('m')).toThrow();
  expect(() => parseDuration('')).toThrow();
});
