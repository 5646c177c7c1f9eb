// A process's stop (src/runtime/serve.ts stopOnSignals): its exit code says whether the drain succeeded,
// so that a supervisor sees lost writes or a store that failed to close.
import { Writable } from 'node:stream';
import pino from 'pino';
import { stopOnSignals } from '../../src/runtime/serve';

const EVENTS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'unhandledRejection'] as never[];
let before: Map<never, Function[]>;
let exitCodeBefore: typeof process.exitCode;
let exit: jest.SpyInstance;

beforeEach(() => {
  before = new Map(EVENTS.map((e) => [e, process.listeners(e)]));
  exitCodeBefore = process.exitCode;
  exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
});

afterEach(() => {
  // Only the listeners this test's stopOnSignals added.
  for (const e of EVENTS) for (const l of process.listeners(e)) if (!before.get(e)!.includes(l)) process.removeListener(e, l as never);
  exit.mockRestore();
  process.exitCode = exitCodeBefore;
});

/** A logger whose lines are kept, and the exit code the stop asked for. */
async function stopWith(drain: () => Promise<object | void>, times = 1): Promise<{ code: unknown; lines: Record<string, unknown>[]; requested: boolean }> {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) {
    lines.push(JSON.parse(String(chunk)));
    done();
  } }));
  const stop = stopOnSignals(log, 60_000, drain);
  expect(stop.requested).toBe(false);
  for (let i = 0; i < times; i++) stop('test');
  const requested = stop.requested;
  for (let i = 0; i < 100 && exit.mock.calls.length === 0; i++) await new Promise((r) => setImmediate(r));
  return { code: exit.mock.calls[0]?.[0], lines, requested };
}

test('a drain that succeeds exits 0', async () => {
  const { code, lines, requested } = await stopWith(async () => ({ 'stop.answer_ms': 1 }));
  expect(requested).toBe(true);
  expect(code).toBe(0);
  expect(lines.map((l) => l['msg'])).toEqual(['fleet-server stopping', 'fleet-server stopped']);
});

test('a drain that fails (the last writes, the store close) exits 1, said once at error', async () => {
  const { code, lines } = await stopWith(async () => {
    throw new Error('store close failed: disk I/O error');
  });
  expect(code).toBe(1);
  expect(process.exitCode).toBe(1);
  const errors = lines.filter((l) => (l['level'] as number) >= 50);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({ msg: 'fleet-server stop failed', err: { message: 'store close failed: disk I/O error' } });
  expect(lines.map((l) => l['msg'])).not.toContain('fleet-server stopped');
});

test('a second stop while draining does nothing', async () => {
  let drains = 0;
  const { code } = await stopWith(async () => {
    drains++;
  }, 2);
  expect(code).toBe(0);
  expect(drains).toBe(1);
  expect(exit).toHaveBeenCalledTimes(1);
});
