// What the benchmarks share: waiting for a condition, the Elasticsearch double in its own process, and a
// server's processes (its workers, their RSS and CPU).
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, getPriority, loadavg, setPriority } from 'node:os';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const doubleJs = new URL('../../dist/es-double.js', import.meta.url).pathname;

/**
 * Polls fn every `intervalMs` (100 ms) until it returns something truthy (errors count as not yet). A
 * time measured with it is late by up to one interval plus one call of fn: the start-up measurement polls
 * every 5 ms.
 */
export async function waitFor(what, fn, timeoutMs = 30_000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Fails unless every port is free: a server still holding them (an earlier run lingering or in its
 * storms) would answer this run's health checks, while its own server exited on EADDRINUSE and the load
 * generators waited for it.
 */
export async function ensurePortsFree(ports) {
  for (const port of ports) {
    await new Promise((resolve, reject) => {
      const probe = createServer();
      probe.once('error', (err) => reject(new Error(`port ${port} is taken (${err.code}): is another bench still running?`)));
      probe.listen(port, '127.0.0.1', () => probe.close(resolve));
    });
  }
}

/** Starts the Elasticsearch double on `port`; resolves with the process and its service token. */
export async function startDouble(port) {
  // BENCH_DOUBLE_FLAGS: Node flags for the double (e.g. --cpu-prof, to see what limits it at scale).
  const flags = (process.env.BENCH_DOUBLE_FLAGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...flags, doubleJs, '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  const token = await waitFor('the Elasticsearch double', () => /service token: (\S+)/.exec(out)?.[1]);
  return { proc, token };
}

/** Every process's children, by parent pid, as /proc has them now. */
function childrenByParent() {
  const children = new Map();
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const ppid = Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(p)]);
    } catch { /* gone meanwhile */ }
  }
  return children;
}

/** The processes a process started, now: a server's cluster workers. */
export function childPids(pid) {
  return childrenByParent().get(pid) ?? [];
}

const trees = new Map();
/** The process and every process under it (a server's cluster workers), looked up at most once a second. */
function processTree(pid) {
  const known = trees.get(pid);
  if (known && performance.now() - known.at < 1000) return known.pids;
  const children = childrenByParent();
  const pids = [];
  for (const todo = [pid]; todo.length > 0;) {
    const p = todo.pop();
    pids.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  trees.set(pid, { at: performance.now(), pids });
  return pids;
}

/** A field of /proc/<pid>/<file>, in KiB, for a server's process (first) and each of its cluster workers. */
function eachOverTree(pid, file, field) {
  return processTree(pid).map((p) => {
    try {
      return Number(field.exec(readFileSync(`/proc/${p}/${file}`, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0; // gone meanwhile
    }
  });
}

/** The same field summed over the server's processes. */
function sumOverTree(pid, file, field) {
  return eachOverTree(pid, file, field).reduce((a, b) => a + b, 0);
}

/** RSS in KiB of each of a server's processes: the first is the server's own (the primary). */
export function rssEachKiB(pid) {
  return eachOverTree(pid, 'status', /VmRSS:\s+(\d+)/);
}

/** RSS in KiB of a server: its process and its cluster workers (inputs.0.server.workers). */
export function rssKiB(pid) {
  return sumOverTree(pid, 'status', /VmRSS:\s+(\d+)/);
}

/**
 * Waits until a server's RSS has stopped falling: a look every 10 s (each process's memory trim looks every
 * 10 s) until one without a 1 % drop, at most six looks. Resolves with the seconds waited. The idle and the
 * held readings both take it, after the same 25 s, so that "over idle" compares like with like.
 */
export async function rssSettled(pid) {
  let waited = 0;
  for (let prev = rssKiB(pid), i = 0; i < 6; i++) {
    await sleep(10_000);
    waited += 10;
    const now = rssKiB(pid);
    if (now > prev * 0.99) break;
    prev = now;
  }
  return waited;
}

/**
 * Proportional set size in KiB of a server's processes: pages shared between them (the Node binary's
 * code, ~50 MiB, mapped by every worker) counted once over all, as the machine pays for them. Summed RSS
 * counts them once per process.
 */
export function pssKiB(pid) {
  return sumOverTree(pid, 'smaps_rollup', /^Pss:\s+(\d+)/m);
}

const TICKS_PER_SECOND = 100;
/** CPU seconds (user + system) used so far by a server: its process and its cluster workers. */
export function cpuSeconds(pid) {
  return cpuSecondsOf(processTree(pid));
}

/** CPU seconds (user + system) used so far by these processes alone (not their children). */
export function cpuSecondsOf(pids) {
  let ticks = 0;
  for (const p of pids) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* gone meanwhile */ }
  }
  return ticks / TICKS_PER_SECOND;
}

/** What the printed overflow counts are, said once beside each. */
export const OVERFLOWS_MEANING = "the kernel's, system-wide: attempts a full accept queue dropped, each retried by its client after ≥ 1 s";

/**
 * The kernel's count of connections its listen queues dropped (TcpExt ListenOverflows, system-wide): each a
 * SYN or handshake a full accept queue refused, which the client retries only after its 1-s (then 3, 7,
 * 15 s…) retransmission timer. Undefined where /proc/net/netstat is not there.
 */
export function listenOverflows() {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const [names, values] = lines.map((l) => l.trim().split(/\s+/));
    const at = names.indexOf('ListenOverflows');
    return at < 0 ? undefined : Number(values[at]);
  } catch {
    return undefined;
  }
}

/**
 * The nice value the load generators run at: the server workers' (on the embedded store they run below
 * the primary, src/runtime/worker-priority.ts). The generators stand in for agents on other machines;
 * at a higher priority than the workers they would take the cores from them (at 100,000 agents a drain
 * then overran its deadline), at a lower one they would starve and under-load the server.
 */
export function generatorNice(serverPid) {
  const niceOf = (p) => {
    try {
      return getPriority(p);
    } catch {
      return undefined; // gone meanwhile
    }
  };
  const nice = childPids(serverPid).map(niceOf).filter((n) => n !== undefined);
  return nice.length > 0 ? Math.max(...nice) : (niceOf(serverPid) ?? 0);
}

/** Sets this process's nice value, each of its threads (Linux; elsewhere the main thread). */
export function runAtNice(nice) {
  let threads = [0];
  try {
    threads = readdirSync('/proc/self/task').map(Number);
  } catch { /* no /proc */ }
  for (const t of threads) {
    try {
      setPriority(t, nice);
    } catch { /* a thread gone meanwhile */ }
  }
}

/**
 * The machine's conditions, printed at the start and end of each run: load average (1, 5, 15 min), CPUs,
 * Node (the server runs on the same binary), and the commit the working tree is at (dist/ is what runs:
 * it may be built from uncommitted changes, said as "+ uncommitted changes").
 */
export function machineText() {
  const repo = new URL('../..', import.meta.url).pathname;
  let commit = '?';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repo, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    if (dirty) commit += ' + uncommitted changes';
    // The bench runs dist/, which may predate the commit it is credited to.
    const committed = Number(execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: repo, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()) * 1000;
    const built = statSync(new URL('../../dist/fleet-server.js', import.meta.url)).mtimeMs;
    if (built < committed) commit += ' (dist/ built before this commit: stale)';
  } catch { /* not a git checkout */ }
  let load;
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    load = loadavg().map((n) => n.toFixed(2)).join(' ');
  }
  return `load average ${load}, ${availableParallelism()} CPUs, Node ${process.version}, commit ${commit}, ${new Date().toISOString()}`;
}
