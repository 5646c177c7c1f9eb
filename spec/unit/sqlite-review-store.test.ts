// The embedded store as an operator meets it: databases an earlier build wrote open and work, one a
// newer build wrote is refused untouched, a write lock held by another process costs the server one short
// wait and then 503s (never a stalled event loop), and the key file is private and on disk before use.
import { MIGRATIONS } from '../../src/store/sqlite/schema';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { StoreUnavailableError } from '../../src/store/port';
import { SqliteStore } from '../../src/store/sqlite/store';
import { removeDir, tempDir } from '../support/fleet-server';
import { once } from '../support/bytes';

let dir: string;
let dbPath: string;
beforeEach(() => {
  dir = tempDir('sqlite-review-');
  dbPath = join(dir, 'fleet-server.db');
});
afterEach(() => {
  jest.restoreAllMocks();
  removeDir(dir);
});

const KEY = 'k'.repeat(40);
const version = (path: string): number => {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  } finally {
    db.close();
  }
};

async function publish(store: SqliteStore, id: string): Promise<void> {
  const data = Buffer.from('hello world');
  await store.deliveries.publishDeliveryFile({
    id, name: 'f.bin', mimeType: 'application/octet-stream', size: data.length, chunkSize: 4,
    sha256: createHash('sha256').update(data).digest('hex'), agentIds: ['agent-1'],
  }, once(data));
}

describe('a database the first release of the file tables wrote (delivery_chunks with sha2)', () => {
  // Migration 3 as commit 153be3c shipped it: delivery_chunks had `sha2 TEXT NOT NULL`.
  const OLD_DELIVERY_CHUNKS = `DROP TABLE delivery_chunks;
    CREATE TABLE delivery_chunks (
      file_id TEXT NOT NULL REFERENCES delivery_files(id) ON DELETE CASCADE,
      n INTEGER NOT NULL,
      size INTEGER NOT NULL,
      sha2 TEXT NOT NULL,
      PRIMARY KEY (file_id, n)
    ) WITHOUT ROWID;`;

  test.each([
    ['left at schema version 3 by that build', `${OLD_DELIVERY_CHUNKS} DROP TABLE agent_checkins; PRAGMA user_version = 3;`],
    ['since migrated to version 5 by a later one', OLD_DELIVERY_CHUNKS],
  ])('%s: deliveries publish and read back, its rows kept, at this build\'s schema version', async (_name, sql) => {
    let store = new SqliteStore(dbPath, { secretsKey: KEY });
    await store.createSecret('kept');
    await store.close();
    const db = new DatabaseSync(dbPath);
    db.exec(sql);
    db.exec("INSERT INTO delivery_files (id, status, doc) VALUES ('old', 'READY', '{\"file\":{\"size\":4,\"ChunkSize\":4}}')");
    db.exec("INSERT INTO delivery_targets (file_id, agent_id) VALUES ('old', 'agent-1')");
    db.exec("INSERT INTO delivery_chunks (file_id, n, size, sha2) VALUES ('old', 0, 4, 'aa')");
    db.close();

    store = new SqliteStore(dbPath, { secretsKey: KEY });
    try {
      await publish(store, 'new');
      expect((await store.deliveries.findDeliveryFile('new', { agentId: 'agent-1' }))?.chunks).toEqual(['0:new', '1:new', '2:new']);
      expect((await store.deliveries.findDeliveryFile('old', { agentId: 'agent-1' }))?.chunks).toEqual(['0:old']);
    } finally {
      await store.close();
    }
    expect(version(dbPath)).toBe(MIGRATIONS.length);
  });
});

describe('a database a newer build wrote', () => {
  test('is refused as newer before anything is changed: no journal-mode switch, no key file made, not blamed on the key', () => {
    // A newer build's database, in the rollback journal and with a key check this build cannot read.
    const db = new DatabaseSync(dbPath);
    db.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES ('key_check', 'v2:sealed-some-newer-way');
      PRAGMA user_version = 99;`);
    db.close();
    const header = (): Buffer => {
      const fd = openSync(dbPath, 'r');
      const b = Buffer.alloc(100);
      readSync(fd, b, 0, 100, 0);
      closeSync(fd);
      return b;
    };
    const before = header();
    expect(() => new SqliteStore(dbPath, { server: true })).toThrow(/written by a newer fleet-server \(schema version 99/);
    expect(() => new SqliteStore(dbPath, { server: true, secretsKey: KEY })).toThrow(/newer fleet-server/);
    // Bytes 18-19: the file's journal mode (1 rollback, 2 WAL).
    expect(header().subarray(18, 20)).toEqual(before.subarray(18, 20));
    expect(existsSync(join(dir, 'fleet-server.key'))).toBe(false);
  });
});

test('a server whose database another process holds write-locked: one short wait, then 503s at once; writes resume after', async () => {
  const store = new SqliteStore(dbPath, { server: true, secretsKey: KEY });
  const faults: (string | undefined)[] = [];
  store.watchWrites((f) => faults.push(f));
  const other = new DatabaseSync(dbPath);
  try {
    await store.createSecret('before');
    other.exec('BEGIN IMMEDIATE');
    const started = Date.now();
    // The waits are on the event loop: three of 10 s each held every request the server had.
    const writes = ['a', 'b', 'c'].map((v) => store.createSecret(v));
    const waited = Date.now() - started;
    for (const w of writes) await expect(w).rejects.toThrow(StoreUnavailableError);
    await expect(writes[0]).rejects.toThrow(/locked/);
    expect(waited).toBeLessThan(2500);
    expect(faults.at(-1)).toMatch(/locked/);
    other.exec('ROLLBACK');
    await new Promise((r) => setTimeout(r, 1100));
    const id = await store.createSecret('after');
    expect(await store.getSecret(id)).toBe('after');
    expect(faults.at(-1)).toBeUndefined();
  } finally {
    other.close();
    await store.close();
  }
}, 60_000);

describe('the key file', () => {
  test('one readable by others is narrowed to 0600 when the store opens it', async () => {
    const material = 'm'.repeat(44);
    writeFileSync(join(dir, 'fleet-server.key'), `${material}\n`);
    chmodSync(join(dir, 'fleet-server.key'), 0o644);
    const store = new SqliteStore(dbPath);
    try {
      const id = await store.createSecret('s');
      expect(await store.getSecret(id)).toBe('s');
    } finally {
      await store.close();
    }
    expect(statSync(join(dir, 'fleet-server.key')).mode & 0o777).toBe(0o600);
    // The same key: a store given it directly opens the secrets.
    const again = new SqliteStore(dbPath, { secretsKey: material });
    await again.close();
  });

  test('a new one is flushed to disk before it is linked into place, and its directory after', async () => {
    // The module object the store's code calls through (a namespace import's bindings cannot be spied on).
    const fs = require('node:fs') as typeof import('node:fs');
    const calls: string[] = [];
    const realFsync = fs.fsyncSync;
    const realLink = fs.linkSync;
    jest.spyOn(fs, 'fsyncSync').mockImplementation((fd) => {
      calls.push('fsync');
      realFsync(fd);
    });
    jest.spyOn(fs, 'linkSync').mockImplementation((from, to) => {
      calls.push(`link ${String(to).endsWith('fleet-server.key') ? 'key' : String(to)}`);
      realLink(from, to);
    });
    const store = new SqliteStore(dbPath);
    await store.close();
    expect(calls).toEqual(['fsync', 'link key', 'fsync']);
    expect(statSync(join(dir, 'fleet-server.key')).mode & 0o777).toBe(0o600);
  });
});

test('a credential given as a number (a YAML `password: 918273645`) is sealed at rest too, and read back a number', async () => {
  const store = new SqliteStore(dbPath, { secretsKey: KEY });
  try {
    const outputs = { default: { type: 'kafka', hosts: ['k:9092'], username: 'u', password: 918273645, ssl: { key_passphrase: 5550123 } } };
    await store.addPolicyRevision({
      '@timestamp': new Date().toISOString(), policy_id: 'p1', revision_idx: 1, coordinator_idx: 1,
      data: { id: 'p1', revision: 1, outputs, inputs: [{ type: 'sql', streams: [{ password: 7770001, port: 5432 }] }] },
    } as never);
    const [action] = await store.createActions([{
      action_id: 'a1', type: 'MIGRATE', agents: ['x'], expiration: new Date(Date.now() + 60_000).toISOString(),
      data: { enrollment_token: 4440001, target_uri: 'https://other' },
    } as never]);
    const data = (await store.latestPolicy('p1'))!._source.data as Record<string, unknown>;
    expect(data['outputs']).toEqual(outputs);
    expect(data['inputs']).toEqual([{ type: 'sql', streams: [{ password: 7770001, port: 5432 }] }]);
    expect((await store.findAction('a1'))!._source.data).toEqual({ enrollment_token: 4440001, target_uri: 'https://other' });
    expect(action!._source.data).toEqual({ enrollment_token: 4440001, target_uri: 'https://other' });
    const db = new DatabaseSync(dbPath, { readOnly: true });
    const rows = [...db.prepare('SELECT doc FROM policies').all(), ...db.prepare('SELECT doc FROM actions').all()].map((r) => (r as { doc: string }).doc).join('\n');
    db.close();
    for (const n of ['918273645', '5550123', '7770001', '4440001']) expect([n, rows.includes(n)]).toEqual([n, false]);
    // What is not a credential stays readable.
    expect(rows.includes('5432')).toBe(true);
  } finally {
    await store.close();
  }
});

test('a database SQLite cannot open at start names its file (here its -wal is a directory)', async () => {
  const store = new SqliteStore(dbPath, { secretsKey: KEY });
  await store.close();
  mkdirSync(`${dbPath}-wal`);
  expect(() => new SqliteStore(dbPath, { server: true, secretsKey: KEY })).toThrow(`unable to open database file: ${dbPath}`);
});
