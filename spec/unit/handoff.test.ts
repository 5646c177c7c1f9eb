// A full cluster worker's accepted connections go to a sibling with room (src/http/handoff.ts): the
// listening handle's accept callback is taken over; the handle goes out only while this worker is full
// and another has room, and is served here when it cannot be sent.
import type net from 'node:net';
import { AcceptHandoff, handoffTarget, type ClientHandle, type HandoffChannel } from '../../src/http/handoff';

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

  it('accepts here while there is room, or when no other worker has any', () => {
    const h = new AcceptHandoff(channel, () => full);
    const { server, accepted, accept } = fakeServer();
    h.attach(server);
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
    const h = new AcceptHandoff(channel, () => full);
    const { server, accepted, accept } = fakeServer();
    h.attach(server);
    full = true;
    h.roomElsewhere = true;
    const c = new FakeClient();
    accept(0, c);
    expect(accepted).toEqual([]);
    expect(sends.map((s) => s.client)).toEqual([c]);
    expect(c.closed).toBe(0); // not before the message is written
    sends[0]!.done(true);
    expect(c.closed).toBe(1);
    expect(h.counts).toEqual({ handedOff: 1, adopted: 0 });
  });

  it('serves the connection itself when it could not be sent', () => {
    const h = new AcceptHandoff(channel, () => full);
    const { server, accepted, accept } = fakeServer();
    h.attach(server);
    full = true;
    h.roomElsewhere = true;
    const c = new FakeClient();
    accept(0, c);
    sends[0]!.done(false);
    expect(accepted).toEqual([c]);
    expect(c.closed).toBe(0);
    expect(h.counts.handedOff).toBe(0);
  });

  it('adopts a handed-over connection as if accepted here; closes it once detached (stopping)', () => {
    const h = new AcceptHandoff(channel, () => full);
    const { server, accepted } = fakeServer();
    h.attach(server);
    const [a, b] = [new FakeClient(), new FakeClient()];
    h.adopt(a);
    expect(accepted).toEqual([a]);
    h.detach();
    h.adopt(b);
    expect(accepted).toEqual([a]);
    expect(b.closed).toBe(1);
    expect(h.counts.adopted).toBe(1);
  });

  it('passes accept errors through untouched', () => {
    const h = new AcceptHandoff(channel, () => true);
    const { server, accepted, accept } = fakeServer();
    h.attach(server);
    h.roomElsewhere = true;
    accept(-24); // EMFILE
    expect(accepted).toEqual([]);
    expect(sends).toHaveLength(0);
  });

  it('keeps at most 256 handoffs waiting on the channel; beyond, it serves them itself', () => {
    const h = new AcceptHandoff(channel, () => true);
    const { server, accepted, accept } = fakeServer();
    h.attach(server);
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
