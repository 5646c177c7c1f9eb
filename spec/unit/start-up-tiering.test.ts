// The start-up tiering threshold (runtime/start-up-tiering.ts): the program starts with V8's Maglev
// threshold raised and sets V8's own back once it serves; the shipped flags are added only where an
// operator gave no value of their own (runtime/node-flags.ts).
import { spawnSync } from 'node:child_process';
import { missingNodeFlags } from '../../src/runtime/node-flags';
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

const SHIPPED = ['--max-semi-space-size=16', '--invocation-count-for-maglev=2000'];

test('the threshold is set back only where the shipped value is in force', () => {
  expect(tieringResets(SHIPPED, SHIPPED)).toEqual(['--invocation-count-for-maglev=400']);
  expect(tieringResets(['--max-semi-space-size=16'], SHIPPED)).toEqual([]);
  // The last value given is the one V8 keeps; either spelling.
  expect(tieringResets([...SHIPPED, '--invocation-count-for-maglev=800'], SHIPPED)).toEqual([]);
  expect(tieringResets([...SHIPPED, '--invocation_count_for_maglev=800'], SHIPPED)).toEqual([]);
  expect(tieringResets(['--invocation-count-for-maglev=800', ...SHIPPED], SHIPPED)).toEqual(['--invocation-count-for-maglev=400']);
});

test("an operator's own value is not followed by the shipped one (re-execution, cluster workers)", () => {
  expect(missingNodeFlags([], SHIPPED, '')).toEqual(SHIPPED);
  expect(missingNodeFlags(['--invocation-count-for-maglev=800'], SHIPPED, '')).toEqual(['--max-semi-space-size=16']);
  expect(missingNodeFlags(['--invocation_count_for_maglev=800', '--max_semi_space_size=64'], SHIPPED, '')).toEqual([]);
  expect(missingNodeFlags(['--expose-gc', ...SHIPPED], SHIPPED, '')).toEqual([]);
  // NODE_OPTIONS is read before the command line: a shipped flag added there would override it.
  expect(missingNodeFlags([], SHIPPED, '--require ./x.js  --max-semi-space-size=64')).toEqual(['--invocation-count-for-maglev=2000']);
  // So a process started with the operator's value keeps it after start-up.
  const started = ['--invocation-count-for-maglev=800', ...missingNodeFlags(['--invocation-count-for-maglev=800'], SHIPPED, '')];
  expect(tieringResets(started, SHIPPED)).toEqual([]);
});
