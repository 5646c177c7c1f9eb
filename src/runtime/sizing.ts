// How many processes serve HTTP (inputs.0.server.workers), and each one's share of the limits that
// are meant for the whole server.
import { availableParallelism } from 'node:os';
import { memoryMiB, type FleetServerConfig } from '../config/config';
import type { ResolvedLimits, RouteLimit, RouteName } from '../config/limits';
import { cpuQuota } from '../util/cgroup';

export interface WorkerSizing {
  workers: number;
  /** Why this many, for the start-up line. */
  reason: string;
}

/** What `auto` sizes by: the CPUs Node may use, the control group's CPU quota (rounded up), and the memory the limit profile is chosen by. */
export interface HostResources {
  cpus: number;
  quota?: number;
  memoryMiB: number;
}

/**
 * Memory `auto` gives each process of a cluster, the primary counted: an idle process holds ~60 MiB of
 * RSS (~22 private, docs/workers.md, Cost) and a worker's heap grows several times that in a burst. Without
 * this, a container limited to 512 MiB on a 64-CPU node with no CPU quota (Kubernetes' usual pod without
 * a CPU limit) forked 64 workers, whose private memory alone (~1.4 GiB) is past the limit: the OOM
 * killer, not a server. 512 MiB: three workers; 256 MiB: one process.
 */
export const PROCESS_MEMORY_MIB = 128;

/**
 * `auto`: the control group's CPU quota, else the CPUs Node may use, whichever the store (on the
 * embedded store the primary owns the database: store-owner.ts), and no more processes than the memory
 * holds (PROCESS_MEMORY_MIB each). Agent mode does not ask: it runs in one process.
 */
export function chooseWorkers(config: FleetServerConfig): WorkerSizing {
  return sizeWorkers(config.server.workers, { cpus: availableParallelism(), quota: cpuQuota(), memoryMiB: memoryMiB() });
}

export function sizeWorkers(asked: number | 'auto', host: HostResources): WorkerSizing {
  if (asked !== 'auto') return { workers: Math.max(1, asked), reason: 'configured' };
  const quota = host.quota !== undefined && host.quota < host.cpus ? host.quota : undefined;
  const cpus = Math.max(1, quota ?? host.cpus);
  const mib = Math.round(host.memoryMiB);
  // The primary is a process too: a cluster of n workers is n + 1 of them.
  const byMemory = Math.max(1, Math.floor(host.memoryMiB / PROCESS_MEMORY_MIB) - 1);
  if (byMemory < cpus) return { workers: byMemory, reason: `${mib} MiB of memory (${cpus} CPUs)` };
  if (cpus <= 1) return { workers: 1, reason: 'one CPU' };
  return { workers: cpus, reason: quota !== undefined ? `${cpus} CPUs (control group quota)` : `${cpus} CPUs` };
}

/**
 * One worker's share of limits meant for the whole server: each route's rate (interval × n), burst and
 * concurrency cap (divided, rounded up) and max_connections. Connections are dealt to workers in turn,
 * so the shares fill evenly; a part that is off (0) stays off.
 */
export function shareLimits(limits: ResolvedLimits, n: number): ResolvedLimits {
  if (n <= 1) return limits;
  const share = (v: number): number => (v > 0 ? Math.ceil(v / n) : v);
  const routes = {} as Record<RouteName, RouteLimit>;
  for (const [name, l] of Object.entries(limits.routes) as [RouteName, RouteLimit][]) {
    routes[name] = { ...l, intervalMs: l.intervalMs > 0 ? l.intervalMs * n : l.intervalMs, burst: share(l.burst), max: share(l.max) };
  }
  return { ...limits, maxConnections: share(limits.maxConnections), routes };
}
