// Async iterables across the store proxy, both ways (chunk bytes read from the store, request bodies
// written to it). Pulled: the reader asks for each item and the owner of the iterable produces the
// next one only then, so at most one item per stream is ever in flight — that is the back-pressure.
import { fromWire, toWire, type Frame, type StreamRef } from './wire';

type Waiter = { resolve: (r: IteratorResult<unknown>) => void; reject: (err: Error) => void };

/** One connection's streams: those this side offers (exported) and those it reads from the other (imported). */
export class StreamTable {
  private nextSid = 1;
  private readonly exported = new Map<number, AsyncIterator<unknown>>();
  private readonly waiting = new Map<number, Waiter>();
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
      return: async () => (await it.return?.()) ?? { done: true, value: undefined },
    });
    return { $stream: sid };
  }

  /** The other side's stream `ref`, to be read once. */
  import(ref: StreamRef): AsyncIterable<unknown> {
    const sid = ref.$stream;
    let done = false;
    const iterator: AsyncIterator<unknown> = {
      next: () => {
        if (done) return Promise.resolve({ done: true, value: undefined });
        if (this.closedWith) return Promise.reject(this.closedWith);
        return new Promise<IteratorResult<unknown>>((resolve, reject) => {
          this.waiting.set(sid, {
            resolve: (r) => {
              if (r.done) done = true;
              resolve(r);
            },
            reject: (err) => {
              done = true;
              reject(err);
            },
          });
          this.send({ t: 'pull', sid });
        });
      },
      return: async () => {
        if (!done) {
          done = true;
          this.send({ t: 'drop', sid });
        }
        return { done: true, value: undefined };
      },
    };
    return { [Symbol.asyncIterator]: () => iterator };
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
        const w = this.waiting.get(f.sid);
        this.waiting.delete(f.sid);
        if (f.error) w?.reject(fromWire(f.error));
        else w?.resolve(f.done ? { done: true, value: undefined } : { done: false, value: f.value });
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
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
    for (const it of this.exported.values()) it.return?.().catch(() => undefined);
    this.exported.clear();
  }
}
