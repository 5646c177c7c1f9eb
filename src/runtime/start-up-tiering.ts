// V8 compiles a function with Maglev, its mid-tier optimiser, once the function has run about 400 times its
// own bytecode (a loop: 100 times, on stack). Start-up runs a handful of functions that hot once and never
// again — Node's path normalisation while the bundle's modules load, esbuild's module initialiser, pino's
// redaction-path parser, the timer list — and the first Maglev compilation brings Maglev's own machine code
// into memory: 1.8–2.0 MiB of RSS in every idle process (2026-12-04: 61.0–61.3 MiB, 59.3 without any
// start-up compilation). So the program starts with both thresholds at five times V8's (package.json
// fleetServer.nodeFlags; no start-up function reaches them) and sets V8's own back once the process serves:
// from then on functions tier up exactly as under V8's defaults. Lowering the thresholds at run time keeps
// Maglev's background compilation (starting with --no-maglev and turning it on later does not: V8 then
// compiles on the main thread).
import { setFlagsFromString } from 'node:v8';
import type { Logger } from 'pino';
import { NODE_FLAGS } from '../version';

/** V8's own thresholds (Node 24; spec/unit/start-up-tiering.test.ts checks them against `node --v8-options`). */
export const V8_TIERING_DEFAULTS: Readonly<Record<string, number>> = {
  '--invocation-count-for-maglev': 400,
  '--invocation-count-for-maglev-osr': 100,
};

/** The flags that set V8's thresholds back, for a process started with these arguments (an operator's own value stands). */
export function tieringResets(execArgv: readonly string[], shipped: readonly string[] = NODE_FLAGS): string[] {
  const resets: string[] = [];
  for (const [flag, value] of Object.entries(V8_TIERING_DEFAULTS)) {
    const given = execArgv.filter((a) => a.startsWith(`${flag}=`)).at(-1);
    if (given !== undefined && shipped.includes(given)) resets.push(`${flag}=${value}`);
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
