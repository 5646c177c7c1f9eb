// The owner's side of the store proxy: a unix socket (mode 0600) on which each worker's RemoteStore
// calls the one open store. Calls are dispatched by their path (`getAgent`, `uploads.putChunk`, …) as
// they arrive, so the calls of one event-loop turn share its group commit; each is answered when the
// store's promise settles, which for a write is after its commit (acknowledged writes stay durable).
import { chmodSync, rmSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import type { Store } from '../port';
import { StreamTable } from './streams';
import { FramedSocket, isAsyncIterable, isSignalRef, isStreamRef, toWire, type Frame } from './wire';

/** Members a worker may not call: its close() ends its connection only; the rest are answered at connect or client-side. */
const NOT_CALLABLE = new Set(['close', 'watchWrites', 'apiKeysFor', 'constructor']);

export interface StoreServer {
  readonly path: string;
  /** Stops listening and ends every connection (after the workers are gone). */
  close(): Promise<void>;
}

/** The function `path` names on `store`, bound to its object; undefined for anything else. */
function method(store: Store, path: string): ((...args: unknown[]) => unknown) | undefined {
  const parts = path.split('.');
  if (parts.length > 2 || parts.some((p) => p.startsWith('_')) || NOT_CALLABLE.has(parts[parts.length - 1]!)) return undefined;
  let target: unknown = store;
  for (const p of parts.slice(0, -1)) {
    target = (target as Record<string, unknown>)[p];
    if (typeof target !== 'object' || target === null) return undefined;
  }
  const fn = (target as Record<string, unknown>)[parts[parts.length - 1]!];
  return typeof fn === 'function' ? (fn as (...args: unknown[]) => unknown).bind(target) : undefined;
}

function serveConnection(store: Store, socket: net.Socket, log: Logger): void {
  const calls = new Map<number, AbortController>();
  const wire = new FramedSocket(socket, onFrame, (err) => log.error({ err }, 'store proxy: bad frame from a worker'));
  const streams = new StreamTable((f) => wire.send(f));
  wire.send({ t: 'hello', hello: { kind: store.kind, traits: { ...store.traits } } });
  // After the hello: a store with a fault tells it at once, and a client drops what comes before its hello.
  const unwatch = store.watchWrites?.((fault) => wire.send({ t: 'fault', fault }));

  function onFrame(f: Frame): void {
    try {
      if (streams.handle(f)) return;
      if (f.t === 'cancel') calls.get(f.id)?.abort(new Error('cancelled'));
      else if (f.t === 'call') call(f.id, f.path, f.args);
    } catch (err) {
      // A frame of the wrong shape is a broken peer: its connection ends, the owner (and its other workers) go on.
      log.error({ err }, 'store proxy: a worker sent a frame that is not a call; closing its connection');
      socket.destroy();
    }
  }

  function call(id: number, path: string, raw: unknown[]): void {
    const fn = method(store, path);
    if (!fn) {
      wire.send({ t: 'result', id, error: { name: 'Error', message: `store proxy: no method ${path}` } });
      return;
    }
    let abort: AbortController | undefined;
    const args = raw.map((a) => {
      if (isStreamRef(a)) return streams.import(a);
      if (isSignalRef(a)) {
        abort ??= new AbortController();
        return abort.signal;
      }
      return a;
    });
    if (abort) calls.set(id, abort);
    let result: unknown;
    try {
      result = fn(...args);
    } catch (err) {
      calls.delete(id);
      wire.send({ t: 'result', id, error: toWire(err) });
      return;
    }
    // Readers (readChunk) return an iterable at once; it is pulled through the stream table.
    if (isAsyncIterable(result)) {
      wire.send({ t: 'result', id, stream: streams.export(result).$stream });
      return;
    }
    Promise.resolve(result).then((value) => {
      calls.delete(id);
      if (isAsyncIterable(value)) wire.send({ t: 'result', id, stream: streams.export(value).$stream });
      else wire.send({ t: 'result', id, value });
    }, (err: unknown) => {
      calls.delete(id);
      wire.send({ t: 'result', id, error: toWire(err) });
    });
  }

  socket.on('error', () => undefined);
  socket.once('close', () => {
    unwatch?.();
    for (const c of calls.values()) c.abort(new Error('worker gone'));
    calls.clear();
    streams.close(new Error('worker gone'));
  });
}

/**
 * Serves `store` on a unix socket at `path` (a stale one from a killed run is replaced: the caller
 * holds the data directory's lock). Mode 0600 from the bind on, by the umask, so no other user can connect.
 */
export async function serveStore(store: Store, path: string, log: Logger): Promise<StoreServer> {
  rmSync(path, { force: true });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveConnection(store, socket, log);
  });
  const listening = new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
  });
  // The bind happens within listen() (this is not a cluster worker), so the umask covers it and nothing else.
  const umask = process.umask(0o177);
  try {
    server.listen(path);
  } finally {
    process.umask(umask);
  }
  await listening;
  chmodSync(path, 0o600);
  return {
    path,
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
      rmSync(path, { force: true });
    },
  };
}
