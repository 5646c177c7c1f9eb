// scripts/source-date.mjs: the date scripts/build.mjs gives the program as its build time (/api/status,
// the control protocol's version info) and scripts/package.mjs the tarball's entries. Dated by the
// sources, two builds of one commit are the same bytes; dated by the clock (as the build was), never.
// (That the packaged executable carries it: spec/package.test.ts, after a build.)
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { removeDir, tempDir } from '../support/fleet-server';

const ROOT = resolve(__dirname, '../..');
const MODULE = pathToFileURL(resolve(ROOT, 'scripts/source-date.mjs')).href;

/**
 * buildTime(sourceDateEpoch(opts)) in a process of its own: jest's CommonJS cannot import an ES module.
 * A failure is its first line.
 */
function dated(opts: { env: Record<string, string>; cwd: string; now?: number }): string {
  const script = `import { buildTime, sourceDateEpoch } from ${JSON.stringify(MODULE)};
    try { process.stdout.write(buildTime(sourceDateEpoch(${JSON.stringify(opts)}))); } catch (err) { process.stdout.write('error: ' + err.message); }`;
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
}

test('SOURCE_DATE_EPOCH first, else the commit\'s time, else now; a malformed SOURCE_DATE_EPOCH fails the build', () => {
  const now = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
  expect(dated({ env: { SOURCE_DATE_EPOCH: '1700000000' }, cwd: ROOT, now })).toBe('2023-11-14T22:13:20Z');
  const commit = Number(execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: ROOT, encoding: 'utf8' }).trim());
  expect(dated({ env: {}, cwd: ROOT, now })).toBe(new Date(commit * 1000).toISOString().replace(/\.000Z$/, 'Z'));
  // An empty SOURCE_DATE_EPOCH is unset (as a CI's `SOURCE_DATE_EPOCH=$UNSET` would give it).
  expect(dated({ env: { SOURCE_DATE_EPOCH: '' }, cwd: ROOT, now })).toBe(dated({ env: {}, cwd: ROOT, now }));
  const outside = tempDir('fleet-no-git-');
  try {
    expect(dated({ env: {}, cwd: outside, now })).toBe('2030-01-02T03:04:05Z');
  } finally {
    removeDir(outside);
  }
  expect(dated({ env: { SOURCE_DATE_EPOCH: 'yesterday' }, cwd: ROOT, now })).toBe('error: SOURCE_DATE_EPOCH=yesterday: give whole seconds since 1970-01-01T00:00:00Z');
});
