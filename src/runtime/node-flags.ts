// The V8 flags the program ships with (package.json fleetServer.nodeFlags: the young generation's cap,
// which sets both the memory per held agent and the GC's share of the CPU) and its start environment
// (fleetServer.env: one malloc arena) apply however it is launched. The shebang and npm start pass both;
// the single executable carries the flags and cluster workers are forked with both; `node
// dist/fleet-server.js` has neither, and the single executable no environment. V8 reads its flags only
// when the heap is set up and glibc its settings only at start, so a server started without them
// replaces itself (same pid, same descriptors: execve) with one started with them, before it has done
// anything.
//
// Why one arena: glibc gives each thread that allocates its own arena (up to 8 per core), and V8's GC
// threads and the libuv pool allocate and free there in bursts; an arena keeps what it grew to. Measured
// after the bench's burst at 100,000 agents on six workers: 28.1 -> 26.2–26.7 KiB of summed RSS per held
// agent, for 3–8 % more server CPU over the run (one arena's lock); docs/compatibility.md, The runtime.
import cluster from 'node:cluster';
import { NODE_FLAGS, START_ENV } from '../version';

/** Set on the re-executed process: never loop, and lets an operator opt out. */
export const NO_REEXEC_ENV = 'FLEET_SERVER_NO_REEXEC';

/** The shipped start environment's settings this environment lacks (an operator's own value stands). */
export function missingStartEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(Object.entries(START_ENV).filter(([k]) => env[k] === undefined));
}

/** A V8 or Node flag's name, as V8 reads it (`_` and `-` alike), without its value. */
export function flagName(arg: string): string {
  return arg.split('=')[0]!.replace(/_/g, '-');
}

/**
 * The shipped flags neither these arguments nor NODE_OPTIONS set, each by its name: an operator's own
 * value stands (Node reads NODE_OPTIONS first, so a shipped flag added on the command line would win).
 */
export function missingNodeFlags(execArgv: readonly string[], shipped: readonly string[] = NODE_FLAGS,
  nodeOptions: string | undefined = process.env['NODE_OPTIONS']): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map(flagName));
  return shipped.filter((f) => !given.has(flagName(f)));
}

export function ensureNodeFlags(): void {
  if (process.env[NO_REEXEC_ENV] || cluster.isWorker) return;
  const sea = isSingleExecutable();
  const missing = sea ? [] : missingNodeFlags(process.execArgv);
  const env = missingStartEnv();
  if (missing.length === 0 && Object.keys(env).length === 0) return;
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function' || process.argv[1] === undefined) return;
  // The single executable's own arguments start at argv[2] (argv[1] repeats its path).
  const args = sea ? [process.execPath, ...process.argv.slice(2)]
    : [process.execPath, ...process.execArgv, ...missing, process.argv[1], ...process.argv.slice(2)];
  execve.call(process, process.execPath, args, { ...process.env, ...env, [NO_REEXEC_ENV]: '1' });
}

/** Options of the command line that take the next word as their value (main.ts). */
const VALUED = new Set(['-c', '--config', '-E', '--E']);

/**
 * Whether a command line starts the server (no command word, or `run`; not --help or --version): it
 * re-executes itself into its start environment before the rest of the program loads
 * (runtime/early-start.ts). A line this misreads still re-executes, later, in the run command.
 */
export function isServerStart(args: readonly string[]): boolean {
  if (args.some((a) => a === '--help' || a === '-h' || a === '--version')) return false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (VALUED.has(a)) i++;
    else if (!a.startsWith('-')) return a === 'run';
  }
  return true;
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
