// Per-route limits and the profiles chosen by max_agents (or by memory), as upstream ships them.
export interface RouteLimit {
  intervalMs: number;
  burst: number;
  max: number;
  maxBody: number;
  maxBodyDecompressed: number;
}

export const ROUTES = [
  'action', 'policy', 'checkin', 'artifact', 'enroll', 'ack', 'status', 'opamp',
  'upload_start', 'upload_end', 'upload_chunk', 'file_delivery', 'pgp_retrieval', 'audit_unenroll',
] as const;
export type RouteName = (typeof ROUTES)[number];

const MiB = 1024 * 1024;
const KiB = 1024;

/** interval ms, burst, max, max body: the code defaults (no profile). */
const CODE_DEFAULTS: Record<RouteName, [number, number, number, number]> = {
  action: [0, 5, 0, 0],
  policy: [5, 1, 0, 0],
  checkin: [1, 1000, 0, 1 * MiB],
  artifact: [5, 25, 50, 0],
  enroll: [10, 50, 100, 512 * KiB],
  ack: [10, 50, 100, 2 * MiB],
  status: [5, 25, 50, 0],
  // max 200 (upstream: 0, none): see OPAMP_DECOMPRESSED below.
  opamp: [1, 1000, 200, 3 * MiB],
  upload_start: [2000, 5, 10, 5 * MiB],
  upload_end: [2000, 5, 10, 1 * KiB],
  upload_chunk: [3, 5, 10, 4 * MiB],
  file_delivery: [100, 5, 10, 0],
  pgp_retrieval: [5, 25, 50, 0],
  audit_unenroll: [10, 50, 100, 1 * KiB],
};

/**
 * OpAMP after gzip (and a WebSocket message): upstream applies no bound (its 3 MiB max_body is defined,
 * never applied) and the OpAMP spec recommends 64 MiB. A Collector's report is kilobytes (a large
 * effective configuration, hundreds of KiB), so 4 MiB: above the 3 MiB wire bound, so no uncompressed
 * body the wire bound admits is refused after it. And at most 200 HTTP messages (or WebSocket
 * handshakes) in flight, where upstream sets no max: polls every 30 s from 10,000 Collectors are ~330
 * a second, each handled in milliseconds, so a slow store makes Collectors wait (429, which opamp-go
 * retries with backoff) instead of piling up decoded messages. A WebSocket handles one message at a time.
 */
const OPAMP_DECOMPRESSED = 4 * MiB;

/** Bytes after gzip, where a route takes gzip bodies. Upstream bounds check-in only. */
const DECOMPRESSED_DEFAULTS: Partial<Record<RouteName, number>> = { checkin: 20 * MiB, opamp: OPAMP_DECOMPRESSED };

type Triple = [number, number, number];
interface Profile {
  name: string;
  minAgents: number;
  maxAgents: number;
  ramMiB: number;
  maxConnections: number;
  limits: Partial<Record<RouteName, Triple>>;
}

function profile(name: string, minAgents: number, maxAgents: number, ramMiB: number, maxConnections: number,
  action: Triple, policy: Triple, checkin: Triple, artifact: Triple, enroll: Triple, ack: Triple, status: Triple,
  uploadStart: Triple, uploadEnd: Triple, uploadChunk: Triple, fileDelivery: Triple, pgp: Triple, audit: Triple): Profile {
  return {
    name, minAgents, maxAgents, ramMiB, maxConnections,
    limits: {
      action, policy, checkin, artifact, enroll, ack, status, upload_start: uploadStart, upload_end: uploadEnd,
      upload_chunk: uploadChunk, file_delivery: fileDelivery, pgp_retrieval: pgp, audit_unenroll: audit,
    },
  };
}

const PROFILES: Profile[] = [
  profile('lte0500', 0, 500, 256, 1500, [5, 1, 0], [5, 1, 0], [5, 100, 500], [5, 100, 200], [10, 10, 20], [4, 100, 200], [5, 10, 20], [2000, 5, 5], [2000, 5, 5], [3, 5, 5], [100, 5, 5], [5, 100, 200], [4, 100, 200]),
  profile('lte1000', 501, 1000, 512, 3000, [5, 1, 0], [5, 1, 0], [5, 200, 1000], [5, 200, 400], [10, 20, 40], [4, 200, 400], [5, 20, 40], [2000, 5, 10], [2000, 5, 10], [3, 5, 10], [100, 5, 10], [5, 200, 400], [4, 200, 400]),
  profile('lte2500', 1001, 2500, 1024, 7000, [5, 1, 0], [5, 1, 0], [5, 500, 2500], [5, 500, 1000], [10, 50, 100], [4, 500, 1000], [5, 50, 100], [2000, 10, 20], [2000, 10, 20], [3, 10, 20], [100, 10, 20], [5, 500, 1000], [4, 500, 1000]),
  profile('lte5000', 2501, 5000, 2048, 12000, [5, 5, 0], [5, 1, 0], [2, 1000, 5000], [2, 1000, 2000], [10, 100, 200], [2, 1000, 2000], [5, 100, 200], [2000, 20, 40], [2000, 20, 40], [3, 20, 40], [100, 20, 40], [2, 1000, 2000], [2, 1000, 2000]),
  profile('lte10000', 5001, 10000, 4048, 22000, [1, 10, 0], [5, 1, 0], [1, 2000, 10000], [1, 2000, 4000], [10, 100, 200], [1, 2000, 4000], [5, 200, 400], [2000, 40, 80], [2000, 40, 80], [3, 40, 80], [100, 40, 80], [1, 2000, 4000], [1, 2000, 4000]),
  profile('lte20000', 10001, 20000, 8096, 42000, [1, 100, 0], [5, 1, 0], [0.5, 4000, 20000], [0.5, 4000, 8000], [10, 100, 200], [0.5, 4000, 8000], [5, 200, 400], [2000, 40, 80], [2000, 40, 80], [3, 40, 80], [100, 40, 80], [0.5, 4000, 8000], [0.5, 4000, 8000]),
  profile('lte40000', 20001, 40000, 16192, 0, [0.5, 100, 0], [2, 1, 0], [0.5, 4000, 40000], [0.5, 4000, 8000], [10, 100, 200], [0.5, 4000, 8000], [5, 200, 400], [2000, 40, 80], [2000, 40, 80], [3, 40, 80], [100, 40, 80], [0.5, 4000, 8000], [0.5, 4000, 8000]),
  profile('max', 40001, Number.MAX_SAFE_INTEGER, 32384, 0, [0.25, 100, 0], [0.25, 1, 0], [0.25, 8000, 80000], [0.25, 8000, 16000], [10, 200, 400], [0.25, 8000, 16000], [5, 200, 400], [2000, 40, 80], [2000, 40, 80], [3, 40, 80], [100, 40, 80], [0.25, 8000, 16000], [0.25, 8000, 16000]),
];

export interface ResolvedLimits {
  profile: string;
  maxConnections: number;
  routes: Record<RouteName, RouteLimit>;
}

function chooseProfile(maxAgents: number, memoryMiB: number): Profile | undefined {
  if (maxAgents < 0) return undefined;
  if (maxAgents > 0) return PROFILES.find((p) => maxAgents >= p.minAgents && maxAgents <= p.maxAgents);
  let best: Profile | undefined;
  for (const p of PROFILES) if (p.ramMiB <= memoryMiB) best = p;
  return best;
}

/** What a configuration sets for a route; a field left out takes the profile's value. */
export interface UserRouteLimit {
  intervalMs?: number;
  burst?: number;
  max?: number;
  maxBody?: number;
  maxBodyDecompressed?: number;
}

/**
 * Profile values, then the user's value for each field set. An explicit 0 for `interval`, `burst` or
 * `max` (and `max_connections`) turns that part off, which is what a 0 in the limiter itself means
 * (upstream's pkg/limit); upstream's config merge (mergeEnvLimit) would instead replace a written 0 by
 * the profile's value, so `enroll_limit.max: 0` silently kept enrollment capped. Body sizes keep
 * upstream's rule (0 = the default).
 */
export function resolveLimits(maxAgents: number, memoryMiB: number, userMaxConnections: number | undefined,
  user: Partial<Record<RouteName, UserRouteLimit>>): ResolvedLimits {
  const p = chooseProfile(maxAgents, memoryMiB);
  const routes = {} as Record<RouteName, RouteLimit>;
  for (const r of ROUTES) {
    const [ci, cb, cm, body] = CODE_DEFAULTS[r];
    const pl = r === 'opamp' ? undefined : p?.limits[r];
    const u = user[r] ?? {};
    routes[r] = {
      intervalMs: u.intervalMs ?? (pl ? pl[0] : ci),
      burst: u.burst ?? (pl ? pl[1] : cb),
      max: u.max ?? (pl ? pl[2] : cm),
      maxBody: u.maxBody || body,
      maxBodyDecompressed: u.maxBodyDecompressed || (DECOMPRESSED_DEFAULTS[r] ?? 0),
    };
  }
  return { profile: p?.name ?? 'default', maxConnections: userMaxConnections ?? (p?.maxConnections ?? 0), routes };
}
