// /stats of a cluster (src/runtime/cluster-stats.ts): its status says when a worker is missing.
import { CarriedCounters, clusterStats, clusterStatus, type WorkerStats } from '../../src/runtime/cluster-stats';

const worker = (slot: number, status: string): WorkerStats => ({ slot, pid: 100 + slot, doc: { fleet: { status } } });

test('the least healthy worker sets the status when every worker answered', () => {
  expect(clusterStats({}, [worker(1, 'HEALTHY'), worker(2, 'HEALTHY')], { size: 2, restarts: 0 }).fleet).toMatchObject({ status: 'HEALTHY' });
  expect(clusterStatus(['HEALTHY', 'DEGRADED', 'HEALTHY'], 3)).toBe('DEGRADED');
  expect(clusterStatus(['HEALTHY', 'FAILED'], 2)).toBe('FAILED');
});

test('DEGRADED while fewer workers answered than the server has, however healthy those are', () => {
  const doc = clusterStats({}, [worker(1, 'HEALTHY')], { size: 2, restarts: 1 });
  expect(doc.fleet).toMatchObject({ status: 'DEGRADED', cluster: { workers: 2, answering: 1, restarts: 1 } });
  // A worse status than DEGRADED stays.
  expect(clusterStatus(['FAILED'], 2)).toBe('FAILED');
});

test('no worker answering is DEGRADED (busy past the wait, or being replaced), not HEALTHY', () => {
  expect(clusterStats({}, [], { size: 2, restarts: 0 }).fleet).toMatchObject({ status: 'DEGRADED' });
});

describe('counters only grow (Prometheus takes a decrease for a reset; Kibana derives CPU from beat.cpu)', () => {
  const doc = (n: number, open: number, close: number): WorkerStats['doc'] => ({
    http_server: { tcp_open: open, tcp_close: close, tcp_active: open - close, routes: { checkin: { active: 2, total: n, fail: 1 } }, cpu: { total: { value: n * 10 } } },
    beat: { cpu: { total: { value: n * 10 } }, memstats: { rss: 1000 } },
    fleet: { status: 'HEALTHY', auth_cache: { hits: n, misses: 1 }, http: { admission: { pending: 3, turned_away: n } } },
  });
  const at = (slot: number, pid: number, d: WorkerStats['doc']): WorkerStats => ({ slot, pid, doc: d });
  const totals = (s: ReturnType<typeof clusterStats>): unknown => {
    const h = s['http_server'] as any;
    return { total: h.routes.checkin.total, active: h.routes.checkin.active, open: h.tcp_open, close: h.tcp_close, tcpActive: h.tcp_active,
      cpu: (s['beat'] as any).cpu.total.value, hits: (s['fleet'] as any).auth_cache.hits, turned: (s['fleet'] as any).http.admission.turned_away };
  };

  test('a worker that answers late counts with its last figures; its gauges do not', () => {
    const carried = new CarriedCounters();
    const both = [at(1, 11, doc(100, 50, 10)), at(2, 12, doc(200, 60, 20))];
    const first = clusterStats({}, both, { size: 2, restarts: 0 }, carried.carry(both));
    expect(totals(first)).toEqual({ total: 300, active: 4, open: 110, close: 30, tcpActive: 80, cpu: 3000, hits: 300, turned: 300 });
    const late = [at(1, 11, doc(110, 55, 12))];
    expect(totals(clusterStats({}, late, { size: 2, restarts: 0 }, carried.carry(late))))
      .toEqual({ total: 310, active: 2, open: 115, close: 32, tcpActive: 83, cpu: 3100, hits: 310, turned: 310 });
  });

  test('a worker that ended keeps what it counted, its connections closed; its replacement counts from there', () => {
    const carried = new CarriedCounters();
    const both = [at(1, 11, doc(100, 50, 10)), at(2, 12, doc(200, 60, 20))];
    clusterStats({}, both, { size: 2, restarts: 0 }, carried.carry(both));
    carried.exited(2, 12);
    const one = [at(1, 11, doc(100, 50, 10))];
    expect(totals(clusterStats({}, one, { size: 2, restarts: 1 }, carried.carry(one))))
      .toEqual({ total: 300, active: 2, open: 110, close: 70, tcpActive: 40, cpu: 3000, hits: 300, turned: 300 });
    // The replacement in slot 2 starts from zero; a replacement seen without its exit (pid changed) is carried too.
    const replaced = [at(1, 11, doc(100, 50, 10)), at(2, 13, doc(5, 3, 1))];
    expect(totals(clusterStats({}, replaced, { size: 2, restarts: 1 }, carried.carry(replaced))))
      .toEqual({ total: 305, active: 4, open: 113, close: 71, tcpActive: 42, cpu: 3050, hits: 305, turned: 305 });
    const again = [at(1, 11, doc(100, 50, 10)), at(2, 14, doc(1, 1, 0))];
    expect(totals(clusterStats({}, again, { size: 2, restarts: 2 }, carried.carry(again))))
      .toEqual({ total: 306, active: 4, open: 114, close: 73, tcpActive: 41, cpu: 3060, hits: 306, turned: 306 });
  });

  test('open files are summed with their limits: the ratio the agent shows stays a ratio', () => {
    const w = (open: number): WorkerStats => ({ slot: 1, pid: 1, doc: { beat: { handles: { open, limit: { soft: 1000, hard: 2000 } } }, fleet: { status: 'HEALTHY' } } });
    const s = clusterStats({ handles: { open: 10, limit: { soft: 1000, hard: 2000 } } }, [w(500), { ...w(300), slot: 2, pid: 2 }], { size: 2, restarts: 0 });
    expect((s['beat'] as any).handles).toEqual({ open: 810, limit: { soft: 3000, hard: 6000 } });
  });
});
