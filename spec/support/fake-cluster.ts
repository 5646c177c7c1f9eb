// A stand-in for node:cluster, for tests of the primary's supervision (src/runtime/cluster.ts runPrimary):
// workers are event emitters whose messages, exits and spawn failures the test makes, on a fake clock.
// Use: jest.mock('node:cluster', () => jest.requireActual('../support/fake-cluster').fakeClusterModule());
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import pino from 'pino';

export class FakeProcess extends EventEmitter {
  stderr = null;
  readonly signals: string[] = [];
  /** `pid` undefined: a spawn that failed. */
  constructor(public pid: number | undefined) {
    super();
  }
  kill(signal?: string): boolean {
    this.signals.push(signal ?? 'SIGTERM');
    return this.pid !== undefined;
  }
}

export class FakeWorker extends EventEmitter {
  readonly sent: unknown[] = [];
  constructor(readonly id: number, readonly process: FakeProcess) {
    super();
  }
  send(m: unknown, ...rest: unknown[]): boolean {
    this.sent.push(m);
    (rest.find((r) => typeof r === 'function') as ((err: Error | null) => void) | undefined)?.(null);
    return true;
  }
  kill(signal?: string): void {
    this.process.kill(signal);
  }
}

export interface FakeCluster extends EventEmitter {
  workers: Record<number, FakeWorker>;
  fork: jest.Mock;
}

/** The module jest.mock('node:cluster') returns: a primary with no workers. */
export function fakeClusterModule(): { __esModule: true; default: FakeCluster } {
  const c = new EventEmitter() as FakeCluster & Record<string, unknown>;
  Object.assign(c, { isWorker: false, isPrimary: true, SCHED_RR: 2, SCHED_NONE: 1, schedulingPolicy: 1, settings: {}, workers: {}, setupPrimary: () => undefined });
  return { __esModule: true, default: c };
}

/**
 * `cluster` made empty again, its fork making FakeWorkers (pids from `firstPid` + 1) pushed to `forks`;
 * `make` may replace how one is made (a spawn failure).
 */
export function resetFakeCluster(cluster: FakeCluster, forks: FakeWorker[], firstPid: number,
  make?: (id: number, pid: number) => FakeWorker): void {
  let nextPid = firstPid;
  cluster.removeAllListeners();
  cluster.workers = {};
  cluster.fork = jest.fn(() => {
    const id = forks.length + 1;
    const w = make ? make(id, ++nextPid) : new FakeWorker(id, new FakeProcess(++nextPid));
    cluster.workers[w.id] = w;
    forks.push(w);
    return w;
  });
}

/** Process listeners a primary adds, recorded before a test and removed after it (see restoreListeners). */
export function recordListeners(events: readonly string[]): Map<string, Function[]> {
  return new Map(events.map((e) => [e, process.listeners(e as never)]));
}

export function restoreListeners(before: Map<string, Function[]>): void {
  for (const [e, had] of before) for (const l of process.listeners(e as never)) if (!had.includes(l)) process.removeListener(e, l as never);
}

/** A debug logger whose lines (parsed) go to `lines`. */
export function capturingLogger(lines: Record<string, unknown>[]): pino.Logger {
  return pino({ level: 'debug' }, new Writable({ write(chunk, _enc, done) {
    lines.push(JSON.parse(String(chunk)));
    done();
  } }));
}

/**
 * Around each test of a primary: the process listeners it adds removed after, process.exit recorded
 * instead of run, mocks restored, timers real again. Call in a file's top level; `exit` is the test's spy.
 */
export function guardPrimaryProcess(events: readonly string[]): { readonly exit: jest.SpyInstance } {
  let before = new Map<string, Function[]>();
  let exit: jest.SpyInstance | undefined;
  beforeEach(() => {
    before = recordListeners(events);
    exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
  });
  afterEach(() => {
    restoreListeners(before);
    exit!.mockRestore();
    jest.restoreAllMocks();
    process.exitCode = undefined;
    jest.useRealTimers();
  });
  return { get exit() { return exit!; } };
}
