// Async iterables across the store proxy, both ways (chunk bytes read from the store, request bodies
// written to it). Pulled: the reader asks for items and the owner of the iterable produces one per
// request, so at most PREFETCH items per stream are ever in flight — that is the back-pressure. A few
// requests ahead keep the bytes moving while each crosses the socket (one at a time, a download ran at
// a third of one process's speed).
import { fromWire, toWire, type Frame, type StreamRef } from './wire';

/** Items asked for ahead of the reader (pieces are up to 64 KiB: at most 256 KiB per stream in flight). */
const PREFETCH = 4;
const DONE: IteratorResult<unknown> = { done: true, value: undefined };

type Waiter = { resolve: (r: IteratorResult<unknown>) => void; reject: (err: Error) => void };

/** A stream being read from the other side: the answers awaited, in request order. */
interface Reading {
  waiters: Waiter[];
  /** The other side said done (or failed), or the reader stopped: no more requests. */
  ended: boolean;
}

/** One connection's streams: those this side offers (exported) and those it reads from the other (imported). */
export class StreamTable {
  private nextSid = 1;
  private readonly exported = new Map<number, AsyncIterator<unknown>>();
  private readonly reading = new Map<number, Reading>();
  private closedWith: Error | undefined;

  constructor(private readonly send: (f: Frame) => void) {}

  /** Offers `source` to the other side; `failed` hears the error if reading it throws. */
  export(source: AsyncIterable<unknown>, failed?: (err: unknown) => void): StreamRef {
    const sid = this.nextSid++;
    const it = source[Symbol.asyncIterator]();
    // Pulled when the other side asks; a failure is reported once and ends the stream.
    this.exported.set(sid, {
      next: () => it.next().catch((err: unknown) => {
        failed?.(err);
        throw err;
      }),
      return: async () => (await it.return?.()) ?? DONE,
    });
    return { $stream: sid };
  }

  /** The other side's stream `ref`, to be read once. */
  import(ref: StreamRef): AsyncIterable<unknown> {
    const sid = ref.$stream;
    const state: Reading = { waiters: [], ended: false };
    this.reading.set(sid, state);
    const ahead: Promise<IteratorResult<unknown>>[] = [];
    let done = false;
    const iterator: AsyncIterator<unknown> = {
      next: () => {
        if (done) return Promise.resolve(DONE);
        if (this.closedWith && ahead.length === 0) return Promise.reject(this.closedWith);
        while (!state.ended && ahead.length < PREFETCH) {
          ahead.push(new Promise((resolve, reject) => state.waiters.push({ resolve, reject })));
          this.send({ t: 'pull', sid });
        }
        const answer = ahead.shift();
        if (!answer) return Promise.resolve(DONE);
        return answer.then((r) => {
          if (r.done) done = true;
          return r;
        }, (err: unknown) => {
          done = true;
          throw err;
        });
      },
      return: async () => {
        done = true;
        if (!state.ended) {
          this.send({ t: 'drop', sid });
          this.end(sid, state);
        }
        return DONE;
      },
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  /** No more answers are read for `sid`: the requests still awaited read as done. */
  private end(sid: number, state: Reading): void {
    state.ended = true;
    this.reading.delete(sid);
    for (const w of state.waiters.splice(0)) w.resolve(DONE);
  }

  /** Handles a stream frame; false when `f` is not one. */
  handle(f: Frame): boolean {
    switch (f.t) {
      case 'pull': {
        const it = this.exported.get(f.sid);
        if (!it) {
          this.send({ t: 'item', sid: f.sid, done: true, error: { name: 'Error', message: `store proxy: no stream ${f.sid}` } });
          return true;
        }
        it.next().then((r) => {
          if (r.done) this.exported.delete(f.sid);
          this.send(r.done ? { t: 'item', sid: f.sid, done: true } : { t: 'item', sid: f.sid, done: false, value: r.value });
        }, (err: unknown) => {
          this.exported.delete(f.sid);
          this.send({ t: 'item', sid: f.sid, done: true, error: toWire(err) });
        });
        return true;
      }
      case 'item': {
        // Answers come in request order; those to requests made past the end are ignored.
        const state = this.reading.get(f.sid);
        const w = state?.waiters.shift();
        if (!state || !w) return true;
        if (f.error) {
          w.reject(fromWire(f.error));
          this.end(f.sid, state);
        } else if (f.done) {
          w.resolve(DONE);
          this.end(f.sid, state);
        } else {
          w.resolve({ done: false, value: f.value });
        }
        return true;
      }
      case 'drop':
        this.drop(f.sid);
        return true;
      default:
        return false;
    }
  }

  /** Stops offering stream `sid` (its reader is done with it, or its call has been answered). */
  drop(sid: number): void {
    const it = this.exported.get(sid);
    this.exported.delete(sid);
    it?.return?.().catch(() => undefined);
  }

  /** The connection is gone: readers fail with `err`, sources are told to stop. */
  close(err: Error): void {
    this.closedWith = err;
    for (const state of this.reading.values()) {
      state.ended = true;
      for (const w of state.waiters.splice(0)) w.reject(err);
    }
    this.reading.clear();
    for (const it of this.exported.values()) it.return?.().catch(() => undefined);
    this.exported.clear();
  }
}
