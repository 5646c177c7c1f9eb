// How many processes serve HTTP (inputs.0.server.workers), and each one's share of the limits that
// are meant for the whole server.
import { availableParallelism } from 'node:os';
import type { FleetServerConfig } from '../config/config';
import type { ResolvedLimits, RouteLimit, RouteName } from '../config/limits';
import { cpuQuota } from '../util/cgroup';

export interface WorkerSizing {
  workers: number;
  /** Why this many, for the start-up line. */
  reason: string;
}

/**
 * `auto`: the control group's CPU quota, else the CPUs Node may use, whichever the store (on the
 * embedded store the primary owns the database: store-owner.ts). Agent mode does not ask: it runs in
 * one process.
 */
export function chooseWorkers(config: FleetServerConfig): WorkerSizing {
  const asked = config.server.workers;
  const cpus = Math.min(cpuQuota() ?? Number.MAX_SAFE_INTEGER, availableParallelism());
  const wanted = asked === 'auto' ? cpus : asked;
  if (wanted <= 1) return { workers: 1, reason: asked === 'auto' ? 'one CPU' : 'configured' };
  return { workers: wanted, reason: asked === 'auto' ? `${cpus} CPUs` : 'configured' };
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
