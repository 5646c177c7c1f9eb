// The HTTP service's counters, as upstream's metrics registry names them (api/metrics.go): connections
// and, per route, active / total / limit_rate / limit_max / fail / drop / body_in / body_out. Plain
// numbers moved on the request path; the metrics listener reads them when asked.

/** Upstream's route names in /stats and /metrics (case as upstream writes them). */
export const ROUTE_METRICS = [
  'checkin', 'enroll', 'artifacts', 'acks', 'status', 'opAMP', 'uploadStart', 'uploadChunk', 'uploadEnd', 'deliverFile',
  'getPGPKey', 'auditUnenroll',
] as const;
export type RouteMetric = (typeof ROUTE_METRICS)[number];

export class RouteCounters {
  /** Requests being handled (for check-in: held long polls). */
  active = 0;
  total = 0;
  limit_rate = 0;
  limit_max = 0;
  /** Requests that ended in an error answer. */
  fail = 0;
  /** Requests whose client went away. */
  drop = 0;
  body_in = 0;
  body_out = 0;
}

/** Counted once per request: upstream counts every route but OpAMP twice (two limiter layers); nothing relies on that. */
export function routeCounters(): Record<RouteMetric, RouteCounters> {
  return Object.fromEntries(ROUTE_METRICS.map((r) => [r, new RouteCounters()])) as Record<RouteMetric, RouteCounters>;
}
