// Spliced gzip is one standard gzip member: strict decoders (Node's zlib checks CRC and length, as Go's
// gzip reader does) read back exactly the filled-in text, whatever the values.
import { gunzipSync } from 'node:zlib';
import { splicedGzip } from '../src/http/spliced-gzip';
import { renderFilled, TextTemplate, type FilledTemplate } from '../src/util/text-template';

const cases: [string, FilledTemplate][] = [
  ['a policy-like template', { head: '{"ack_token":"","action":"checkin","actions":[', template: new TextTemplate(['{"id":"policy:p:1","agent_id":', ',"data":{"policy":{"outputs":{"default":{"api_key":', ',"hosts":["h"]}},"inputs":[' + '{"id":"x","type":"logfile"},'.repeat(200) + '{}]}}}']), values: ['"agent-1"', '"id:key"'], tail: ']}' }],
  ['multi-byte characters and an empty part', { head: 'é', template: new TextTemplate(['', 'ü→', '']), values: ['"日本"', '"😀"'], tail: '' }],
  ['a value longer than one stored block', { head: '', template: new TextTemplate(['[', ']']), values: [`"${'v'.repeat(200_000)}"`], tail: '' }],
  ['no holes', { head: '{', template: new TextTemplate(['"k":1']), values: [], tail: '}' }],
];

test.each(cases)('%s decodes to the same text at every level', (_name, f) => {
  for (const level of [1, 6, 9]) expect(gunzipSync(splicedGzip(f, level)).toString()).toBe(renderFilled(f));
});

test('the constant parts are compressed: a large template costs far less than its size', () => {
  const f = cases[0]![1];
  expect(splicedGzip(f, 1).length).toBeLessThan(renderFilled(f).length / 5);
});
