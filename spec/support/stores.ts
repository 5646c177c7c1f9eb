// The stores the conformance suite runs against: the embedded one, the Elasticsearch adapter on the
// double, and — when ELASTICSEARCH_HOSTS and ELASTICSEARCH_SERVICE_TOKEN are set — on a real cluster.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { EsStore } from '../../src/store/elasticsearch/store';
import type { Store } from '../../src/store/port';
import { connectRemoteStore } from '../../src/store/remote/client';
import { withLocalReads } from '../../src/store/remote/local-reads';
import { serveStore } from '../../src/store/remote/server';
import { CheckinReads } from '../../src/store/sqlite/check-in-reads';
import { resolveSecretBox } from '../../src/store/sqlite/secret-box';
import { SqliteStore } from '../../src/store/sqlite/store';
import { EsDouble } from './es-double/server';
import { removeDir, tempDir } from './fleet-server';

export interface StoreUnderTest {
  store: Store;
  close(): Promise<void>;
}

export const REAL_ES = process.env['ELASTICSEARCH_HOSTS'] && process.env['ELASTICSEARCH_SERVICE_TOKEN']
  ? { hosts: process.env['ELASTICSEARCH_HOSTS'].split(','), token: process.env['ELASTICSEARCH_SERVICE_TOKEN'] }
  : undefined;

export function esStore(hosts: string[], serviceToken: string, overrides: Record<string, unknown> = {}): EsStore {
  const config = buildConfig({ output: { elasticsearch: { hosts, service_token: serviceToken } }, ...overrides });
  return new EsStore(config.elasticsearch!, { bulk: config.server.bulk, monitor: config.monitor }, pino({ level: 'silent' }));
}

export const STORE_KINDS: [string, () => Promise<StoreUnderTest>][] = [
  ['sqlite', async () => {
    const dir = tempDir();
    const store = new SqliteStore(`${dir}/fleet-server.db`);
    return { store, close: async () => { await store.close(); removeDir(dir); } };
  }],
  // What a cluster worker on the embedded store sees: the port over the owner's socket (in-process here).
  ['remote (over the socket)', async () => {
    const dir = tempDir();
    const owner = new SqliteStore(`${dir}/fleet-server.db`);
    const server = await serveStore(owner, `${dir}/store.sock`, pino({ level: 'silent' }));
    const store = await connectRemoteStore(server.path);
    return { store, close: async () => { await store.close(); await server.close(); await owner.close(); removeDir(dir); } };
  }],
  // And with the check-in's reads on a read-only connection of its own, as a worker runs it.
  ['worker (over the socket, check-in reads local)', async () => {
    const dir = tempDir();
    const owner = new SqliteStore(`${dir}/fleet-server.db`);
    const server = await serveStore(owner, `${dir}/store.sock`, pino({ level: 'silent' }));
    const store = withLocalReads(await connectRemoteStore(server.path), new CheckinReads(`${dir}/fleet-server.db`, resolveSecretBox(dir, undefined, () => false)), pino({ level: 'silent' }));
    return { store, close: async () => { await store.close(); await server.close(); await owner.close(); removeDir(dir); } };
  }],
  ['elasticsearch (double)', async () => {
    const es = await new EsDouble().start();
    const store = esStore([es.url], es.serviceToken);
    return { store, close: async () => { await store.close(); await es.stop(); } };
  }],
  ...(REAL_ES ? [['elasticsearch (real)', async () => {
    const store = esStore(REAL_ES.hosts, REAL_ES.token);
    return { store, close: () => store.close() };
  }] as [string, () => Promise<StoreUnderTest>]] : []),
];

/** An Elasticsearch store on a double of its own, ready. */
export async function esStoreOnDouble(): Promise<{ es: EsDouble; store: EsStore }> {
  const es = await new EsDouble().start();
  const store = esStore([es.url], es.serviceToken);
  await store.ready();
  return { es, store };
}

/** Closes what esStoreOnDouble opened (either may not have been, if its start failed). */
export async function closeEsStoreOnDouble(bed: { es?: EsDouble; store?: EsStore }): Promise<void> {
  await bed.store?.close();
  await bed.es?.stop();
}

/** The kinds a test of store behaviour runs in process without a socket: the embedded store and the double. */
export const LOCAL_STORE_KINDS = STORE_KINDS.filter(([name]) => name === 'sqlite' || name === 'elasticsearch (double)');

/**
 * Opens a store before a describe block's tests and closes it after them; the returned object stands
 * for that store (its members are read from the open store when used).
 */
export function storeFixture(make: () => Promise<StoreUnderTest>): Store {
  let s: StoreUnderTest | undefined;
  beforeAll(async () => {
    s = await make();
    await s.store.ready();
  });
  afterAll(() => s?.close());
  return new Proxy({} as Store, {
    get: (_t, key) => {
      const v = (s!.store as unknown as Record<string | symbol, unknown>)[key];
      return typeof v === 'function' ? v.bind(s!.store) : v;
    },
  });
}
