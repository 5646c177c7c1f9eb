// Pooled random bytes (util/random.ts): each draw is its own buffer of fresh bytes, across refills.
import { randomBytesPooled } from '../../src/util/random';

test('draws have the asked length, are distinct, and own their memory', () => {
  const seen = new Set<string>();
  // Well past several 4 KiB refills, with sizes that do not divide the pool.
  for (let i = 0; i < 2000; i++) {
    const n = [12, 16, 20, 7][i % 4]!;
    const b = randomBytesPooled(n);
    expect(b.length).toBe(n);
    seen.add(b.toString('hex'));
  }
  expect(seen.size).toBe(2000);
  // A draw written over (as a caller may) changes no later draw.
  const a = randomBytesPooled(16);
  a.fill(0);
  expect(randomBytesPooled(16).equals(Buffer.alloc(16))).toBe(false);
});

test('bytes are spread over all values (no zeroed or reused pool region handed out)', () => {
  const counts = new Array<number>(256).fill(0);
  for (let i = 0; i < 4096; i++) for (const byte of randomBytesPooled(16)) counts[byte]!++;
  // 65,536 bytes: each value ~256 times; a handed-out zeroed region would pile up on 0.
  expect(Math.max(...counts)).toBeLessThan(400);
  expect(Math.min(...counts)).toBeGreaterThan(150);
});

test('large draws are served too', () => {
  const big = randomBytesPooled(10_000);
  expect(big.length).toBe(10_000);
  expect(new Set(big).size).toBeGreaterThan(200);
});
