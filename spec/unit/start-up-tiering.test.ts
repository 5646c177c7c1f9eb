// The start-up tiering thresholds (runtime/start-up-tiering.ts): the program starts with V8's Maglev
// thresholds raised and sets V8's own back once it serves.
import { spawnSync } from 'node:child_process';
import { tieringResets, V8_TIERING_DEFAULTS } from '../../src/runtime/start-up-tiering';
import { NODE_FLAGS } from '../support/node-flags';

/** A V8 flag's default as this Node's `--v8-options` states it. */
function v8Default(flag: string): number {
  const options = spawnSync(process.execPath, ['--v8-options'], { encoding: 'utf8' }).stdout;
  const at = options.indexOf(`  ${flag} (`);
  expect(at).toBeGreaterThanOrEqual(0);
  const stated = /default: (--[\w-]+)=(\d+)/.exec(options.slice(at, at + 400));
  expect(stated?.[1]).toBe(flag);
  return Number(stated![2]);
}

test("the thresholds set back are this Node's V8 defaults", () => {
  for (const [flag, value] of Object.entries(V8_TIERING_DEFAULTS)) expect([flag, v8Default(flag)]).toEqual([flag, value]);
});

test("the program ships with each threshold above V8's default", () => {
  for (const [flag, value] of Object.entries(V8_TIERING_DEFAULTS)) {
    const shipped = NODE_FLAGS.find((f) => f.startsWith(`${flag}=`));
    expect(Number(shipped?.split('=')[1])).toBeGreaterThan(value);
  }
});

test('only the shipped thresholds are set back: an operator\'s own value stands', () => {
  const shipped = ['--max-semi-space-size=16', '--invocation-count-for-maglev=2000', '--invocation-count-for-maglev-osr=500'];
  expect(tieringResets(shipped, shipped)).toEqual(['--invocation-count-for-maglev=400', '--invocation-count-for-maglev-osr=100']);
  expect(tieringResets(['--max-semi-space-size=16'], shipped)).toEqual([]);
  expect(tieringResets([...shipped, '--invocation-count-for-maglev=800'], shipped)).toEqual(['--invocation-count-for-maglev-osr=100']);
  expect(tieringResets(['--invocation-count-for-maglev=800', ...shipped], shipped)).toEqual(['--invocation-count-for-maglev=400', '--invocation-count-for-maglev-osr=100']);
});
