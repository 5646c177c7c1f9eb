// V8 compiles a function with Maglev, its mid-tier optimiser, once the function has run about 400 times
// its own length in bytecode. Start-up runs a handful of functions that hot once and never again — Node's
// path normalisation while the bundle's modules load, esbuild's module initialiser, pino's redaction-path
// parser, the timer list — and the first Maglev compilation brings Maglev's own machine code into memory:
// ~1.8 MiB of RSS in every idle process (2026-12-04: 59.6–59.9 MiB, 57.8–58.0 without any start-up
// compilation). So the program starts with the threshold at five times V8's (package.json
// fleetServer.nodeFlags; no start-up function reaches it) and sets V8's own back once the process serves.
// V8 reads the flag each time it gives a function its budget, so from then on functions tier up at V8's
// threshold; those given a budget during start-up keep the larger one for their first round.
// Lowering the threshold at run time keeps Maglev's background compilation (starting with --no-maglev
// and turning it on later does not: V8 then compiles on the main thread). Like any run-time flag change
// it changes V8's flag hash, so built-in modules loaded later miss Node's code cache; the idle figure
// above includes that.
import { setFlagsFromString } from 'node:v8';
import type { Logger } from 'pino';
import { NODE_FLAGS } from '../version';
import { flagName } from './node-flags';

/**
 * V8's own thresholds in the Node the project pins (24; spec/unit/start-up-tiering.test.ts checks them
 * against `node --v8-options` of the Node it runs on).
 */
export const V8_TIERING_DEFAULTS: Readonly<Record<string, number>> = {
  '--invocation-count-for-maglev': 400,
};

/**
 * The flags that set V8's thresholds back, for a process started with these arguments: only where the
 * value in force (the last one given, `_` and `-` alike) is the shipped one. An operator's own value stands.
 */
export function tieringResets(execArgv: readonly string[], shipped: readonly string[] = NODE_FLAGS): string[] {
  const resets: string[] = [];
  for (const [flag, value] of Object.entries(V8_TIERING_DEFAULTS)) {
    const inForce = execArgv.filter((a) => flagName(a) === flag).at(-1);
    if (inForce !== undefined && shipped.some((f) => flagName(f) === flag && f.split('=')[1] === inForce.split('=')[1])) {
      resets.push(`${flag}=${value}`);
    }
  }
  return resets;
}

let released = false;

/** Sets V8's thresholds back, once: called when the process serves (its listener is up, or a cluster primary's workers are ready). */
export function releaseStartUpTiering(log: Logger): void {
  if (released) return;
  released = true;
  const resets = tieringResets(process.execArgv);
  for (const flag of resets) setFlagsFromString(flag);
  if (resets.length > 0) log.debug({ 'v8.flags': resets }, 'start-up over: V8 tiers functions up at its own thresholds');
}
