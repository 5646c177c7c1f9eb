// Graceful force-unenroll, in-process: which refusals it answers, in which order, for how long, and
// within what memory.
import { FleetError } from '../../src/fleet/errors';
import { GracefulUnenroll } from '../../src/fleet/graceful-unenroll';
import { ManualClock } from '../support/manual-clock';

const HOUR = 3_600_000;
const inactive = new FleetError('AgentInactive');

test('an empty policy, then an UNENROLL, then the refusal stands', () => {
  const g = new GracefulUnenroll({ enabled: true, maxBytes: 50_000_000 }, new ManualClock(Date.parse('2030-01-01T00:00:00Z')));
  const first = g.answer('a-1', inactive)!;
  expect(first).toEqual([{ id: expect.any(String), agent_id: 'a-1', type: 'POLICY_CHANGE', created_at: '2030-01-01T00:00:00Z', input_type: '', data: { policy: {} } }]);
  const second = g.answer('a-1', inactive)!;
  expect(second).toEqual([{ id: expect.any(String), agent_id: 'a-1', type: 'UNENROLL', created_at: '2030-01-01T00:00:00Z', input_type: '', data: null }]);
  expect(second[0]!.id).not.toBe(first[0]!.id);
  expect(g.answer('a-1', inactive)).toBeUndefined();
  expect(g.answer('a-1', inactive)).toBeUndefined();
  // Each agent on its own.
  expect(g.answer('a-2', new FleetError('Unauthorized'))![0]!.type).toBe('POLICY_CHANGE');
  expect(g.answer('a-3', new FleetError('ApiKeyDisabled'))![0]!.type).toBe('POLICY_CHANGE');
});

test('only refused keys are answered, and only with the flag on', () => {
  const on = new GracefulUnenroll({ enabled: true, maxBytes: 50_000_000 });
  for (const code of ['AgentIdentity', 'NoAuthHeader', 'MalformedHeader', 'InvalidToken', 'AgentCorrupted'] as const) {
    expect(on.answer('a-1', new FleetError(code))).toBeUndefined();
  }
  expect(on.answer('a-1', new Error('store down'))).toBeUndefined();
  expect(on.answer('', inactive)).toBeUndefined();
  expect(new GracefulUnenroll({ enabled: false, maxBytes: 50_000_000 }).answer('a-1', inactive)).toBeUndefined();
});

test('an agent is remembered for an hour, then starts over', () => {
  const clock = new ManualClock(0);
  const g = new GracefulUnenroll({ enabled: true, maxBytes: 50_000_000 }, clock);
  g.answer('a-1', inactive);
  g.answer('a-1', inactive);
  expect(g.answer('a-1', inactive)).toBeUndefined();
  clock.advance(HOUR + 1);
  expect(g.answer('a-1', inactive)![0]!.type).toBe('POLICY_CHANGE');
});

test('memory is bounded by max_bytes whatever ids callers send: the oldest are forgotten', () => {
  const g = new GracefulUnenroll({ enabled: true, maxBytes: 1600 }, new ManualClock(0));
  for (let i = 0; i < 1000; i++) g.answer(`flood-${i}`, inactive);
  // Room for ten: an id from the start of the flood is new again, one from its end is not.
  expect(g.answer('flood-0', inactive)![0]!.type).toBe('POLICY_CHANGE');
  expect(g.answer('flood-999', inactive)![0]!.type).toBe('UNENROLL');
});

test('memory counts the ids\' length: long ids fill max_bytes sooner; ids no agent can have are not answered', () => {
  const g = new GracefulUnenroll({ enabled: true, maxBytes: 50_000 }, new ManualClock(0));
  // 500 characters each: ~1.1 KB remembered, so about 45 fit (old: 312, as if each were 160 bytes).
  const id = (i: number): string => `${i}-`.padEnd(500, 'x');
  for (let i = 0; i < 100; i++) g.answer(id(i), inactive);
  expect(g.answer(id(0), inactive)![0]!.type).toBe('POLICY_CHANGE');
  expect(g.answer(id(99), inactive)![0]!.type).toBe('UNENROLL');
  // Longer than an Elasticsearch _id (512 bytes): the refusal stands, nothing is remembered.
  expect(g.answer('y'.repeat(513), inactive)).toBeUndefined();
  expect(g.answer('é'.repeat(300), inactive)).toBeUndefined();
});
