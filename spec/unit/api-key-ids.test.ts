// The embedded store's API key ids: Elasticsearch's shape (20 base64url characters), in creation order
// so that a burst of new keys lands on the last pages of the key and secret indexes.
import { newApiKeyId } from '../../src/store/sqlite/api-keys';

test('ids are 20 base64url characters that sort in the order of the milliseconds they were made in', () => {
  const t = Date.UTC(2026, 11, 5, 6, 0, 0);
  const times = [t, t + 1, t + 63, t + 64, t + 4095, t + 4096, t + 86_400_000, Date.UTC(2100, 0, 1)];
  const ids = times.map((ms) => newApiKeyId(ms));
  for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{20}$/);
  expect([...ids].sort()).toEqual(ids);
  // As SQLite compares TEXT (BINARY: byte by byte), not only as JavaScript does.
  for (let i = 1; i < ids.length; i++) expect(Buffer.compare(Buffer.from(ids[i - 1]!), Buffer.from(ids[i]!))).toBe(-1);
});

test('ids made in the same millisecond differ in their 78 random bits; none starts with "-"', () => {
  const t = Date.now();
  const ids = Array.from({ length: 1000 }, () => newApiKeyId(t));
  expect(new Set(ids).size).toBe(1000);
  expect(new Set(ids.map((id) => id.slice(0, 7))).size).toBe(1);
  expect(ids.some((id) => id.startsWith('-'))).toBe(false);
});
