// The V8 flags the program ships with (package.json fleetServer.nodeFlags: the young generation's cap,
// which sets both the memory per held agent and the GC's share of the CPU) apply however it is launched. The shebang, npm
// start, the single executable and cluster workers pass them; `node dist/fleet-server.js` does not, and
// V8 reads them only when the heap is set up. So a server started without them replaces itself (same
// pid, same descriptors: execve) with one started with them, before it has done anything.
import cluster from 'node:cluster';
import { NODE_FLAGS } from '../version';

/** Set on the re-executed process: never loop, and lets an operator opt out. */
export const NO_REEXEC_ENV = 'FLEET_SERVER_NO_REEXEC';

export function ensureNodeFlags(): void {
  const missing = NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
  if (missing.length === 0 || process.env[NO_REEXEC_ENV] || cluster.isWorker || isSingleExecutable()) return;
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function' || process.argv[1] === undefined) return;
  execve.call(process, process.execPath, [process.execPath, ...process.execArgv, ...missing, process.argv[1], ...process.argv.slice(2)],
    { ...process.env, [NO_REEXEC_ENV]: '1' });
}

/**
 * The program's arguments. A cluster worker of the single executable is started as `<exe> <exec>
 * <args>` (Node's fork puts the module path first), and the executable takes every word as its own:
 * the module path, set to the executable itself (cluster.ts), is dropped.
 */
export function programArgs(): string[] {
  const args = process.argv.slice(2);
  return cluster.isWorker && isSingleExecutable() && args[0] === process.execPath ? args.slice(1) : args;
}

export function isSingleExecutable(): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('node:sea') as { isSea(): boolean }).isSea();
  } catch {
    return false;
  }
}
