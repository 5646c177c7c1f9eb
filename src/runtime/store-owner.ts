// Cluster workers on the embedded store: SQLite has one writer, so the primary opens the one store
// (taking the data directory's lock) and serves it on a unix socket under path.data; each worker
// reaches it through the Store-port proxy (store/remote). The primary's loop runs the SQL — writes are
// short, one group commit per event-loop turn — and workers never wait on SQLite's write lock: a busy
// database is a slow answer, not a stalled event loop. docs/workers.md has the reasoning.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FleetServerConfig } from '../config/config';
import { openStore } from '../store/open';
import type { Store } from '../store/port';
import { serveStore, type StoreServer } from '../store/remote/server';
import { withStoreContext } from './serve';

/** Where a worker finds the owner's socket. */
export const ENV_STORE_SOCKET = 'FLEET_SERVER_STORE_SOCKET';
export const STORE_SOCKET = 'fleet-server.sock';
/** sun_path holds 108 bytes on Linux (104 on macOS), its terminating NUL included. */
const MAX_SOCKET_PATH = 103;

export interface StoreOwner {
  readonly store: Store;
  readonly socketPath: string;
  /** Stops serving and closes the store (after the workers are gone). */
  close(): Promise<void>;
}

export async function ownStore(config: FleetServerConfig, log: Logger): Promise<StoreOwner> {
  const store = await withStoreContext(config, () => openStore(config, log, { server: true }));
  // A path.data too deep for a socket path gets a private directory of its own in the temp dir.
  let path = join(config.pathData, STORE_SOCKET);
  let privateDir: string | undefined;
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    privateDir = mkdtempSync(join(tmpdir(), 'fleet-server-'));
    path = join(privateDir, STORE_SOCKET);
  }
  let server: StoreServer;
  try {
    server = await serveStore(store, path, log);
  } catch (err) {
    await store.close();
    throw err;
  }
  log.info({ 'store.socket': path }, 'store served to the workers');
  return {
    store,
    socketPath: path,
    close: async () => {
      await server.close();
      await store.close();
      if (privateDir) rmSync(privateDir, { recursive: true, force: true });
    },
  };
}
