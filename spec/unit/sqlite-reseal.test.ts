// Databases an earlier build left with credentials in plain text: migration 2 as be4e9f4 released it
// sealed no policy or action, and numbers under sensitive names were sealed only from 5203390 on. Such
// rows read back correctly, so nothing but a migration would ever seal them; after it no byte of the
// database or its WAL holds them, rows already sealed are left as they were, and the store still reads
// every value back. Also: an existing data directory wider than 0700 is narrowed when the store opens it.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { SqliteStore } from '../../src/store/sqlite/store';
import { removeDir, tempDir } from '../support/fleet-server';

const KEY = 'k'.repeat(40);
let dir: string;
let dbPath: string;
beforeEach(() => {
  dir = tempDir('sqlite-reseal-');
  dbPath = join(dir, 'fleet-server.db');
});
afterEach(() => removeDir(dir));

/** Every byte SQLite keeps for the database: the file, its WAL and shared-memory index. */
function storeBytes(path: string): Buffer {
  return Buffer.concat([path, `${path}-wal`, `${path}-shm`].filter(existsSync).map((f) => readFileSync(f)));
}

function schemaVersion(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  } finally {
    db.close();
  }
}

function rawDoc(path: string, table: 'policies' | 'actions', id: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare(`SELECT doc FROM ${table} WHERE id = ?`).get(id) as { doc: string }).doc;
  } finally {
    db.close();
  }
}

const policyDoc = (policyId: string, revision: number, outputs: Record<string, unknown>): string => JSON.stringify({
  '@timestamp': '2026-12-01T00:00:00.000Z', policy_id: policyId, revision_idx: revision, coordinator_idx: 1,
  data: { id: policyId, revision, outputs, inputs: [{ type: 'sql', streams: [{ password: 7770001, port: 5432 }] }] },
});
const actionDoc = (actionId: string, token: string | number): string => JSON.stringify({
  action_id: actionId, type: 'MIGRATE', agents: ['agent-1'], expiration: '2099-01-01T00:00:00.000Z',
  data: { enrollment_token: token, target_uri: 'https://other' },
});

const MANY = 150; // more actions than a rewrite batch holds

/**
 * A database as an earlier build left it at `version`: a row the current code sealed, the same row given
 * a plain credential beside its sealed one, plain policies and actions, an expired action deleted without
 * secure_delete, and all of it still in the WAL, as a server stopped without a final checkpoint leaves it.
 */
async function oldDatabase(version: number, dropNewerTables: string): Promise<{ sealedId: string; sealedBefore: string }> {
  const staging = join(dir, 'staging');
  mkdirSync(staging);
  const stagingDb = join(staging, 'fleet-server.db');
  const store = new SqliteStore(stagingDb, { secretsKey: KEY });
  const sealed = await store.addPolicyRevision(JSON.parse(policyDoc('p-sealed', 1, { default: { type: 'elasticsearch', api_key: 'sealed-by-store' } })));
  await store.close();

  const db = new DatabaseSync(stagingDb);
  db.exec('PRAGMA wal_autocheckpoint = 0');
  db.exec(dropNewerTables);
  db.exec(`PRAGMA user_version = ${version}`);
  const policy = db.prepare('INSERT INTO policies (id, policy_id, revision_idx, doc) VALUES (?, ?, ?, ?)');
  policy.run('r1', 'p1', 1, policyDoc('p1', 1, { default: { type: 'elasticsearch', api_key: 'plainkeyid:plain-policy-api-key', ssl: { key: 'plain-ssl-private-key' } } }));
  policy.run('r2', 'p2', 1, policyDoc('p2', 1, { default: { type: 'kafka', username: 'u', password: 918273645 } }));
  // The sealed row gains a plain credential beside its sealed one.
  const withPlain = JSON.parse(rawDoc(stagingDb, 'policies', sealed._id)) as { data: { outputs: { default: Record<string, unknown> } } };
  withPlain.data.outputs.default['password'] = 'plain-beside-sealed';
  db.prepare('UPDATE policies SET doc = ? WHERE id = ?').run(JSON.stringify(withPlain), sealed._id);
  const action = db.prepare('INSERT INTO actions (id, action_id, expiration_ms, agent_count, doc) VALUES (?, ?, ?, 1, ?)');
  for (let i = 0; i < MANY; i++) action.run(`doc-${i}`, `a${i}`, 4_070_908_800_000, actionDoc(`a${i}`, `plain-enroll-token-${String(i).padStart(3, '0')}`));
  action.run('doc-num', 'a-num', 4_070_908_800_000, actionDoc('a-num', 4440001));
  action.run('doc-gone', 'a-gone', 1, actionDoc('a-gone', 'plain-deleted-token'));
  db.exec("DELETE FROM actions WHERE id = 'doc-gone'");
  // As a build from before be4e9f4 (which checks no schema version) writes them into a migrated database.
  db.prepare('INSERT INTO secrets (id, value) VALUES (?, ?)').run('s-plain', 'BBBBBBBBBBBBBBBBBBBB:plain-output-secret');
  db.prepare('INSERT INTO enrollment_keys (id, api_key_id, policy_id, active, doc) VALUES (?, ?, ?, 1, ?)')
    .run('e1', 'AAAAAAAAAAAAAAAAAAAA', 'p1', JSON.stringify({ api_key_id: 'AAAAAAAAAAAAAAAAAAAA', api_key: TOKEN, active: true, policy_id: 'p1', name: 'old' }));
  // Copied before the connection closes (and checkpoints): the rows are in the WAL only.
  copyFileSync(stagingDb, dbPath);
  copyFileSync(`${stagingDb}-wal`, `${dbPath}-wal`);
  db.close();
  removeDir(staging);
  return { sealedId: sealed._id, sealedBefore: JSON.stringify(withPlain) };
}

const TOKEN = Buffer.from('AAAAAAAAAAAAAAAAAAAA:plain-enroll-secret').toString('base64');
const PLAINTEXT = ['plain-output-secret', TOKEN, 'plain-policy-api-key', 'plain-ssl-private-key', '918273645', '7770001', 'plain-beside-sealed', 'plain-enroll-token-', '4440001', 'plain-deleted-token'];
const found = (bytes: Buffer): string[] => PLAINTEXT.filter((s) => bytes.includes(s));

describe.each([
  ['left at schema version 2 by be4e9f4 (no policy or action sealed)', 2,
    'DROP TABLE upload_chunks; DROP TABLE uploads; DROP TABLE delivery_targets; DROP TABLE delivery_chunks; DROP TABLE delivery_files; DROP TABLE artifacts; DROP TABLE agent_checkins;'],
  ['at schema version 5 (numbers under sensitive names not sealed)', 5, ''],
])('a database %s', (_name, version, drop) => {
  test('opens with no credential left in plain text in the database or its WAL, every value read back as given', async () => {
    const { sealedId, sealedBefore } = await oldDatabase(version as number, drop as string);
    // Written in the clear at rest, the deleted token included (no secure_delete then).
    expect(found(storeBytes(dbPath))).toEqual(PLAINTEXT);

    const store = new SqliteStore(dbPath, { secretsKey: KEY });
    try {
      // While the store holds the database open, and before anything else writes.
      expect(found(storeBytes(dbPath))).toEqual([]);
      const p1 = (await store.latestPolicy('p1'))!._source.data;
      expect(p1.outputs).toEqual({ default: { type: 'elasticsearch', api_key: 'plainkeyid:plain-policy-api-key', ssl: { key: 'plain-ssl-private-key' } } });
      expect(p1.inputs).toEqual([{ type: 'sql', streams: [{ password: 7770001, port: 5432 }] }]);
      expect((await store.latestPolicy('p2'))!._source.data.outputs).toEqual({ default: { type: 'kafka', username: 'u', password: 918273645 } });
      expect((await store.latestPolicy('p-sealed'))!._source.data.outputs).toEqual({
        default: { type: 'elasticsearch', api_key: 'sealed-by-store', password: 'plain-beside-sealed' },
      });
      for (const i of [0, 63, 64, 127, 128, MANY - 1]) {
        expect((await store.findAction(`a${i}`))!._source.data).toEqual({ enrollment_token: `plain-enroll-token-${String(i).padStart(3, '0')}`, target_uri: 'https://other' });
      }
      expect((await store.findAction('a-num'))!._source.data).toEqual({ enrollment_token: 4440001, target_uri: 'https://other' });
      expect(await store.findAction('a-gone')).toBeUndefined();
      expect(await store.getSecret('s-plain')).toBe('BBBBBBBBBBBBBBBBBBBB:plain-output-secret');
      const [key] = await store.listEnrollmentKeys('p1');
      expect(key!._source).toMatchObject({ api_key: '', api_key_prefix: TOKEN.slice(0, 8), name: 'old', active: true });
    } finally {
      await store.close();
    }
    expect(found(storeBytes(dbPath))).toEqual([]);
    expect(schemaVersion(dbPath)).toBe(6);

    // The value sealed before was kept as it was (not opened and sealed again), its plain neighbour sealed.
    const before = JSON.parse(sealedBefore) as { data: { outputs: { default: Record<string, string> } } };
    const after = JSON.parse(rawDoc(dbPath, 'policies', sealedId)) as typeof before;
    expect(after.data.outputs.default['api_key']).toBe(before.data.outputs.default['api_key']);
    expect(after.data.outputs.default['password']).toMatch(/^\$sealed:v1:/);
  });
});

test('rows holding no plain credential are not rewritten', async () => {
  let store = new SqliteStore(dbPath, { secretsKey: KEY });
  const sealed = await store.addPolicyRevision(JSON.parse(policyDoc('p', 1, { default: { type: 'elasticsearch', api_key: 'k:v', password: 12345 } })));
  const [action] = await store.createActions([JSON.parse(actionDoc('a', 'tok'))]);
  const plainFree = await store.addPolicyRevision(JSON.parse(policyDoc('q', 1, { default: { type: 'elasticsearch', hosts: ['https://es'] } })));
  await store.close();
  const before = [rawDoc(dbPath, 'policies', sealed._id), rawDoc(dbPath, 'actions', action!._id), rawDoc(dbPath, 'policies', plainFree._id)];
  const db = new DatabaseSync(dbPath);
  db.exec('PRAGMA user_version = 5');
  db.close();
  store = new SqliteStore(dbPath, { secretsKey: KEY });
  await store.close();
  expect(schemaVersion(dbPath)).toBe(6);
  expect([rawDoc(dbPath, 'policies', sealed._id), rawDoc(dbPath, 'actions', action!._id), rawDoc(dbPath, 'policies', plainFree._id)]).toEqual(before);
});

describe('the data directory', () => {
  const mode = (p: string): number => statSync(p).mode & 0o7777;

  test('an existing one readable by others is narrowed to 0700 when the store opens it (the server too)', async () => {
    chmodSync(dir, 0o755);
    let store = new SqliteStore(dbPath, { secretsKey: KEY });
    await store.close();
    expect(mode(dir)).toBe(0o700);
    chmodSync(dir, 0o770);
    store = new SqliteStore(dbPath, { secretsKey: KEY, server: true });
    await store.close();
    expect(mode(dir)).toBe(0o700);
  });

  test('a sticky one (shared by design, as /tmp) is left as it is', async () => {
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const store = new SqliteStore(join(shared, 'fleet-server.db'), { secretsKey: KEY });
    await store.close();
    expect(mode(shared)).toBe(0o1777);
  });
});
