// Size rotation of log files, in-process: SonicBoom writes asynchronously, so these tests write faster
// than the file system flushes (a synchronous burst, then bursts across event-loop turns) and check
// every file against the limit byte for byte.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RotatingFile, type RotationOptions } from '../../src/logging/rotating-file';

const LIMIT = 1024;
let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'rotating-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function file(opts: Partial<RotationOptions> = {}): RotatingFile {
  return new RotatingFile({ dir, name: 'app.log', rotateEveryBytes: LIMIT, keepFiles: 1000, permissions: 0o600, rotateOnStartup: false, ...opts });
}

const line = (i: number): string => `${JSON.stringify({ n: i, pad: 'x'.repeat(60 + (i % 17)) })}\n`;
const ended = (f: RotatingFile): Promise<void> => new Promise((resolve) => f.end(resolve));

/** Files oldest first: app.log.<highest> … app.log.1, app.log. */
function filesOldestFirst(): string[] {
  const rotated = readdirSync(dir).filter((f) => f !== 'app.log').sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()));
  return [...rotated, 'app.log'];
}

function expectWholeAndOrdered(count: number): void {
  const numbers: number[] = [];
  for (const f of filesOldestFirst()) {
    const size = statSync(join(dir, f)).size;
    expect({ f, size, over: size > LIMIT }).toEqual({ f, size, over: false });
    for (const l of readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean)) numbers.push((JSON.parse(l) as { n: number }).n);
  }
  expect(numbers).toEqual(Array.from({ length: count }, (_, i) => i));
}

test('a burst written before anything reaches the disk is split so that no file passes the limit', async () => {
  const f = file();
  for (let i = 0; i < 500; i++) f.write(line(i));
  await ended(f);
  expect(readdirSync(dir).length).toBeGreaterThan(30);
  expectWholeAndOrdered(500);
});

test('bursts across event-loop turns, while earlier writes are still in flight, keep every file within the limit', async () => {
  const f = file();
  let n = 0;
  for (let burst = 0; burst < 40; burst++) {
    for (let i = 0; i < 1 + (burst % 7) * 5; i++) f.write(line(n++));
    await new Promise((r) => setImmediate(r));
  }
  await ended(f);
  expectWholeAndOrdered(n);
});

test('flush calls back once rotated files hold everything written to them', async () => {
  const f = file();
  for (let i = 0; i < 100; i++) f.write(line(i));
  await new Promise<void>((resolve, reject) => f.flush((err) => (err ? reject(err) : resolve())));
  expectWholeAndOrdered(100);
  await ended(f);
});

test('only keepFiles rotated files are kept, the oldest dropped, each created with the configured mode', async () => {
  const f = file({ keepFiles: 2 });
  for (let i = 0; i < 200; i++) f.write(line(i));
  await ended(f);
  expect(readdirSync(dir).sort()).toEqual(['app.log', 'app.log.1', 'app.log.2']);
  const kept: number[] = [];
  for (const name of ['app.log.2', 'app.log.1', 'app.log']) {
    expect(statSync(join(dir, name)).size).toBeLessThanOrEqual(LIMIT);
    expect(statSync(join(dir, name)).mode & 0o777).toBe(0o600);
    for (const l of readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean)) kept.push((JSON.parse(l) as { n: number }).n);
  }
  // The newest lines survive, contiguous up to the last one written.
  expect(kept[kept.length - 1]).toBe(199);
  expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 200 - kept.length + i));
});

test('an existing file counts towards the limit, or is rotated away on startup when configured', async () => {
  writeFileSync(join(dir, 'app.log'), 'y'.repeat(LIMIT - 10));
  const f = file();
  f.write(line(0));
  await ended(f);
  expect(readFileSync(join(dir, 'app.log.1'), 'utf8')).toBe('y'.repeat(LIMIT - 10));
  expect(readFileSync(join(dir, 'app.log'), 'utf8')).toBe(line(0));

  rmSync(join(dir, 'app.log.1'));
  const g = file({ rotateOnStartup: true });
  g.write(line(1));
  await ended(g);
  expect(readFileSync(join(dir, 'app.log.1'), 'utf8')).toBe(line(0));
  expect(readFileSync(join(dir, 'app.log'), 'utf8')).toBe(line(1));
});

test('a rotation that cannot happen keeps logging to the open file and is tried again later', async () => {
  const f = file({ keepFiles: 1 });
  for (let i = 0; i < 5; i++) f.write(line(i));
  // A non-empty directory where the oldest kept file must be removed: every rotation fails.
  mkdirSync(join(dir, 'app.log.1', 'blocker'), { recursive: true });
  let n = 5;
  for (; n < 40; n++) f.write(line(n));
  expect(readdirSync(dir).sort()).toEqual(['app.log', 'app.log.1']);
  rmSync(join(dir, 'app.log.1'), { recursive: true });
  // The next crossing of the limit rotates (renames are synchronous, so this loop sees it).
  while (!existsSync(join(dir, 'app.log.1'))) f.write(line(n++));
  for (let k = 0; k < 3; k++) f.write(line(n++));
  await ended(f);
  expect(readdirSync(dir).sort()).toEqual(['app.log', 'app.log.1']);
  const numbers = ['app.log.1', 'app.log'].flatMap((name) => readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n));
  expect(numbers).toEqual(Array.from({ length: n }, (_, i) => i));
  expect(statSync(join(dir, 'app.log')).size).toBeLessThanOrEqual(LIMIT);
});

test('reopen (SIGHUP after logrotate moved the file): earlier lines stay in the moved file, later ones go to a new file', async () => {
  const f = file({ rotateEveryBytes: 1_000_000 });
  for (let i = 0; i < 50; i++) f.write(line(i));
  renameSync(join(dir, 'app.log'), join(dir, 'moved.log'));
  f.reopen();
  for (let i = 50; i < 80; i++) f.write(line(i));
  await ended(f);
  const numbers = (name: string): number[] => readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n);
  expect(numbers('moved.log')).toEqual(Array.from({ length: 50 }, (_, i) => i));
  expect(numbers('app.log')).toEqual(Array.from({ length: 30 }, (_, i) => 50 + i));
});

test('a disk that refuses writes (ENOSPC) drops and counts lines, and never throws', async () => {
  // /dev/full accepts opens and answers every write with ENOSPC.
  const f = new RotatingFile({ dir: '/dev', name: 'full', rotateEveryBytes: 1_000_000_000, keepFiles: 1, permissions: 0o600, rotateOnStartup: false });
  for (let i = 0; i < 20; i++) f.write(line(i));
  await new Promise<void>((resolve) => f.flush(() => resolve()));
  await new Promise((r) => setTimeout(r, 50));
  expect(f.dropped).toBeGreaterThan(0);
  await ended(f);
});
