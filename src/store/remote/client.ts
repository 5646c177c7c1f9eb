// The Store port over a socket to the process that owns the store (a cluster worker on the embedded
// store; the primary owns the database). Generic: a Proxy turns any port method — `getAgent`,
// `uploads.putChunk`, `policyChanges.next` — into a call frame and awaits its answer, so the port can
// grow without this file. What cannot be a plain call is handled here: `kind` and `traits` (sent at
// connect), `apiKeysFor` (the owner mints every key itself), `watchWrites` (a subscription the owner
// pushes to), `close` (this connection only), abort signals (a cancel frame), and async iterables
// either way (pulled streams, streams.ts). A lost connection fails calls with StoreUnavailableError
// (503 to agents, a write fault for the health) while the client reconnects with backoff.
import net from 'node:net';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../../util/backoff';
import { StoreUnavailableError, type Store, type WriteFaultListener } from '../port';
import { StreamTable } from './streams';
import { FramedSocket, fromWire, isAsyncIterable, type Frame, type StoreHello } from './wire';

/** Members that are objects of methods rather than methods. */
const NAMESPACES = new Set(['uploads', 'deliveries', 'artifacts', 'policyChanges', 'actionChanges']);
/** Methods that return an AsyncIterable at once rather than a promise. */
const STREAM_RESULTS = new Set(['uploads.readChunk', 'deliveries.readDeliveryChunk']);

interface Pending {
  resolve(v: unknown): void;
  reject(err: unknown): void;
  /** An error thrown by one of the call's own argument streams: the cause, rethrown as is (an HTTP 413, say). */
  localError?: unknown;
  cleanup?(): void;
}

/** A settled call's argument streams the owner did not read to the end are let go (an HTTP body left unread). */
function releasing(p: Pending, live: Live, sids: number[]): void {
  if (sids.length === 0) return;
  const cleanup = p.cleanup;
  p.cleanup = () => {
    cleanup?.();
    for (const sid of sids) live.streams.drop(sid);
  };
}

interface Live {
  wire: FramedSocket;
  streams: StreamTable;
}

class Connection {
  hello: StoreHello | undefined;
  private live: Live | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly faultListeners = new Set<WriteFaultListener>();
  private fault: string | undefined;
  private connectedWaiters: (() => void)[] = [];
  private readonly closing = new AbortController();
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 5000 });

  constructor(private readonly path: string, private readonly log: Logger | undefined) {}

  /** One attempt: resolves once the owner said hello. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.path);
      let live: Live | undefined;
      const wire = new FramedSocket(socket, (f) => {
        if (live) return this.onFrame(f, live);
        if (f.t !== 'hello') return;
        live = { wire, streams: new StreamTable((x) => wire.send(x)) };
        // Closed while this connection was being made: it goes at once.
        if (this.closing.signal.aborted) socket.destroy();
        else this.opened(live, f.hello);
        resolve();
      }, (err) => this.log?.error({ err }, 'store proxy: bad frame from the store owner'));
      socket.on('error', (err) => {
        if (!live) reject(err);
      });
      socket.once('close', () => {
        if (!live) reject(new Error(`store proxy: ${this.path} closed before its hello`));
        else this.lost(live);
      });
    });
  }

  private opened(live: Live, hello: StoreHello): void {
    this.hello = hello;
    this.live = live;
    this.backoff.reset();
    this.setFault(undefined);
    for (const w of this.connectedWaiters.splice(0)) w();
  }

  private onFrame(f: Frame, live: Live): void {
    if (live.streams.handle(f)) return;
    if (f.t === 'result') {
      const p = this.pending.get(f.id);
      if (!p) return;
      this.pending.delete(f.id);
      p.cleanup?.();
      if (f.error) p.reject(p.localError ?? fromWire(f.error));
      else if (f.stream !== undefined) p.resolve(live.streams.import({ $stream: f.stream }));
      else p.resolve(f.value);
    } else if (f.t === 'fault') {
      this.setFault(f.fault);
    }
  }

  private unavailable(): StoreUnavailableError {
    return new StoreUnavailableError(`the store owner is not reachable on ${this.path}`, { clientMessage: 'the store is not reachable' });
  }

  private lost(live: Live): void {
    if (this.live !== live) return;
    this.live = undefined;
    const err = this.unavailable();
    live.streams.close(err);
    for (const p of this.pending.values()) {
      p.cleanup?.();
      p.reject(err);
    }
    this.pending.clear();
    if (this.closing.signal.aborted) return;
    this.log?.error({ 'error.message': err.message }, 'lost the store owner; reconnecting');
    this.setFault(err.message);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    while (!this.closing.signal.aborted) {
      await sleep(this.backoff.next(), this.closing.signal);
      if (this.closing.signal.aborted) return;
      try {
        await this.connect();
        this.log?.info('store owner reachable again');
        return;
      } catch {
        // Next attempt after a longer pause.
      }
    }
  }

  private setFault(fault: string | undefined): void {
    if (fault === this.fault) return;
    this.fault = fault;
    for (const fn of this.faultListeners) fn(fault);
  }

  watch(fn: WriteFaultListener): () => void {
    this.faultListeners.add(fn);
    if (this.fault !== undefined) fn(this.fault);
    return () => this.faultListeners.delete(fn);
  }

  call(path: string, args: unknown[]): Promise<unknown> {
    const live = this.live;
    if (!live) return Promise.reject(this.unavailable());
    const signal = args.find((a): a is AbortSignal => a instanceof AbortSignal);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject };
      const sids: number[] = [];
      const encoded = args.map((a) => {
        if (a === signal) return { $signal: true };
        if (!isAsyncIterable(a)) return a;
        const ref = live.streams.export(a, (err) => (p.localError ??= err));
        sids.push(ref.$stream);
        return ref;
      });
      if (signal) {
        // The wait ends here at once, as a local feed's would; the owner is told to stop waiting.
        const onAbort = (): void => {
          this.pending.delete(id);
          p.cleanup?.();
          live.wire.send({ t: 'cancel', id });
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        p.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      releasing(p, live, sids);
      this.pending.set(id, p);
      try {
        live.wire.send({ t: 'call', id, path, args: encoded });
      } catch (err) {
        this.pending.delete(id);
        p.cleanup?.();
        reject(err);
      }
    });
  }

  /** A method returning an AsyncIterable: the call is made when reading starts. */
  streamCall(path: string, args: unknown[]): AsyncIterable<unknown> {
    return {
      [Symbol.asyncIterator]: () => {
        let inner: AsyncIterator<unknown> | undefined;
        return {
          next: async () => {
            inner ??= ((await this.call(path, args)) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
            return inner.next();
          },
          return: async () => {
            await inner?.return?.();
            return { done: true, value: undefined };
          },
        };
      },
    };
  }

  async ready(requireVersion?: string): Promise<void> {
    if (!this.live) await new Promise<void>((r) => this.connectedWaiters.push(r));
    await this.call('ready', [requireVersion]);
  }

  async close(): Promise<void> {
    this.closing.abort();
    // A ready() still waiting for the owner ends (unavailable).
    for (const w of this.connectedWaiters.splice(0)) w();
    const live = this.live;
    if (!live) return;
    const closed = new Promise<void>((r) => live.wire.socket.once('close', () => r()));
    live.wire.socket.destroy();
    await closed;
  }
}

/** A store whose every call goes to the owner listening on `path`; rejects when it cannot be reached now. */
export async function connectRemoteStore(path: string, opts: { log?: Logger } = {}): Promise<Store> {
  const conn = new Connection(path, opts.log);
  await conn.connect();
  const methods = new Map<string, (...args: unknown[]) => unknown>();
  const member = (path: string): ((...args: unknown[]) => unknown) => {
    let fn = methods.get(path);
    if (!fn) {
      fn = STREAM_RESULTS.has(path) ? (...args) => conn.streamCall(path, args) : (...args) => conn.call(path, args);
      methods.set(path, fn);
    }
    return fn;
  };
  const namespaces = new Map<string, object>();
  const namespace = (name: string): object => {
    let ns = namespaces.get(name);
    if (!ns) {
      ns = new Proxy({}, { get: (_t, key) => (typeof key === 'symbol' || key === 'then' ? undefined : member(`${name}.${key}`)) });
      namespaces.set(name, ns);
    }
    return ns;
  };
  const special: Record<string, unknown> = {
    apiKeysFor: () => store,
    watchWrites: (fn: WriteFaultListener) => conn.watch(fn),
    close: () => conn.close(),
    ready: (requireVersion?: string) => conn.ready(requireVersion),
  };
  const store: Store = new Proxy({} as Store, {
    get: (_t, key) => {
      if (typeof key === 'symbol' || key === 'then') return undefined;
      if (key === 'kind') return conn.hello!.kind;
      if (key === 'traits') return conn.hello!.traits;
      if (Object.hasOwn(special, key)) return special[key];
      return NAMESPACES.has(key) ? namespace(key) : member(key);
    },
  });
  return store;
}
