// /stats of a cluster (src/runtime/cluster-stats.ts): its status says when a worker is missing.
import { clusterStats, clusterStatus, type WorkerStats } from '../../src/runtime/cluster-stats';

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
