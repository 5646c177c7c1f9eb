// The /stats document of a server running in several workers: the workers' documents summed into one
// (counters, gauges, memory and CPU of every process, the primary's included), so that dashboards see one
// server; beyond upstream, `fleet.workers` lists each worker's own figures.
import type { StatsDocument } from '../http/metrics';
import { add, counters, ended, sum, withCarried } from '../http/stats-counters';
import { isPlainObject } from '../util/is-object';

type Obj = Record<string, unknown>;

function pick(o: unknown, keys: string[]): Obj {
  const src = isPlainObject(o) ? o : {};
  return Object.fromEntries(keys.filter((k) => k in src).map((k) => [k, src[k]]));
}

function omit(o: unknown, keys: string[]): Obj {
  return Object.fromEntries(Object.entries(isPlainObject(o) ? o : {}).filter(([k]) => !keys.includes(k)));
}

/**
 * Process metrics of every process added up, open files and their limits too (each process has its own
 * limit: the agent shows open / limit, which a sum over one process's limit would inflate N-fold); what
 * describes the box or the program (cgroup, uptime) is the primary's.
 */
function processes(primary: Obj, workers: Obj[]): Obj {
  const total = sum([omit(primary, ['info', 'cgroup']), ...workers.map((w) => omit(w, ['info', 'cgroup']))]);
  for (const k of ['info', 'cgroup']) if (k in primary) total[k] = primary[k];
  return total;
}

const STATE_RANK: Record<string, number> = { HEALTHY: 0, STARTING: 1, CONFIGURING: 1, DEGRADED: 2, STOPPING: 3, STOPPED: 3, FAILED: 4 };

/**
 * The server is as healthy as its least healthy worker, and no better than DEGRADED while fewer than
 * `size` answered (one crashed and not yet replaced, or too busy to answer): the agents it held are
 * reconnecting to the others. None answering is DEGRADED too, not FAILED: every worker may be busy past
 * the wait (a burst of first check-ins), and crashed ones are being replaced; the primary exits when
 * none can start (cluster-supervision.ts).
 */
export function clusterStatus(states: string[], size: number): string {
  if (states.length === 0) return 'DEGRADED';
  const worst = (w: string, s: string): string => ((STATE_RANK[s] ?? 4) > (STATE_RANK[w] ?? 4) ? s : w);
  const status = states.reduce(worst);
  return states.length < size ? worst(status, 'DEGRADED') : status;
}

export interface WorkerStats {
  slot: number;
  pid: number;
  doc: StatsDocument;
  /** Which question it answered (the primary numbers them in order): of two answers, the later question's is newer. */
  seq?: number;
}

/** Whether `a` answered an earlier question than `b` (unnumbered answers are taken in the order they come). */
function older(a: WorkerStats, b: WorkerStats): boolean {
  return a.seq !== undefined && b.seq !== undefined && a.seq < b.seq;
}

/**
 * What the answering workers' documents lack of the server's counters: the last counts of workers that
 * did not answer in time (busy, or gone and not yet replaced), and all that ended workers had counted.
 * Without it a late answer or a replaced worker made every total go down and back up.
 */
export class CarriedCounters {
  private readonly last = new Map<number, WorkerStats>();
  private finished: Obj = {};

  /** A worker process has ended: what it counted is kept, its connections closed. */
  exited(slot: number, pid: number | undefined): void {
    const prev = this.last.get(slot);
    if (!prev || prev.pid !== pid) return;
    this.finished = add(this.finished, ended(prev.doc, 'process')) as Obj;
    this.last.delete(slot);
  }

  /**
   * `answered`, each with the newest document known of its worker. Scrapes overlap (a new one may start
   * 250 ms after another that still waits up to 5 s for a busy worker), so the one that ends last may
   * hold the older answer of a worker: reported as is, its totals went down, and recorded, a later exit
   * of that worker kept the older counts for good.
   */
  newest(answered: WorkerStats[]): WorkerStats[] {
    return answered.map((w) => {
      const prev = this.last.get(w.slot);
      return prev && prev.pid === w.pid && older(w, prev) ? prev : w;
    });
  }

  /** Records `answered` (an answer older than the one recorded is not), and returns what to add to the document they make. */
  carry(answered: WorkerStats[]): Obj {
    for (const w of answered) {
      const prev = this.last.get(w.slot);
      // Replaced without its exit seen here.
      if (prev && prev.pid !== w.pid) this.exited(w.slot, prev.pid);
      else if (prev && older(w, prev)) continue;
      this.last.set(w.slot, w);
    }
    const slots = new Set(answered.map((w) => w.slot));
    const late = [...this.last].filter(([slot]) => !slots.has(slot)).map(([, l]) => counters(l.doc, 'process'));
    return sum([this.finished, ...late]);
  }
}

export function clusterStats(primaryProcess: Obj, workers: WorkerStats[], cluster: { size: number; restarts: number }, carried: Obj = {}): StatsDocument {
  const docs = workers.map((w) => w.doc);
  const proc = processes(primaryProcess, docs.map((d) => (isPlainObject(d['beat']) ? d['beat'] : {})));
  const http = sum(docs.map((d) => pick(d['http_server'], ['tcp_open', 'tcp_close', 'tcp_active', 'routes'])));
  const fleets = docs.map((d) => (isPlainObject(d['fleet']) ? d['fleet'] : {}));
  const fleet = sum(fleets.map((f) => omit(f, ['status', 'event_loop'])));
  fleet['status'] = clusterStatus(fleets.map((f) => String(f['status'] ?? 'FAILED')), cluster.size);
  // Delays are not additive: the worst worker's.
  const delay = (k: string): number => Math.max(0, ...fleets.map((f) => {
    const d = (f['event_loop'] as { delay?: Obj } | undefined)?.delay?.[k];
    return typeof d === 'number' ? d : 0;
  }));
  fleet['event_loop'] = { delay: { p50_ms: delay('p50_ms'), p99_ms: delay('p99_ms'), max_ms: delay('max_ms') } };
  fleet['cluster'] = { workers: cluster.size, answering: workers.length, restarts: cluster.restarts };
  fleet['workers'] = workers.map((w) => {
    const f = isPlainObject(w.doc['fleet']) ? w.doc['fleet'] : {};
    const mem = (w.doc['beat'] as { memstats?: { rss?: number } } | undefined)?.memstats;
    return {
      slot: w.slot, pid: w.pid, status: f['status'], checkin: f['checkin'], http: f['http'],
      tcp_open: (w.doc['http_server'] as Obj | undefined)?.['tcp_open'], tcp_active: (w.doc['http_server'] as Obj | undefined)?.['tcp_active'],
      rss: mem?.rss,
    };
  });
  return withCarried({ http_server: { ...http, ...proc }, beat: proc, fleet }, carried);
}
