// `mkdir -p` (src/util/make-dirs.ts) where Node's recursive mkdirSync never returns: a path under /proc,
// whose mkdir answers ENOENT under a parent that exists. Run in a child process, so the old code's hang
// is a timeout here rather than a stuck test.
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import { makeDirsSync } from '../../src/util/make-dirs';
import { removeDir, tempDir } from '../support/fleet-server';

let dir: string;
beforeEach(() => (dir = tempDir('make-dirs-')));
afterEach(() => removeDir(dir));

test('makes the missing directories, outermost first, with the mode; returns the first made; an existing one is no error', () => {
  const deep = join(dir, 'a', 'b', 'c');
  expect(makeDirsSync(deep, 0o700)).toBe(join(dir, 'a'));
  expect(statSync(deep).mode & 0o777).toBe(0o700);
  expect(makeDirsSync(deep, 0o700)).toBeUndefined();
  writeFileSync(join(dir, 'file'), 'x');
  expect(() => makeDirsSync(join(dir, 'file', 'sub'), 0o700)).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
  // The directory itself a file: EEXIST, as Node's mkdirSync says it (the logger tells the operator so).
  expect(() => makeDirsSync(join(dir, 'file'), 0o700)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
  mkdirSync(join(dir, 'ro'), { mode: 0o500 });
  if (process.getuid?.() !== 0) expect(() => makeDirsSync(join(dir, 'ro', 'x'), 0o700)).toThrow(expect.objectContaining({ code: 'EACCES' }));
});

test('a data directory under /proc is an error at once, not a loop at full CPU (Node\'s recursive mkdirSync never returns there)', () => {
  const script = join(dir, 'probe.js');
  buildSync({
    stdin: { contents: "const { ensurePrivateDir } = require('./src/store/sqlite/files'); try { ensurePrivateDir('/proc/fleet-server-test/data'); console.log('made'); } catch (e) { console.log(e.code); }",
      resolveDir: resolve(__dirname, '../..'), loader: 'ts' },
    bundle: true, platform: 'node', format: 'cjs', target: 'node24', outfile: script, logLevel: 'error',
  });
  // Old: killed at the timeout (SIGTERM does not stop the loop: SIGKILL).
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 10_000, killSignal: 'SIGKILL' });
  expect([r.signal, r.stdout.trim()]).toEqual([null, 'ENOENT']);
});
