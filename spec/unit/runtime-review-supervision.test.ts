// The primary's supervision (src/runtime/cluster.ts runPrimary) over a stand-in for node:cluster: workers
// are event emitters whose messages, exits and spawn failures the test makes, on a fake clock.
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capturingLogger, FakeProcess, FakeWorker, guardPrimaryProcess, resetFakeCluster, type FakeCluster } from '../support/fake-cluster';

jest.mock('node:cluster', () => jest.requireActual<typeof import('../support/fake-cluster')>('../support/fake-cluster').fakeClusterModule());

// Required after the mock (imports would be read before it).
/** How the next fork fails: thrown at once (ENOMEM), or said later in an 'error' (EAGAIN, EMFILE). */
const cluster = (require('node:cluster') as { default: FakeCluster & { failNext?: 'throw' | 'error' } }).default;
const { runPrimary, workerMessage } = require('../../src/runtime/cluster') as typeof import('../../src/runtime/cluster');
const { buildConfig } = require('../../src/config/config') as typeof import('../../src/config/config');

const EVENTS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'unhandledRejection'];
const guard = guardPrimaryProcess(EVENTS);
let forks: FakeWorker[];
let lines: Record<string, unknown>[];

beforeEach(() => {
  jest.useFakeTimers();
  // Back-off waits without their jitter: 500 ms, then 1 s, 2 s…
  jest.spyOn(Math, 'random').mockReturnValue(0.5);
  forks = [];
  lines = [];
  cluster.failNext = undefined;
  resetFakeCluster(cluster, forks, 90_000, (id, pid) => {
    const failing = cluster.failNext;
    cluster.failNext = undefined;
    if (failing === 'throw') throw Object.assign(new Error('spawn ENOMEM'), { code: 'ENOMEM', errno: -12, syscall: 'spawn' });
    const w = new FakeWorker(id, new FakeProcess(failing === 'error' ? undefined : pid));
    if (failing === 'error') {
      // As Node says a spawn that failed: an 'error' on the next tick, and no exit ever.
      process.nextTick(() => w.process.emit('error', Object.assign(new Error('spawn EAGAIN'), { code: 'EAGAIN', errno: -11, syscall: 'spawn' })));
    }
    // Node's cluster Worker passes its process's errors on.
    w.process.on('error', (err) => w.emit('error', err));
    return w;
  });
});


function start(size = 2, metricsSocket?: string): Promise<void> {
  const config = buildConfig({ inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port: 0, internal_port: 0, workers: size } }],
    ...(metricsSocket ? { http: { enabled: true, host: `unix://${metricsSocket}` } } : {}) });
  return runPrimary(config, capturingLogger(lines), size);
}

/** Every forked worker not yet ready says it is. */
function allReady(): void {
  for (const w of forks) if (w.process.pid !== undefined) w.emit('message', { t: 'ready' });
}

/** The primary's stop (SIGTERM), each worker exiting as `exits` says (default: 0); resolves to the exit code. */
async function stop(exits: (w: FakeWorker) => [number | null, string | null] = () => [0, null]): Promise<unknown> {
  process.emit('SIGTERM' as never);
  await jest.advanceTimersByTimeAsync(0);
  for (const w of forks) {
    if (w.process.pid === undefined || w.process.listenerCount('close') === 0) continue;
    const [code, signal] = exits(w);
    cluster.emit('exit', w, code, signal);
    w.process.emit('close', code, signal);
  }
  for (let i = 0; i < 20 && guard.exit.mock.calls.length === 0; i++) await jest.advanceTimersByTimeAsync(10);
  return guard.exit.mock.calls[0]?.[0];
}

describe('a replacement that cannot be started', () => {
  test("a spawn Node says failed ('error', no exit: EAGAIN, EMFILE) is a failed start, retried after its pause", async () => {
    const primary = start();
    await jest.advanceTimersByTimeAsync(0);
    expect(forks).toHaveLength(2);
    allReady();
    await primary;
    // Worker 1 crashes a second after it was ready; its replacement cannot be spawned.
    await jest.advanceTimersByTimeAsync(1000);
    cluster.failNext = 'error';
    cluster.emit('exit', forks[0], 1, null);
    // The replacement is forked 500 ms later (its 'error', unheard, used to end the primary and every worker).
    await jest.advanceTimersByTimeAsync(1000);
    expect(forks).toHaveLength(3);
    expect(lines.find((l) => String(l['error.message'] ?? '').includes('EAGAIN'))).toMatchObject({ 'worker.slot': 1 });
    // Retried after a pause (1 s), not at once, and not never.
    await jest.advanceTimersByTimeAsync(3000);
    expect(forks).toHaveLength(4);
    expect(Object.values(cluster.workers)).not.toContain(forks[2]);
    allReady();
    expect(await stop()).toBe(0);
  });

  test('a fork that throws (ENOMEM) is a failed start, retried after its pause', async () => {
    const primary = start();
    await jest.advanceTimersByTimeAsync(0);
    allReady();
    await primary;
    await jest.advanceTimersByTimeAsync(1000);
    cluster.failNext = 'throw';
    cluster.emit('exit', forks[1], null, 'SIGSEGV');
    // The replacement's timer (whose throw used to end the primary) fails that start.
    await jest.advanceTimersByTimeAsync(1000);
    expect(cluster.fork).toHaveBeenCalledTimes(3);
    expect(forks).toHaveLength(2);
    await jest.advanceTimersByTimeAsync(3000);
    expect(forks).toHaveLength(3);
    allReady();
    expect(await stop()).toBe(0);
  });

  test('at start-up, a fork that throws fails the start with its reason, and the worker already forked is killed', async () => {
    const normal = cluster.fork.getMockImplementation()!;
    cluster.fork.mockImplementationOnce(normal).mockImplementationOnce(() => {
      throw Object.assign(new Error('spawn ENOMEM'), { code: 'ENOMEM' });
    });
    const primary = start();
    const outcome = expect(primary).rejects.toThrow(/cannot start worker 2: .*ENOMEM/);
    await jest.advanceTimersByTimeAsync(0);
    await outcome;
    expect(forks[0]!.process.signals).toEqual(['SIGKILL']);
  });
});

describe('crash loops, hangs and a stop meanwhile', () => {
  test('a replacement crashing at every start is forked at a growing pace, not at full speed', async () => {
    const primary = start();
    await jest.advanceTimersByTimeAsync(0);
    allReady();
    await primary;
    cluster.emit('exit', forks[0], 1, null);
    // Each replacement of slot 1 exits 1 as soon as it is forked.
    const crashed = new Set<FakeWorker>([forks[0]!]);
    for (let t = 0; t < 60_000; t += 100) {
      const w = forks.at(-1)!;
      if (w !== forks[1] && !crashed.has(w)) {
        crashed.add(w);
        cluster.emit('exit', w, 1, null);
      }
      await jest.advanceTimersByTimeAsync(100);
    }
    // 0.5 + 1 + 2 + 4 + 8 + 16 + 30 s: seven starts in the first minute.
    expect(forks.length - 2).toBeGreaterThanOrEqual(6);
    expect(forks.length - 2).toBeLessThanOrEqual(8);
    expect(await stop()).toBe(0);
  });

  test('a replacement that never says it is ready is killed after 60 s, and counts as a failed start', async () => {
    const primary = start();
    await jest.advanceTimersByTimeAsync(0);
    allReady();
    await primary;
    cluster.emit('exit', forks[0], 1, null);
    await jest.advanceTimersByTimeAsync(1000);
    expect(forks).toHaveLength(3);
    await jest.advanceTimersByTimeAsync(60_000);
    expect(forks[2]!.process.signals).toEqual(['SIGKILL']);
    cluster.emit('exit', forks[2], null, 'SIGKILL');
    await jest.advanceTimersByTimeAsync(2000);
    expect(forks).toHaveLength(4);
    allReady();
    expect(await stop()).toBe(0);
  });

  test('a SIGTERM while a replacement waits for its pause starts none; a worker whose drain failed makes the exit 1', async () => {
    const primary = start();
    await jest.advanceTimersByTimeAsync(0);
    allReady();
    await primary;
    cluster.emit('exit', forks[0], 1, null);
    expect(await stop((w) => (w === forks[1] ? [1, null] : [0, null]))).toBe(1);
    await jest.advanceTimersByTimeAsync(60_000);
    expect(forks).toHaveLength(2);
    expect(forks[1]!.sent).toContainEqual({ t: 'stop' });
    expect(lines.find((l) => l['msg'] === 'fleet-server stop failed')).toMatchObject({ err: { message: expect.stringContaining('worker 2') } });
  });
});

describe('/stats while scrapes overlap', () => {
  test('a scrape that ends after a later one, holding an older answer of a worker, reports no less than it', async () => {
    jest.useRealTimers();
    const socketPath = join(tmpdir(), `fleet-review-${process.pid}.sock`);
    const primary = start(2, socketPath);
    await new Promise((r) => setImmediate(r));
    allReady();
    await primary;
    const scrape = (): Promise<number> => new Promise((resolve, reject) => {
      http.get({ socketPath, path: '/stats' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(JSON.parse(body).http_server.routes.checkin.total));
      }).on('error', reject);
    });
    const doc = (n: number): object => ({ http_server: { tcp_open: n, tcp_close: 0, routes: { checkin: { total: n } } }, fleet: { status: 'HEALTHY' } });
    const asked = async (w: FakeWorker, after: number): Promise<number> => {
      for (;;) {
        const q = w.sent.filter((m) => (m as { t?: string }).t === 'stats').map((m) => (m as { id: number }).id).filter((id) => id > after);
        if (q.length > 0) return q[0]!;
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const [w1, w2] = forks as [FakeWorker, FakeWorker];
    // Scrape A: worker 1 answers at once, worker 2 is busy.
    const a = scrape();
    const a1 = await asked(w1, 0);
    const a2 = await asked(w2, 0);
    w1.emit('message', { t: 'stats', id: a1, doc: doc(150) });
    // Scrape B, past the 250 ms two scrapes share: both answer, and it ends first.
    await new Promise((r) => setTimeout(r, 300));
    const b = scrape();
    w1.emit('message', { t: 'stats', id: await asked(w1, a1), doc: doc(200) });
    w2.emit('message', { t: 'stats', id: await asked(w2, a2), doc: doc(100) });
    expect(await b).toBe(300);
    // Worker 2 answers A's question now.
    w2.emit('message', { t: 'stats', id: a2, doc: doc(90) });
    expect(await a).toBeGreaterThanOrEqual(300);
    process.emit('SIGTERM' as never);
    await new Promise((r) => setImmediate(r));
    for (const w of forks) {
      cluster.emit('exit', w, 0, null);
      w.process.emit('close', 0, null);
    }
    for (let i = 0; i < 100 && guard.exit.mock.calls.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(guard.exit.mock.calls[0]?.[0]).toBe(0);
  });
});

describe("the primary's messages from its workers", () => {
  test('one of no known shape is dropped, never thrown on (a throw there ends the primary and every worker)', async () => {
    const primary = start();
    await jest.advanceTimersByTimeAsync(0);
    allReady();
    await primary;
    for (const m of [null, 5, 'ready', [], { t: 7 }, { t: 'secret-forget', ids: 5 }, { t: 'secret-keep', id: 1 }, { t: 'stats', id: 1, doc: null }, { t: 'room', room: 'lots' }, { t: 'unknown' }]) {
      expect(() => forks[0]!.emit('message', m)).not.toThrow();
    }
    expect(await stop()).toBe(0);
  });

  test('workerMessage keeps what the workers send', () => {
    for (const m of [{ t: 'ready' }, { t: 'hello' }, { t: 'config?' }, { t: 'closed' }, { t: 'handoff' }, { t: 'room', room: 3 }, { t: 'adopted', id: 1, taken: true },
      { t: 'failed', reason: 'x' }, { t: 'stats', id: 2, doc: {} }, { t: 'secret-keep', id: 'a', value: 'b' }, { t: 'secret-recall', n: 1, id: 'a' }, { t: 'secret-forget', ids: ['a'] }]) {
      expect(workerMessage(m)).toBe(m);
    }
  });
});
