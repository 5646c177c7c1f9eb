import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Ports this process has handed out: one is never handed out twice. */
const handedOut = new Set<number>();

/**
 * Below the kernel's ephemeral range. A port the kernel picked for a probe is free only until the probe
 * closes: any outgoing connection on the machine may take it as its source port before the server
 * binds it (CI failed once on EADDRINUSE that way, with two test runs at once). No outgoing connection
 * takes a port below the range.
 */
const [LOW, HIGH] = ((): [number, number] => {
  let ephemeralLow = 32768;
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (low > 12_000) ephemeralLow = low;
  } catch {
    // Not Linux: its usual range.
  }
  return [10_000, ephemeralLow - 1];
})();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A port free on 127.0.0.1 right now, below the ephemeral range, and not one this process was given
 * before (a server started with one port as both its port and internal_port opens one listener).
 * Picked at random, so that test processes running at once rarely try the same one.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 1000; tries++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port in ${LOW}–${HIGH}`);
}
