// What the benchmarks share: waiting for a condition, and the Elasticsearch double in its own process.
import { spawn } from 'node:child_process';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const doubleJs = new URL('../../dist/es-double.js', import.meta.url).pathname;

/** Polls fn every 100 ms until it returns something truthy (errors count as not yet). */
export async function waitFor(what, fn, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Starts the Elasticsearch double on `port`; resolves with the process and its service token. */
export async function startDouble(port) {
  const proc = spawn(process.execPath, [doubleJs, '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  const token = await waitFor('the Elasticsearch double', () => /service token: (\S+)/.exec(out)?.[1]);
  return { proc, token };
}
