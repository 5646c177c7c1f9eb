// A full cluster worker's accepted connections go to a sibling with room (src/http/handoff.ts): the
// listening handle's accept callback is taken over; the handle goes out only while this worker is full
// and another has room, and is served here when it cannot be sent. The primary (src/runtime/
// handoff-router.ts) keeps its copy until a worker took it, and moves it on when one did not.
import type net from 'node:net';
import { AcceptHandoff, type ClientHandle, type HandoffChannel } from '../../src/http/handoff';
import { HandoffRouter, handoffTarget, MAX_IN_FLIGHT_PER_WORKER } from '../../src/runtime/handoff-router';

class FakeClient implements ClientHandle {
  closed = 0;
  close(): void {
    this.closed++;
  }
}

/** A listening server as Node has it: `_handle.onconnection(status, client)` is how it accepts. */
function fakeServer(): { server: net.Server; accepted: ClientHandle[]; accept: (status: number, client?: ClientHandle) => void } {
  const accepted: ClientHandle[] = [];
  const handle = { onconnection(this: unknown, status: number, client?: ClientHandle) {
    expect(this).toBe(handle);
    if (status === 0 && client) accepted.push(client);
  } };
  return { server: { _handle: handle } as unknown as net.Server, accepted, accept: (status, client) => handle.onconnection(status, client) };
}

describe('AcceptHandoff', () => {
  let full = false;
  let sends: { client: ClientHandle; done: (sent: boolean) => void }[];
  const channel: HandoffChannel = (client, done) => sends.push({ client, done });
  beforeEach(() => {
    full = false;
    sends = [];
  });
  /** A worker with its listener taken over, as full as `full` says; `accept` is a connection arriving. */
  const worker = (): { h: AcceptHandoff } & ReturnType<typeof fakeServer> => {
    const h = new AcceptHandoff(channel, () => full);
    const server = fakeServer();
    h.attach(server.server);
    return { h, ...server };
  };
  /** A full worker, another having room, and one connection arriving: it went out, waiting to be sent. */
  const handedOff = (): { h: AcceptHandoff; accepted: ClientHandle[]; c: FakeClient } => {
    const { h, accepted, accept } = worker();
    full = true;
    h.roomElsewhere = true;
    const c = new FakeClient();
    accept(0, c);
    return { h, accepted, c };
  };

  it('accepts here while there is room, or when no other worker has any', () => {
    const { h, accepted, accept } = worker();
    const [a, b] = [new FakeClient(), new FakeClient()];
    h.roomElsewhere = true;
    accept(0, a); // room here
    full = true;
    h.roomElsewhere = false;
    accept(0, b); // full, but nowhere else to go
    expect(accepted).toEqual([a, b]);
    expect(sends).toHaveLength(0);
  });

  it('hands a connection away when full and another has room; closes its own descriptor once sent', () => {
    const { h, accepted, c } = handedOff();
    expect(accepted).toEqual([]);
    expect(sends.map((s) => s.client)).toEqual([c]);
    expect(c.closed).toBe(0); // not before the message is written
    sends[0]!.done(true);
    expect(c.closed).toBe(1);
    expect(h.counts).toEqual({ handedOff: 1, adopted: 0, returned: 0 });
  });

  it('serves the connection itself when it could not be sent', () => {
    const { h, accepted, c } = handedOff();
    sends[0]!.done(false);
    expect(accepted).toEqual([c]);
    expect(c.closed).toBe(0);
    expect(h.counts.handedOff).toBe(0);
  });

  it('adopts a handed-over connection as if accepted here; refuses once detached (stopping)', () => {
    const { h, accepted } = worker();
    const [a, b, c] = [new FakeClient(), new FakeClient(), new FakeClient()];
    expect(h.adopt(a)).toBe(true);
    expect(h.adopt(b, true)).toBe(true); // one it sent, given back
    expect(accepted).toEqual([a, b]);
    h.detach();
    expect(h.adopt(c)).toBe(false);
    expect(accepted).toEqual([a, b]);
    expect(h.counts).toEqual({ handedOff: 0, adopted: 1, returned: 1 });
  });

  it('passes accept errors through untouched', () => {
    full = true;
    const { h, accepted, accept } = worker();
    h.roomElsewhere = true;
    accept(-24); // EMFILE
    expect(accepted).toEqual([]);
    expect(sends).toHaveLength(0);
  });

  it('keeps at most 256 handoffs waiting on the channel; beyond, it serves them itself', () => {
    full = true;
    const { h, accepted, accept } = worker();
    h.roomElsewhere = true;
    for (let i = 0; i < 300; i++) accept(0, new FakeClient());
    expect(sends).toHaveLength(256);
    expect(accepted).toHaveLength(44);
    sends[0]!.done(true);
    accept(0, new FakeClient());
    expect(sends).toHaveLength(257);
  });
});

describe('handoffTarget', () => {
  it('picks the worker with the most room other than the sender; none when nobody has room', () => {
    expect(handoffTarget(new Map([['a', 0], ['b', 5], ['c', 9]]), 'c')).toBe('b');
    expect(handoffTarget(new Map([['a', 0], ['b', 5], ['c', 9]]), 'a')).toBe('c');
    expect(handoffTarget(new Map([['a', 50], ['b', 0], ['c', -2]]), 'a')).toBeUndefined();
    expect(handoffTarget(new Map([['a', 3]]), 'a')).toBeUndefined();
  });
});

describe('HandoffRouter (the primary)', () => {
  type Sent = { to: string; id: number; handle: ClientHandle; returned: boolean; failed: () => void };
  /** Workers serving with the room each reported; `cap`: handles in flight per worker at most. */
  function router(rooms: Record<string, number>, cap?: number): { r: HandoffRouter<string>; sent: Sent[] } {
    const sent: Sent[] = [];
    const r = new HandoffRouter<string>(() => Object.keys(rooms), (to, id, handle, returned, failed) => sent.push({ to, id, handle, returned, failed }),
      undefined, cap);
    for (const [w, room] of Object.entries(rooms)) r.report(w, room);
    return { r, sent };
  }

  it('sends to the worker with the most room and closes its copy only once that worker took it', () => {
    const { r, sent } = router({ a: 0, b: 3, c: 7 });
    const h = new FakeClient();
    r.route('a', h);
    expect(sent.map((s) => [s.to, s.returned])).toEqual([['c', false]]);
    expect(r.room('c')).toBe(6);
    expect(h.closed).toBe(0);
    expect(r.inFlight).toBe(1);
    r.answered(sent[0]!.id, true);
    expect(h.closed).toBe(1);
    expect(r.inFlight).toBe(0);
  });

  it('moves a connection on when the worker refused it, could not be sent to, or died; back to its sender last', () => {
    const { r, sent } = router({ a: 0, b: 3, c: 7 });
    const h = new FakeClient();
    r.route('a', h);
    r.answered(sent[0]!.id, false); // c refused (stopping)
    expect(r.room('c')).toBe(7); // it used none of c's room
    expect(sent[1]!.to).toBe('b');
    sent[1]!.failed(); // could not be sent to b
    expect(sent[2]).toMatchObject({ to: 'a', returned: true });
    r.gone('a'); // the sender died before taking it back
    expect(h.closed).toBe(1);
    expect(sent).toHaveLength(3);
    expect(r.inFlight).toBe(0);
  });

  it('a worker that dies with connections sent to it: each goes on to another', () => {
    const { r, sent } = router({ a: 0, b: 5, c: 5 });
    const [h1, h2] = [new FakeClient(), new FakeClient()];
    r.route('a', h1);
    r.route('a', h2);
    const firstTo = sent[0]!.to;
    const other = firstTo === 'b' ? 'c' : 'b';
    r.gone(firstTo);
    const moved = sent.slice(2).map((s) => s.to);
    expect(moved.length).toBeGreaterThan(0);
    for (const to of moved) expect(to).toBe(other);
    expect(h1.closed + h2.closed).toBe(0);
  });

  it('with nobody else having room, gives it back to its sender; with no sender either, closes it', () => {
    const { r, sent } = router({ a: 0, b: 0 });
    const h = new FakeClient();
    r.route('a', h);
    expect(sent[0]).toMatchObject({ to: 'a', returned: true });
    const lost = new FakeClient();
    r.route('z', lost); // a sender no longer serving
    expect(lost.closed).toBe(1);
  });

  it("a worker's report does not free the room of handles still on their way to it", () => {
    const { r, sent } = router({ a: 0, b: 10 });
    for (let i = 0; i < 4; i++) r.route('a', new FakeClient());
    expect(sent.map((s) => s.to)).toEqual(['b', 'b', 'b', 'b']);
    r.answered(sent[0]!.id, true); // b took one before writing its next report, which counts it
    r.report('b', 9);
    // The three still queued in b's channel were not counted by b: 9 − 3.
    expect(r.room('b')).toBe(6);
    r.answered(sent[1]!.id, true); // taken after that report: still charged until the next
    expect(r.room('b')).toBe(6);
    r.report('b', 8);
    expect(r.room('b')).toBe(6); // 8 − the two still in flight
  });

  it('sends a worker at most `cap` handles at a time; past it, back to the sender', () => {
    const { r, sent } = router({ a: 0, b: 1000 }, 3);
    for (let i = 0; i < 5; i++) r.route('a', new FakeClient());
    expect(sent.map((s) => s.to)).toEqual(['b', 'b', 'b', 'a', 'a']);
    expect(sent.slice(3).every((s) => s.returned)).toBe(true);
    r.answered(sent[0]!.id, true);
    r.route('a', new FakeClient());
    expect(sent[5]!.to).toBe('b');
  });

  it(`caps at ${MAX_IN_FLIGHT_PER_WORKER} in flight by default`, () => {
    const { r, sent } = router({ a: 0, b: 100_000, c: 100_000 });
    for (let i = 0; i < 3 * MAX_IN_FLIGHT_PER_WORKER; i++) r.route('a', new FakeClient());
    const to = (w: string): number => sent.filter((s) => s.to === w).length;
    expect([to('b'), to('c'), to('a')]).toEqual([MAX_IN_FLIGHT_PER_WORKER, MAX_IN_FLIGHT_PER_WORKER, MAX_IN_FLIGHT_PER_WORKER]);
  });

  it('once the server stops, every connection goes back to its sender, those in flight too', () => {
    const { r, sent } = router({ a: 0, b: 10, c: 10 });
    r.route('a', new FakeClient());
    expect(sent[0]!.to).not.toBe('a');
    r.stop();
    r.route('a', new FakeClient());
    expect(sent[1]).toMatchObject({ to: 'a', returned: true });
    r.answered(sent[0]!.id, false); // the draining receiver refused it: not on to the third worker
    expect(sent[2]).toMatchObject({ to: 'a', returned: true });
  });
});
