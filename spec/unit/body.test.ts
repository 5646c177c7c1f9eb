// Reading gzip request bodies: a small body is inflated inline, a large one (or one that inflates past
// the inline cap) on the thread pool; either way the result, the errors and the limits are the same.
import { createHook } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { gzipSync } from 'node:zlib';
import { BodyBudget, readBody, type BodyRules } from '../../src/http/body';

const RULES: BodyRules = { maxBytes: 0, maxDecompressed: 0, allowGzip: true };

/** A request whose body arrives in `pieces`. */
function request(pieces: Buffer[], gzip = true): IncomingMessage {
  const req = new PassThrough() as unknown as IncomingMessage & PassThrough;
  (req as { headers: Record<string, string> }).headers = gzip ? { 'content-encoding': 'gzip' } : {};
  setImmediate(() => {
    for (const p of pieces) req.write(p);
    req.end();
  });
  return req;
}

async function read(body: Buffer, rules: BodyRules = RULES, budget = new BodyBudget(1 << 30), pieces = 1): Promise<string> {
  const step = Math.ceil(body.length / pieces) || 1;
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += step) parts.push(body.subarray(i, i + step));
  const raw = await readBody(request(parts), 'checkin', rules, budget);
  try {
    return Buffer.concat(raw.chunks, raw.size).toString();
  } finally {
    raw.release();
  }
}

const json = (n: number): string => JSON.stringify({ status: 'online', message: 'x'.repeat(n) });
const small = gzipSync(json(100));
/** Inflates past the inline cap (128 KiB) from a few hundred bytes. */
const wide = gzipSync(json(300_000));
/** Over the inline wire size (32 KiB): random base64 compresses to ~3/4. */
const incompressible = randomBytes(60_000).toString('base64');
const large = gzipSync(`{"m":"${incompressible}"}`);

describe('gzip request bodies', () => {
  test.each([
    ['small', small, json(100)],
    ['in several pieces', small, json(100), 5],
    ['two gzip members', Buffer.concat([small, small]), json(100) + json(100)],
    ['past the inline cap', wide, json(300_000)],
    ['over the inline wire size', large, `{"m":"${incompressible}"}`],
  ])('%s: inflated whole', async (_name, body, expected, pieces = 1) => {
    expect(await read(body as Buffer, RULES, undefined, pieces as number)).toBe(expected);
  });

  test('a small body is inflated without the thread pool; a large one on it', async () => {
    // Thread-pool work calls back into JS (async hooks' `before`); inflating inline never does.
    const zlibHandles = new Set<number>();
    let callbacks = 0;
    const hook = createHook({
      init: (id, type) => void (type === 'ZLIB' && zlibHandles.add(id)),
      before: (id) => void (zlibHandles.has(id) && callbacks++),
    }).enable();
    try {
      await read(small);
      expect(zlibHandles.size).toBeGreaterThan(0);
      expect(callbacks).toBe(0);
      await read(large);
      expect(callbacks).toBeGreaterThan(0);
    } finally {
      hook.disable();
    }
  });

  test.each([
    ['not gzip', Buffer.from('not gzip at all'), /gzip: incorrect header check/],
    ['truncated', small.subarray(0, small.length - 4), /gzip: unexpected end of file/],
    ['empty', Buffer.alloc(0), /gzip: unexpected end of file/],
    ['trailing garbage', Buffer.concat([small, Buffer.from('xx')]), /gzip: incorrect header check/],
    ['large and truncated', large.subarray(0, large.length - 4), /gzip: unexpected end of file/],
  ])('%s: 400 with zlib\'s words', async (_name, body, message) => {
    await expect(read(body)).rejects.toMatchObject({ code: 'BadRequest', message: expect.stringMatching(message) });
  });

  test.each([['small', small, 100], ['past the inline cap', wide, 200_000], ['large', large, 50_000]])(
    '%s body over max_body_decompressed: request body too large', async (_name, body, limit) => {
      await expect(read(body, { ...RULES, maxDecompressed: limit })).rejects.toMatchObject({ message: expect.stringMatching(/request body too large/) });
    });

  test('the JSON shape is checked on what a small body inflates to', async () => {
    await expect(read(gzipSync('['.repeat(200)))).rejects.toMatchObject({ message: expect.stringMatching(/nesting deeper than 100/) });
  });

  test('inflated bytes count against the server-wide budget, and are given back', async () => {
    const budget = new BodyBudget(1000);
    await expect(read(gzipSync(json(2000)), RULES, budget)).rejects.toMatchObject({ code: 'BodyBudget' });
    expect(budget.inUse).toBe(0);
    expect(await read(small, RULES, budget)).toBe(json(100));
    expect(budget.inUse).toBe(0);
  });
});
