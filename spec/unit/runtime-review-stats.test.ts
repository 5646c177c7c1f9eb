// /stats of a cluster (src/runtime/cluster-stats.ts) when scrapes overlap: a scrape that still waits for a
// busy worker ends after a later one, holding older answers of the workers that did answer it.
import { CarriedCounters, clusterStats, type WorkerStats } from '../../src/runtime/cluster-stats';

const doc = (n: number): WorkerStats['doc'] => ({
  http_server: { tcp_open: n, tcp_close: 0, routes: { checkin: { total: n } } },
  fleet: { status: 'HEALTHY', auth_cache: { hits: n, misses: 0 } },
});
const total = (s: ReturnType<typeof clusterStats>): number => (s['http_server'] as { routes: { checkin: { total: number } } }).routes.checkin.total;
const carriedTotal = (o: Record<string, unknown>): number => (o['http_server'] as { routes?: { checkin?: { total?: number } } } | undefined)?.routes?.checkin?.total ?? 0;

// Scrape A asks (questions 1 and 2); worker 1 answers at once, worker 2 is busy. Scrape B asks 250 ms
// later (questions 3 and 4), both answer, and B ends first; A ends at its wait, worker 2 left out.
const aAnswer: WorkerStats = { slot: 1, pid: 11, doc: doc(150), seq: 1 };
const bAnswers: WorkerStats[] = [{ slot: 1, pid: 11, doc: doc(200), seq: 3 }, { slot: 2, pid: 12, doc: doc(100), seq: 4 }];

test('an older answer recorded after a newer one is not what an exit keeps', () => {
  const carried = new CarriedCounters();
  carried.carry(bAnswers);
  carried.carry([aAnswer]);
  // Worker 1 ends: what it had counted by B's answer (200) stays, not A's (150).
  carried.exited(1, 11);
  expect(carriedTotal(carried.carry([{ slot: 1, pid: 21, doc: doc(0), seq: 5 }, { slot: 2, pid: 12, doc: doc(100), seq: 6 }]))).toBe(200);
});

test('the scrape that ends last, holding an older answer, reports no less than the one before it', () => {
  const carried = new CarriedCounters();
  const report = (answered: WorkerStats[]): number => {
    const fresh = carried.newest(answered);
    return total(clusterStats({}, fresh, { size: 2, restarts: 0 }, carried.carry(fresh)));
  };
  expect(report(bAnswers)).toBe(300);
  expect(report([aAnswer])).toBe(300);
  // A replacement's answer is never swapped for its predecessor's.
  expect(carried.newest([{ slot: 1, pid: 21, doc: doc(0), seq: 2 }])[0]!.doc).toEqual(doc(0));
});
