// The control group this process runs in, as libbeat's process metrics report it (`cgroup` in /stats):
// CPU quota and throttling, CPU time, memory usage and limit. cgroup v1 (one hierarchy per controller)
// and v2 (one unified hierarchy); Linux only, undefined elsewhere or when nothing can be read.
import { existsSync, readFileSync } from 'node:fs';

const ROOT = '/sys/fs/cgroup';

/**
 * `dir`/`name`, by concatenation: path.join normalises character by character, and start-up reads these
 * files (sizing, the limit profile) while its hot functions must stay under V8's Maglev threshold
 * (runtime/start-up-tiering.ts); /proc/self/cgroup gives absolute, normalised paths.
 */
function join(dir: string, name: string): string {
  if (name === '' || name === '/') return dir;
  return `${dir.endsWith('/') ? dir.slice(0, -1) : dir}/${name.startsWith('/') ? name.slice(1) : name}`;
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function num(text: string | undefined): number | undefined {
  if (text === undefined || text === 'max') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** `key value` lines (cpu.stat). */
function keyed(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}

/** The directory of a controller's group: the path as /proc names it, or the mount itself inside a container. */
function groupDir(mount: string, path: string): string {
  const full = join(mount, path);
  return existsSync(full) ? full : mount;
}

/** controller → path, from /proc/self/cgroup. */
function membership(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (read('/proc/self/cgroup') ?? '').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1]!.split(',')) out.set(c, m[2]!);
  }
  return out;
}

export function cgroupMetrics(): Record<string, unknown> | undefined {
  const groups = membership();
  if (groups.size === 0) return undefined;
  if (existsSync(join(ROOT, 'cgroup.controllers'))) {
    const id = groups.get('') ?? '/';
    const dir = groupDir(ROOT, id);
    const stat = keyed(read(join(dir, 'cpu.stat')));
    const limit = num(read(join(dir, 'memory.max')));
    return {
      cpu: { id, stats: { periods: stat['nr_periods'] ?? 0, throttled: { periods: stat['nr_throttled'] ?? 0, ns: (stat['throttled_usec'] ?? 0) * 1000 } } },
      memory: { id, mem: { usage: { bytes: num(read(join(dir, 'memory.current'))) ?? 0 }, ...(limit !== undefined ? { limit: { bytes: limit } } : {}) } },
    };
  }
  const out: Record<string, unknown> = {};
  const cpuId = groups.get('cpu');
  if (cpuId !== undefined) {
    const mount = existsSync(join(ROOT, 'cpu')) ? join(ROOT, 'cpu') : join(ROOT, 'cpu,cpuacct');
    const dir = groupDir(mount, cpuId);
    const stat = keyed(read(join(dir, 'cpu.stat')));
    out['cpu'] = {
      id: cpuId,
      cfs: { period: { us: num(read(join(dir, 'cpu.cfs_period_us'))) ?? 0 }, quota: { us: num(read(join(dir, 'cpu.cfs_quota_us'))) ?? 0 } },
      stats: { periods: stat['nr_periods'] ?? 0, throttled: { periods: stat['nr_throttled'] ?? 0, ns: stat['throttled_time'] ?? 0 } },
    };
  }
  const acctId = groups.get('cpuacct');
  if (acctId !== undefined) {
    const mount = existsSync(join(ROOT, 'cpuacct')) ? join(ROOT, 'cpuacct') : join(ROOT, 'cpu,cpuacct');
    out['cpuacct'] = { id: acctId, total: { ns: num(read(join(groupDir(mount, acctId), 'cpuacct.usage'))) ?? 0 } };
  }
  const memId = groups.get('memory');
  if (memId !== undefined) {
    const dir = groupDir(join(ROOT, 'memory'), memId);
    out['memory'] = { id: memId, mem: {
      limit: { bytes: num(read(join(dir, 'memory.limit_in_bytes'))) ?? 0 },
      usage: { bytes: num(read(join(dir, 'memory.usage_in_bytes'))) ?? 0 },
    } };
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * The CPUs this process's control group may use (its CFS quota over its period, rounded up), or
 * undefined when there is no quota. v2: `cpu.max` ("max 100000" or "200000 100000"); v1: cfs_quota_us.
 */
export function cpuQuota(): number | undefined {
  const groups = membership();
  let quota: number | undefined;
  let period: number | undefined;
  if (existsSync(join(ROOT, 'cgroup.controllers'))) {
    const [q, p] = (read(join(groupDir(ROOT, groups.get('') ?? '/'), 'cpu.max')) ?? '').split(/\s+/);
    quota = num(q);
    period = num(p);
  } else if (groups.has('cpu')) {
    const mount = existsSync(join(ROOT, 'cpu')) ? join(ROOT, 'cpu') : join(ROOT, 'cpu,cpuacct');
    const dir = groupDir(mount, groups.get('cpu')!);
    quota = num(read(join(dir, 'cpu.cfs_quota_us')));
    period = num(read(join(dir, 'cpu.cfs_period_us')));
  }
  if (quota === undefined || period === undefined || quota <= 0 || period <= 0) return undefined;
  return Math.max(1, Math.ceil(quota / period));
}

/**
 * The control group's memory limit in bytes (v2 `memory.max`, v1 `memory.limit_in_bytes`), or undefined
 * when there is none (v1 reports "no limit" as a number near 2^63).
 */
export function memoryLimit(): number | undefined {
  const groups = membership();
  const limit = existsSync(join(ROOT, 'cgroup.controllers'))
    ? num(read(join(groupDir(ROOT, groups.get('') ?? '/'), 'memory.max')))
    : groups.has('memory') ? num(read(join(groupDir(join(ROOT, 'memory'), groups.get('memory')!), 'memory.limit_in_bytes'))) : undefined;
  return limit !== undefined && limit > 0 && limit < 2 ** 60 ? limit : undefined;
}
