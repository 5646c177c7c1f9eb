// The primary's liveness watchdog (src/runtime/cluster.ts runPrimary, cluster-supervision.ts SilenceWatch):
// a ready worker whose event loop is blocked for good sends nothing, and is killed and replaced as a crashed
// one is; a busy or draining one is not. Over a stand-in for node:cluster on a fake clock, as
// runtime-review-supervision.test.ts; the worker's own heartbeat runs in-process on real timers.
import { removeDir, tempDir } from '../support/fleet-server';
import { capturingLogger, FakeWorker, guardPrimaryProcess, resetFakeCluster, type FakeCluster } from '../support/fake-cluster';

jest.mock('node:cluster', () => jest.requireActual<typeof import('../support/fake-cluster')>('../support/fake-cluster').fakeClusterModule());

// The worker's memory trim looks at the heap every 10 s for the life of the process and has no stop here:
// left running, it fired in whatever test file this jest worker ran next, after its environment was gone.
jest.mock('../../src/runtime/memory-trim', () => ({
  ...jest.requireActual<typeof import('../../src/runtime/memory-trim')>('../../src/runtime/memory-trim'),
  startMemoryTrim: () => () => undefined,
}));

// The worker opens its server through a dynamic import (kept off the primary), which jest's VM cannot run.
jest.mock('../../src/runtime/serve', () => {
  const actual = jest.requireActual<typeof import('../../src/runtime/serve')>('../../src/runtime/serve');
  const { ServerInstance } = jest.requireActual<typeof import('../../src/runtime/server-instance')>('../../src/runtime/server-instance');
  return { ...actual, openServer: (...args: Parameters<typeof ServerInstance.create>) => ServerInstance.create(...args) };
});

const cluster = (require('node:cluster') as { default: FakeCluster }).default;
const { runPrimary, runWorker } = require('../../src/runtime/cluster') as typeof import('../../src/runtime/cluster');
const { buildConfig } = require('../../src/config/config') as typeof import('../../src/config/config');
const supervision = require('../../src/runtime/cluster-supervision') as typeof import('../../src/runtime/cluster-supervision');
const { SILENT_LIMIT_MS, STABLE_MS } = supervision;

const EVENTS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'unhandledRejection', 'message'];
const guard = guardPrimaryProcess(EVENTS);
let forks: FakeWorker[];
let lines: Record<string, unknown>[];

beforeEach(() => {
  lines = [];
});


const logger = (): ReturnType<typeof capturingLogger> => capturingLogger(lines);

describe("the primary's watchdog", () => {
  beforeEach(() => {
    jest.useFakeTimers();
    // Back-off waits without their jitter: 500 ms, then 1 s, 2 s…
    jest.spyOn(Math, 'random').mockReturnValue(0.5);
    forks = [];
    resetFakeCluster(cluster, forks, 70_000);
  });

  async function started(drain = '10s'): Promise<[FakeWorker, FakeWorker]> {
    const config = buildConfig({ inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port: 0, internal_port: 0, workers: 2, timeouts: { drain } } }] });
    const primary = runPrimary(config, logger(), 2);
    await jest.advanceTimersByTimeAsync(0);
    for (const w of forks) w.emit('message', { t: 'ready' });
    await primary;
    return forks as [FakeWorker, FakeWorker];
  }

  /** `ms` of fake time in steps of `every`, the `talking` workers sending what a live worker sends meanwhile. */
  async function pass(ms: number, talking: FakeWorker[], every = 500, message: object = { t: 'room', room: 100 }): Promise<void> {
    for (let t = 0; t < ms; t += every) {
      for (const w of talking) w.emit('message', message);
      await jest.advanceTimersByTimeAsync(every);
    }
  }

  const hungLine = (): Record<string, unknown> | undefined => lines.find((l) => l['msg'] === 'worker sent nothing for too long (hung); killing it');

  async function stopped(): Promise<unknown> {
    process.emit('SIGTERM' as never);
    await jest.advanceTimersByTimeAsync(0);
    for (const w of forks) {
      if (w.process.listenerCount('close') === 0) continue;
      cluster.emit('exit', w, 0, null);
      w.process.emit('close', 0, null);
    }
    for (let i = 0; i < 20 && guard.exit.mock.calls.length === 0; i++) await jest.advanceTimersByTimeAsync(10);
    return guard.exit.mock.calls[0]?.[0];
  }

  test('a ready worker silent past the limit is killed (SIGKILL), said at error with its slot and pid, and replaced after its pause', async () => {
    const [w1, w2] = await started();
    // Worker 1 hangs right after its ready; worker 2 goes on reporting its room.
    await pass(SILENT_LIMIT_MS + 5_000, [w2]);
    expect(w1.process.signals).toEqual(['SIGKILL']);
    expect(w2.process.signals).toEqual([]);
    expect(hungLine()).toMatchObject({ level: 50, 'worker.slot': 1, 'process.pid': w1.process.pid, 'watchdog.limit_ms': SILENT_LIMIT_MS });
    // Killed once, not at every look while its exit is awaited.
    await pass(10_000, [w2]);
    expect(w1.process.signals).toEqual(['SIGKILL']);
    cluster.emit('exit', w1, null, 'SIGKILL');
    // Counted and said as a crash; it served nothing before it hung, so its replacement waits its pause (500 ms).
    expect(lines.find((l) => l['msg'] === 'worker exited; starting a replacement')).toMatchObject({
      level: 50, 'worker.slot': 1, 'exit.signal': 'SIGKILL', 'restart.in_ms': 500, 'error.message': expect.stringContaining('sent nothing'),
    });
    await pass(400, [w2], 100);
    expect(forks).toHaveLength(2);
    await pass(200, [w2], 100);
    expect(forks).toHaveLength(3);
    forks[2]!.emit('message', { t: 'ready' });
    expect(await stopped()).toBe(0);
  });

  test('one that served a while before it hung is replaced at once, as a crash after STABLE_MS is', async () => {
    const [w1, w2] = await started();
    await pass(STABLE_MS + 5_000, [w1, w2]);
    await pass(SILENT_LIMIT_MS + 5_000, [w2]);
    expect(w1.process.signals).toEqual(['SIGKILL']);
    cluster.emit('exit', w1, null, 'SIGKILL');
    await jest.advanceTimersByTimeAsync(0);
    expect(forks).toHaveLength(3);
    forks[2]!.emit('message', { t: 'ready' });
    expect(await stopped()).toBe(0);
  });

  test('a busy worker, silent for most of the limit at a time, is never killed; any message counts (the heartbeat without SO_REUSEPORT)', async () => {
    const [w1, w2] = await started();
    for (let i = 0; i < 8; i++) {
      await pass(SILENT_LIMIT_MS - 10_000, [w2]);
      w1.emit('message', { t: 'alive' });
    }
    await pass(30_000, [w1, w2], 2000, { t: 'alive' });
    expect(w1.process.signals).toEqual([]);
    expect(w2.process.signals).toEqual([]);
    expect(hungLine()).toBeUndefined();
    expect(await stopped()).toBe(0);
  });

  test("during the whole server's stop a silent, draining worker is left to the stop's own deadline", async () => {
    const [w1, w2] = await started('120s');
    process.emit('SIGTERM' as never);
    await jest.advanceTimersByTimeAsync(0);
    expect(w1.sent).toContainEqual({ t: 'stop' });
    // Both drain, busy and silent, for longer than the limit but within timeouts.drain.
    await jest.advanceTimersByTimeAsync(115_000);
    expect(w1.process.signals).toEqual([]);
    expect(w2.process.signals).toEqual([]);
    expect(hungLine()).toBeUndefined();
    for (const w of [w1, w2]) {
      cluster.emit('exit', w, 0, null);
      w.process.emit('close', 0, null);
    }
    for (let i = 0; i < 20 && guard.exit.mock.calls.length === 0; i++) await jest.advanceTimersByTimeAsync(10);
    expect(guard.exit.mock.calls[0]?.[0]).toBe(0);
  });

  test('a worker stopped alone and draining is killed for silence only once past its own deadline (timeouts.drain + 5 s)', async () => {
    const [w1, w2] = await started('120s');
    // A SIGTERM to its pid alone: it closes its listeners, says so, and drains without a word more.
    w1.emit('message', { t: 'closed' });
    await pass(120_000, [w2]);
    expect(w1.process.signals).toEqual([]);
    await pass(15_000, [w2]);
    expect(w1.process.signals).toEqual(['SIGKILL']);
    cluster.emit('exit', w1, null, 'SIGKILL');
    await pass(1000, [w2]);
    expect(forks).toHaveLength(3);
    forks[2]!.emit('message', { t: 'ready' });
    expect(await stopped()).toBe(0);
  });

  test("a look that comes late (the primary's own loop blocked, or the clock jumped) judges nobody: the messages may be unread", async () => {
    const [w1, w2] = await started();
    await pass(10_000, [w1, w2]);
    // 70 s pass with no timer run: the primary was blocked; its workers' messages wait in the channel.
    jest.setSystemTime(Date.now() + SILENT_LIMIT_MS + 10_000);
    await jest.advanceTimersByTimeAsync(5_000);
    expect(w1.process.signals).toEqual([]);
    // Read once it turns again: both live.
    await pass(20_000, [w1, w2]);
    expect(w1.process.signals).toEqual([]);
    expect(w2.process.signals).toEqual([]);
    expect(await stopped()).toBe(0);
  });
});

describe('a worker without SO_REUSEPORT', () => {
  const env = { ...process.env };
  afterEach(() => {
    process.env = env;
  });

  test('tells the primary it is alive every 2 s once ready (it sends no room), and its stop is not held up by it', async () => {
    const dir = tempDir();
    const sent: { t: string }[] = [];
    const sendBefore = process.send;
    process.send = ((m: { t: string }, ...rest: unknown[]) => {
      sent.push(m);
      (rest.find((r) => typeof r === 'function') as ((err: Error | null) => void) | undefined)?.(null);
      if (m.t === 'hello') setImmediate(() => process.emit('message' as never, { t: 'init', ticketKeys: '00'.repeat(48) } as never));
      if (m.t === 'closed') setImmediate(() => process.emit('message' as never, { t: 'answer' } as never));
      return true;
    }) as typeof process.send;
    process.env = { ...env, FLEET_SERVER_WORKERS: '2', FLEET_SERVER_WORKER_SLOT: '1' };
    delete process.env['FLEET_SERVER_WORKER_REUSE_PORT'];
    // The worker's intervals (its heartbeat) outlive its stop here (process.exit is mocked): cleared after
    // the test, or they would go on sending to this jest worker's parent.
    const intervals: NodeJS.Timeout[] = [];
    const setIntervalReal = global.setInterval;
    jest.spyOn(global, 'setInterval').mockImplementation(((...a: Parameters<typeof setInterval>) => {
      const t = setIntervalReal(...a);
      intervals.push(t);
      return t;
    }) as typeof setInterval);
    try {
      const config = buildConfig({ path: { data: dir }, logging: { level: 'error', to_stderr: false, to_files: false },
        inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port: 0, internal_port: 0, workers: 2, timeouts: { drain: '1s' } } }] });
      await runWorker(config);
      expect(sent.find((m) => m.t === 'failed')).toBeUndefined();
      expect(sent.map((m) => m.t)).toContain('ready');
      const readyAt = sent.length;
      await new Promise((r) => setTimeout(r, 2_300));
      expect(sent.slice(readyAt).map((m) => m.t)).toContain('alive');
      expect(sent.map((m) => m.t)).not.toContain('room');
      process.emit('message' as never, { t: 'stop' } as never);
      for (let i = 0; i < 300 && guard.exit.mock.calls.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(guard.exit.mock.calls[0]?.[0]).toBe(0);
    } finally {
      for (const t of intervals) clearInterval(t);
      process.send = sendBefore;
      removeDir(dir);
    }
  });
});
