// The embedded store in production: private files whatever the umask, no usable credential in the
// database files, one server per data directory, a damaged file refused at start, and a full disk
// answered with 503 and DEGRADED health until writes succeed again — with nothing answered 200 lost.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { promisify } from 'node:util';
import pino from 'pino';
import { Admin } from '../src/fleet/admin';
import { agentHealth } from '../src/fleet/agent-health';
import { Bookkeeper } from '../src/fleet/bookkeeping';
import { SelfMonitor } from '../src/fleet/self-monitor';
import type { AgentDoc } from '../src/store/documents';
import { StoreUnavailableError, type DocUpdate, type Store } from '../src/store/port';
import { guarded, storeError } from '../src/store/sqlite/errors';
import { MIGRATIONS } from '../src/store/sqlite/schema';
import { SqliteStore } from '../src/store/sqlite/store';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { DIST, removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';
import { NODE_FLAGS } from './support/node-flags';

jest.setTimeout(60_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mode = (p: string): number => statSync(p).mode & 0o777;
const octal = (m: number): string => `0${m.toString(8)}`;

/** Every byte the store keeps on disk: the database and its -wal and -shm files. */
function storeBytes(dataDir: string): Buffer {
  const db = join(dataDir, 'fleet-server.db');
  return Buffer.concat([db, `${db}-wal`, `${db}-shm`].filter(existsSync).map((f) => readFileSync(f)));
}

/** The secret half of a base64 "id:secret" credential (an enrollment token or an access key). */
const secretOf = (b64: string): string => Buffer.from(b64, 'base64').toString().split(':')[1]!;

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const status = async (s: FleetServerProcess): Promise<{ code: number; state: string }> => {
  const r = await request(`${s.url}/api/status`);
  return { code: r.status, state: r.json.status };
};

/** Runs the server expecting it to refuse to start: its exit code and stderr. */
function startRefused(dataDir: string, extra: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const args = [...NODE_FLAGS, DIST, '-E', `path.data=${dataDir}`, '-E', 'inputs.0.server.host=127.0.0.1',
    '-E', 'inputs.0.server.port=0', '-E', 'inputs.0.server.internal_port=0', ...extra];
  const child = spawn(process.execPath, args, { cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) => child.once('exit', (code) => {
    clearTimeout(timer);
    resolve({ code, stderr });
  }));
}

/** Lines a person reads (not the JSON log). */
const plainLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));

describe('files at rest', () => {
  const root = tempDir();
  let server: FleetServerProcess | undefined;
  afterAll(async () => {
    await server?.stop();
    removeDir(root);
  });

  test('under umask 000 the data directory is 0700 and the database, -wal, -shm, key and lock files 0600', async () => {
    const dataDir = join(root, 'data', 'fleet');
    const old = process.umask(0);
    try {
      server = await startFleetServer({ dataDir: root, overrides: [`path.data=${dataDir}`] });
    } finally {
      process.umask(old);
    }
    const agent = new SimAgent(server.url);
    expect((await agent.enroll((await server.enrollmentToken()))).status).toBe(200);
    expect((await agent.checkin()).status).toBe(200);
    const db = join(dataDir, 'fleet-server.db');
    const modes = Object.fromEntries([dataDir, db, `${db}-wal`, `${db}-shm`, join(dataDir, 'fleet-server.key'), join(dataDir, 'fleet-server.lock')]
      .map((p) => [p.slice(root.length), octal(mode(p))]));
    expect(modes).toEqual({
      '/data/fleet': '0700',
      '/data/fleet/fleet-server.db': '0600',
      '/data/fleet/fleet-server.db-wal': '0600',
      '/data/fleet/fleet-server.db-shm': '0600',
      '/data/fleet/fleet-server.key': '0600',
      '/data/fleet/fleet-server.lock': '0600',
    });
  });
});

describe('credentials at rest', () => {
  let server: FleetServerProcess;
  let agent: SimAgent;
  let outputKey: string;
  afterAll(async () => {
    await server?.stop();
    removeDir(server.dataDir);
  });

  test('after enrolling and a first check-in, the database files hold neither the enrollment token, the access key nor the output key', async () => {
    server = await startFleetServer();
    const token = (await server.enrollmentToken());
    agent = new SimAgent(server.url);
    const enrolled = await agent.enroll(token);
    expect(enrolled.status).toBe(200);
    const first = await agent.checkin();
    expect(first.json.actions[0].type).toBe('POLICY_CHANGE');
    outputKey = first.json.actions[0].data.policy.outputs.default.api_key as string;
    expect(outputKey).toMatch(/^[\w-]{20}:[\w-]{22}$/);
    // Let the check-in bookkeeping reach the database too.
    await sleep(500);

    const bytes = storeBytes(server.dataDir);
    const needles = {
      'enrollment token': token,
      'enrollment secret': secretOf(token),
      'access key secret': secretOf(enrolled.json.item.access_api_key),
      'output key': outputKey,
      'output key secret': outputKey.split(':')[1]!,
    };
    for (const [what, needle] of Object.entries(needles)) expect([what, bytes.includes(needle)]).toEqual([what, false]);

    // The server still authenticates: the token enrolls, the access key checks in.
    expect((await new SimAgent(server.url).enroll(token)).status).toBe(200);
    const second = await agent.checkin({}, { timeoutMs: 5000 });
    expect(second.status).toBe(200);
    expect(second.json.actions[0].data.policy.outputs.default.api_key).toBe(outputKey);
  });

  test('the output key is recovered after a restart (the key file opens what the database sealed)', async () => {
    await server.stop();
    server = await startFleetServer({ dataDir: server.dataDir, port: server.port });
    expect(server.createdDefaultPolicy).toBe(false);
    // The agent has not acknowledged the policy, so it gets it again, with the same key.
    const again = await agent.checkin({}, { timeoutMs: 5000 });
    expect(again.status).toBe(200);
    expect(again.json.actions[0].data.policy.outputs.default.api_key).toBe(outputKey);
    const doc = await cli(server.dataDir, ['agents', 'show', agent.id]);
    expect(doc.outputs.default.api_key).toMatch(/^\$co\.elastic\.secret\{.+\}$/);
  });

  test('enrollment-token list shows id, name, policy, active and a prefix — never the token (table and --json)', async () => {
    const created = await cli(server.dataDir, ['enrollment-token', 'create', '--policy', 'default-policy', '--name', 'listed']);
    const token = created.api_key as string;
    expect(token).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
    const listed = await cli(server.dataDir, ['enrollment-token', 'list']);
    const mine = listed.find((t: { id: string }) => t.id === created.id);
    expect(mine).toEqual({ id: created.id, name: 'listed', policy_id: 'default-policy', active: true, prefix: token.slice(0, 8), created_at: expect.any(String) });
    expect(JSON.stringify(listed)).not.toContain(secretOf(token));
    const { stdout } = await promisify(execFile)(process.execPath, [DIST, 'enrollment-token', 'list', '-E', `path.data=${server.dataDir}`], { cwd: server.dataDir });
    expect(stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+POLICY\s+ACTIVE\s+PREFIX$/);
    expect(stdout).toContain(`${token.slice(0, 8)}…`);
    expect(stdout).not.toContain(token);
    // Shown once, and it works.
    expect((await new SimAgent(server.url).enroll(token)).status).toBe(200);
  });
});

describe('a store written by the previous version (plaintext secrets)', () => {
  const dir = tempDir();
  afterAll(() => removeDir(dir));

  test('the migration seals secrets and drops enrollment tokens; nothing plaintext remains in the files', async () => {
    const path = join(dir, 'fleet-server.db');
    const token = Buffer.from('AAAAAAAAAAAAAAAAAAAA:plaintext-enroll-secret').toString('base64');
    const old = new DatabaseSync(path);
    old.exec('PRAGMA journal_mode = WAL');
    old.exec(MIGRATIONS[0] as string);
    old.exec('PRAGMA user_version = 1');
    old.prepare('INSERT INTO secrets (id, value) VALUES (?, ?)').run('s1', 'BBBBBBBBBBBBBBBBBBBB:plaintext-output-secret');
    old.prepare('INSERT INTO policies (id, policy_id, revision_idx, doc) VALUES (?, ?, ?, ?)').run('r1', 'p1', 1, JSON.stringify({
      policy_id: 'p1', revision_idx: 1, data: { id: 'p1', revision: 1, outputs: { default: { type: 'elasticsearch', api_key: 'plaintext-policy-api-key' } } },
    }));
    old.prepare('INSERT INTO enrollment_keys (id, api_key_id, policy_id, active, doc) VALUES (?, ?, ?, ?, ?)')
      .run('e1', 'AAAAAAAAAAAAAAAAAAAA', 'p1', 1, JSON.stringify({ api_key_id: 'AAAAAAAAAAAAAAAAAAAA', api_key: token, active: true, policy_id: 'p1', name: 'old' }));
    old.close();
    expect(storeBytes(dir).includes('plaintext-output-secret')).toBe(true);

    const store = new SqliteStore(path);
    expect(await store.getSecret('s1')).toBe('BBBBBBBBBBBBBBBBBBBB:plaintext-output-secret');
    expect((await store.latestPolicy('p1'))!._source.data.outputs['default']!['api_key']).toBe('plaintext-policy-api-key');
    const [key] = await store.listEnrollmentKeys('p1');
    expect(key!._source).toMatchObject({ api_key: '', api_key_prefix: token.slice(0, 8), name: 'old', active: true });
    await store.close();
    const bytes = storeBytes(dir);
    expect(bytes.includes('plaintext-output-secret')).toBe(false);
    expect(bytes.includes('plaintext-enroll-secret')).toBe(false);
    expect(bytes.includes('plaintext-policy-api-key')).toBe(false);
    expect(bytes.includes(token)).toBe(false);
  });

  test('a different key is refused at open; a missing key file with sealed secrets is refused too', () => {
    const path = join(dir, 'fleet-server.db');
    expect(() => new SqliteStore(path, { secretsKey: 'x'.repeat(40) })).toThrow(/does not open the secrets in .*fleet-server\.db/);
    execFileSync('mv', [join(dir, 'fleet-server.key'), join(dir, 'moved.key')]);
    expect(() => new SqliteStore(path)).toThrow(/fleet-server\.key is missing but the database holds encrypted secrets/);
    expect(existsSync(join(dir, 'fleet-server.key'))).toBe(false);
  });

  test('a key given in configuration seals and opens secrets without a key file', async () => {
    const d = tempDir();
    try {
      const key = 'k'.repeat(44);
      let store = new SqliteStore(join(d, 'fleet-server.db'), { secretsKey: key });
      const id = await store.createSecret('CCCCCCCCCCCCCCCCCCCC:configured-key-secret');
      await store.close();
      expect(existsSync(join(d, 'fleet-server.key'))).toBe(false);
      expect(storeBytes(d).includes('configured-key-secret')).toBe(false);
      store = new SqliteStore(join(d, 'fleet-server.db'), { secretsKey: key });
      expect(await store.getSecret(id)).toBe('CCCCCCCCCCCCCCCCCCCC:configured-key-secret');
      await store.close();
    } finally {
      removeDir(d);
    }
  });
});

describe('credentials inside documents', () => {
  test('policy output keys and tokens, and an action\'s enrollment token, are sealed at rest and read back as given', async () => {
    const dir = tempDir();
    const store = new SqliteStore(join(dir, 'fleet-server.db'));
    try {
      const admin = new Admin(store);
      const outputs = {
        default: { type: 'elasticsearch', hosts: ['https://es:9200'], api_key: 'policy-output-id:policy-output-secret', ssl: { key: 'policy-ssl-private-key' } },
        remote: { type: 'remote_elasticsearch', hosts: ['https://r:9200'], service_token: 'policy-remote-service-token' },
      };
      await admin.putPolicy({ id: 'p', outputs, inputs: [{ type: 'logfile', streams: [{ password: 'policy-input-password', paths: ['/x'] }] }] });
      const action = await admin.createAction({ type: 'MIGRATE', agents: ['a1'], data: { target_uri: 'https://other', enrollment_token: 'action-enrollment-token' } });
      const policy = (await store.latestPolicy('p'))!._source.data;
      expect(policy.outputs).toEqual(outputs);
      expect(policy.inputs).toEqual([{ type: 'logfile', streams: [{ password: 'policy-input-password', paths: ['/x'] }] }]);
      expect((await store.findAction(action._source.action_id))!._source.data).toEqual({ target_uri: 'https://other', enrollment_token: 'action-enrollment-token' });
      const pending = await store.pendingActions({ agentId: 'a1', afterSeqNo: -1, checkpoint: 1e9, nowIso: new Date().toISOString(), limit: 10 });
      expect(pending[0]!._source.data).toEqual({ target_uri: 'https://other', enrollment_token: 'action-enrollment-token' });
      const bytes = storeBytes(dir);
      for (const needle of ['policy-output-secret', 'policy-ssl-private-key', 'policy-remote-service-token', 'policy-input-password', 'action-enrollment-token']) {
        expect([needle, bytes.includes(needle)]).toEqual([needle, false]);
      }
      // What is not a credential stays readable in the file (the documents keep their .fleet-* shape).
      expect(bytes.includes('https://other')).toBe(true);
    } finally {
      await store.close();
      removeDir(dir);
    }
  });
});

describe('agent-mode bootstrap on the embedded store', () => {
  test('the DEGRADED payload carries a freshly minted token that enrolls into the Fleet Server policy, minted once', async () => {
    const dir = tempDir();
    const store = new SqliteStore(join(dir, 'fleet-server.db'));
    try {
      const admin = new Admin(store);
      await admin.putPolicy({ id: 'fs', default_fleet_server: true, outputs: { default: { type: 'elasticsearch' } }, inputs: [{ type: 'fleet-server' }] });
      await admin.createEnrollmentToken('fs');
      const input = { policyId: '', agentId: '' };
      const s = await agentHealth(store, input);
      expect(s.state).toBe('DEGRADED');
      const token = s.payload?.['enrollment_token'] as string;
      expect(token).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
      const [id, secret] = Buffer.from(token, 'base64').toString().split(':') as [string, string];
      expect(await store.checkApiKey(id, secret)).toBe('valid');
      expect((await store.findEnrollmentKey(id))?._source.policy_id).toBe('fs');
      expect((await agentHealth(store, input)).payload?.['enrollment_token']).toBe(token);

      // A restart (another store on the same database) mints a new one and revokes the earlier one.
      const again = new SqliteStore(join(dir, 'fleet-server.db'));
      try {
        const next = (await agentHealth(again, input)).payload?.['enrollment_token'] as string;
        expect(next).not.toBe(token);
        const bootstrap = (await new Admin(again).listEnrollmentTokens('fs')).filter((t) => t.name === 'Fleet Server bootstrap');
        expect(bootstrap.map((t) => t.active).sort()).toEqual([false, true]);
      } finally {
        await again.close();
      }
    } finally {
      await store.close();
      removeDir(dir);
    }
  });
});

describe('one server per data directory', () => {
  let first: FleetServerProcess;
  afterAll(async () => {
    await first?.stop();
    removeDir(first.dataDir);
  });

  test('a second server is refused with one clear line; the admin CLI still works beside the first; after it stops a new one starts', async () => {
    first = await startFleetServer();
    const second = await startRefused(first.dataDir);
    expect(second.code).not.toBe(0);
    expect(plainLines(second.stderr)).toEqual([
      `fleet-server: another fleet-server is already running on path.data ${first.dataDir} (it holds ${join(first.dataDir, 'fleet-server.lock')}); stop it first, or give this one another path.data`,
    ]);
    expect((await status(first)).state).toBe('HEALTHY');
    expect((await cli(first.dataDir, ['policy', 'list'])).map((p: { id: string }) => p.id)).toEqual(['default-policy']);
    await first.stop();
    first = await startFleetServer({ dataDir: first.dataDir });
    await until('HEALTHY', async () => (await status(first)).code === 200);
  });
});

describe('a damaged database', () => {
  test('is refused at start with one line naming the file and what to do', async () => {
    const s = await startFleetServer();
    await s.stop();
    const db = join(s.dataDir, 'fleet-server.db');
    expect(existsSync(`${db}-wal`)).toBe(false);
    const size = statSync(db).size;
    expect(size).toBeGreaterThanOrEqual(8 * 4096);
    // Garbage over whole pages in the middle of the file (the header, page 1, stays intact).
    const fd = openSync(db, 'r+');
    const garbage = Buffer.alloc(3 * 4096, 0x5a);
    writeSync(fd, garbage, 0, garbage.length, Math.floor(size / 4096 / 2) * 4096);
    closeSync(fd);
    try {
      const r = await startRefused(s.dataDir);
      expect(r.code).not.toBe(0);
      const lines = plainLines(r.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^fleet-server: the database ${db.replace(/[/.]/g, '\\$&')} is damaged \\(.+\\): restore it from a backup, or move it aside together with its -wal and -shm files to start with an empty one$`));
      expect(r.stderr).not.toContain('fleet-server listening');
    } finally {
      removeDir(s.dataDir);
    }
  });
});

describe('store write errors', () => {
  test('SQLite errors that mean the store cannot write are StoreUnavailableError naming cause and file', () => {
    const dir = tempDir();
    try {
      const db = new DatabaseSync(join(dir, 'x.db'));
      db.exec('CREATE TABLE t (v TEXT)');
      db.exec('PRAGMA max_page_count = 3');
      let caught: unknown;
      try {
        db.prepare('INSERT INTO t VALUES (?)').run('x'.repeat(20_000));
      } catch (err) {
        caught = err;
      }
      db.close();
      const e = storeError(caught, '/data/fleet-server.db');
      expect(e).toBeInstanceOf(StoreUnavailableError);
      expect((e as Error).message).toBe('database or disk is full: /data/fleet-server.db');
      const other = new Error('no such table: x');
      expect(storeError(other, '/data/fleet-server.db')).toBe(other);
    } finally {
      removeDir(dir);
    }
  });

  test('a read of a damaged page is a StoreUnavailableError too (503), not an internal error', () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'x.db');
      const db = new DatabaseSync(file);
      db.exec('CREATE TABLE t (v TEXT)');
      const insert = db.prepare('INSERT INTO t VALUES (?)');
      for (let i = 0; i < 200; i++) insert.run('y'.repeat(500));
      db.close();
      // Garbage over the table's pages (the first page, the schema, stays intact).
      const bytes = readFileSync(file);
      bytes.fill(0xa5, 4096 * 2, 4096 * 6);
      writeFileSync(file, bytes);
      const damaged = new DatabaseSync(file);
      try {
        const read = guarded(damaged.prepare('SELECT v FROM t'), '/data/fleet-server.db');
        expect(() => read.all()).toThrow(StoreUnavailableError);
      } finally {
        damaged.close();
      }
    } finally {
      removeDir(dir);
    }
  });

  test('health: a write fault makes a running server DEGRADED (payload kept) until cleared', () => {
    const m = new SelfMonitor();
    const heard: string[] = [];
    m.onChange((s) => heard.push(`${s.state}: ${s.message}`));
    m.set('DEGRADED', 'bootstrap', { enrollment_token: 't' });
    m.set('HEALTHY', 'Running');
    m.setWriteFault('database or disk is full: /d/fleet-server.db');
    expect(m.current).toEqual({ state: 'DEGRADED', message: 'Store write failed: database or disk is full: /d/fleet-server.db' });
    m.set('HEALTHY', 'Running');
    m.set('DEGRADED', 'bootstrap', { enrollment_token: 't' });
    expect(m.current.payload).toEqual({ enrollment_token: 't' });
    m.set('HEALTHY', 'Running');
    m.setWriteFault(undefined);
    const fault = 'DEGRADED: Store write failed: database or disk is full: /d/fleet-server.db';
    // Under the fault: the same HEALTHY is not news; the payload coming and going is.
    expect(heard).toEqual(['DEGRADED: bootstrap', 'HEALTHY: Running', fault, fault, fault, 'HEALTHY: Running']);
  });

  test('check-in bookkeeping keeps a failed batch, merged under newer check-ins, for the next flush', async () => {
    const writes: DocUpdate<AgentDoc>[][] = [];
    let fail = true;
    const store = {
      bulkUpdateAgents: async (u: DocUpdate<AgentDoc>[]) => {
        if (fail) throw new StoreUnavailableError('database or disk is full: x');
        writes.push(u);
      },
    } as unknown as Store;
    const b = new Bookkeeper(store, 60_000, pino({ level: 'silent' }));
    b.enqueue('a1', { status: 'online', message: 'first', localMetadata: { host: 'h1' }, seqNo: 4, clearAudit: true });
    await b.flush();
    expect(b.size).toBe(1);
    b.enqueue('a1', { status: 'degraded', message: 'second' });
    fail = false;
    await b.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]).toEqual([{
      id: 'a1',
      unset: ['audit_unenrolled_reason', 'audit_unenrolled_time', 'unenrolled_at'],
      doc: expect.objectContaining({ last_checkin_status: 'degraded', last_checkin_message: 'second', local_metadata: { host: 'h1' }, action_seq_no: [4] }),
    }]);
    expect(b.size).toBe(0);
  });

  test('a held poll\'s check-in refresh leaves the agent\'s document as it was: one small row beside it instead', async () => {
    const dir = tempDir('fleet-refresh-');
    const path = join(dir, 'fleet-server.db');
    const store = new SqliteStore(path);
    const raw = new DatabaseSync(path, { readOnly: true });
    try {
      await store.createAgent('a1', { active: true, type: 'PERMANENT', local_metadata: { host: { name: 'h' } }, agent: { id: 'a1', version: '9.6.0' } } as unknown as AgentDoc);
      const stored = (): unknown => raw.prepare('SELECT doc FROM agents WHERE id = ?').get('a1');
      const before = stored();
      const at = '2026-12-03T12:00:00.000Z';
      await store.bulkUpdateAgents([{ id: 'a1', doc: { updated_at: at, last_checkin: at, last_checkin_status: 'online', last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0 } }]);
      expect(stored()).toEqual(before);
      expect((await store.getAgent('a1'))!._source).toMatchObject({ last_checkin: at, local_metadata: { host: { name: 'h' } } });
      // A check-in with news goes to the document, and the row it supersedes goes.
      const later = '2026-12-03T12:00:30.000Z';
      await store.bulkUpdateAgents([{ id: 'a1', doc: { updated_at: later, last_checkin: later, last_checkin_status: 'online', last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0, local_metadata: { host: { name: 'h2' } } } }]);
      expect(JSON.parse((stored() as { doc: string }).doc)).toMatchObject({ last_checkin: later, local_metadata: { host: { name: 'h2' } } });
      expect(raw.prepare('SELECT COUNT(*) AS n FROM agent_checkins').get()).toEqual({ n: 0 });
    } finally {
      raw.close();
      await store.close();
      removeDir(dir);
    }
  });

  test('a check-in reporting a new policy revision is kept beside the document too, and reaches it with the next write there', async () => {
    const dir = tempDir('fleet-reported-');
    const path = join(dir, 'fleet-server.db');
    const store = new SqliteStore(path);
    const raw = new DatabaseSync(path, { readOnly: true });
    const refresh = (at: string) => ({ updated_at: at, last_checkin: at, last_checkin_status: 'online', last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0 });
    const reported = { agent_policy_id: 'p9', policy_revision_idx: 3 };
    const stored = (id: string): Record<string, unknown> => JSON.parse((raw.prepare('SELECT doc FROM agents WHERE id = ?').get(id) as { doc: string }).doc) as Record<string, unknown>;
    const rows = (): number => (raw.prepare('SELECT COUNT(*) AS n FROM agent_checkins').get() as { n: number }).n;
    try {
      for (const id of ['a1', 'a2', 'a3', 'a4']) {
        await store.createAgent(id, { active: true, type: 'PERMANENT', policy_id: 'p1', agent_policy_id: 'p1', policy_revision_idx: 2, default_api_key_history: [{ id: 'old' }], agent: { id, version: '9.6.0' } } as unknown as AgentDoc);
      }
      const before = stored('a1');
      const t1 = '2026-12-03T12:00:00.000Z';
      await store.bulkUpdateAgents(['a1', 'a2', 'a3', 'a4'].map((id) => ({ id, doc: { ...refresh(t1), ...reported } })));
      expect(stored('a1')).toEqual(before);
      expect(rows()).toBe(4);
      expect((await store.getAgent('a1'))!._source).toMatchObject({ last_checkin: t1, agent_policy_id: 'p9', policy_revision_idx: 3 });
      // A later refresh without the policy keeps the one reported.
      const t2 = '2026-12-03T12:00:30.000Z';
      await store.bulkUpdateAgents(['a1', 'a2', 'a3', 'a4'].map((id) => ({ id, doc: refresh(t2) })));
      expect((await store.getAgent('a1'))!._source).toMatchObject({ last_checkin: t2, policy_revision_idx: 3 });
      expect(stored('a1')).toEqual(before);

      // a1: a check-in with news supersedes the row; the reported policy goes to the document with it.
      const t3 = '2026-12-03T12:01:00.000Z';
      await store.bulkUpdateAgents([{ id: 'a1', doc: { ...refresh(t3), local_metadata: { host: { name: 'h2' } } } }]);
      expect(stored('a1')).toMatchObject({ last_checkin: t3, agent_policy_id: 'p9', policy_revision_idx: 3, local_metadata: { host: { name: 'h2' } } });
      expect(raw.prepare('SELECT 1 AS n FROM agent_checkins WHERE id = ?').get('a1')).toBeUndefined();

      // a2: a policy ack writes its revision over the reported one; the row keeps the check-in, not the policy.
      await store.updateAgent({ id: 'a2', doc: { policy_revision_idx: 4, updated_at: t3 }, unset: ['default_api_key_history'] });
      expect(stored('a2')).toMatchObject({ agent_policy_id: 'p9', policy_revision_idx: 4 });
      expect([stored('a2')['last_checkin'], stored('a2')['default_api_key_history']]).toEqual([undefined, undefined]);
      expect(raw.prepare('SELECT agent_policy_id, policy_revision_idx FROM agent_checkins WHERE id = ?').get('a2')).toEqual({ agent_policy_id: null, policy_revision_idx: null });
      expect((await store.getAgent('a2'))!._source).toMatchObject({ last_checkin: t2, policy_revision_idx: 4 });

      // a3: an update SQL cannot make (a column field) folds the row into the document.
      await store.updateAgent({ id: 'a3', doc: { policy_id: 'p2' } });
      expect(stored('a3')).toMatchObject({ policy_id: 'p2', agent_policy_id: 'p9', policy_revision_idx: 3, last_checkin: t2 });
      expect(raw.prepare('SELECT 1 AS n FROM agent_checkins WHERE id = ?').get('a3')).toBeUndefined();

      // a4: an update that has nothing to do with check-ins leaves the row and what it reports.
      await store.updateAgent({ id: 'a4', doc: { tags: ['x'] } });
      expect(stored('a4')).toMatchObject({ tags: ['x'], policy_revision_idx: 2 });
      expect((await store.getAgent('a4'))!._source).toMatchObject({ tags: ['x'], policy_revision_idx: 3, last_checkin: t2 });
      expect((await store.listAgents({ policyId: 'p1' })).map((h) => [h._id, h._source.policy_revision_idx])).toEqual([['a1', 3], ['a2', 4], ['a4', 3]]);

      // A policy ack with nothing to remove is kept beside the document too: a4 has a row, a5 gets one.
      await store.createAgent('a5', { active: true, type: 'PERMANENT', policy_id: 'p1', policy_revision_idx: 2, updated_at: t1, last_checkin: t1, agent: { id: 'a5', version: '9.6.0' } } as unknown as AgentDoc);
      const a4 = stored('a4');
      const t4 = '2026-12-03T12:02:00Z';
      for (const id of ['a4', 'a5']) await store.updateAgent({ id, doc: { policy_revision_idx: 5, updated_at: t4 } });
      expect(stored('a4')).toEqual(a4);
      expect(stored('a5')).toMatchObject({ policy_revision_idx: 2, updated_at: t1 });
      expect((await store.getAgent('a4'))!._source).toMatchObject({ agent_policy_id: 'p9', policy_revision_idx: 5, updated_at: t4, last_checkin: t2 });
      expect((await store.getAgent('a5'))!._source).toMatchObject({ policy_revision_idx: 5, updated_at: t4, last_checkin: t1 });
      // An earlier updated_at does not move the kept one back; then a refresh keeps the acked revision.
      await store.updateAgent({ id: 'a5', doc: { policy_revision_idx: 6, updated_at: '2026-12-03T12:01:00Z' } });
      expect((await store.getAgent('a5'))!._source).toMatchObject({ policy_revision_idx: 6, updated_at: t4 });
      // A refresh taken before the ack but written after it keeps the ack's updated_at; a later one moves it on.
      await store.bulkUpdateAgents([{ id: 'a5', doc: refresh('2026-12-03T12:01:30Z') }]);
      expect((await store.getAgent('a5'))!._source).toMatchObject({ policy_revision_idx: 6, updated_at: t4, last_checkin: '2026-12-03T12:01:30Z' });
      const t5 = '2026-12-03T12:03:00Z';
      await store.bulkUpdateAgents([{ id: 'a5', doc: refresh(t5) }]);
      expect((await store.getAgent('a5'))!._source).toMatchObject({ policy_revision_idx: 6, updated_at: t5, last_checkin: t5 });
      await expect(store.updateAgent({ id: 'nobody', doc: { policy_revision_idx: 1, updated_at: t5 } })).rejects.toThrow(/not found/);
    } finally {
      raw.close();
      await store.close();
      removeDir(dir);
    }
  });

  describe('a large check-in batch', () => {
    const refresh = (at: string) => ({ updated_at: at, last_checkin: at, last_checkin_status: 'online', last_checkin_message: 'Running', unhealthy_reason: null, sequence_num: 0 });
    let dir: string;
    let store: SqliteStore;
    const ids = Array.from({ length: 3_000 }, (_, i) => `agent-${i}`);
    const lastCheckins = async (): Promise<(string | undefined)[]> => (await Promise.all(ids.map((id) => store.getAgent(id)))).map((h) => h?._source.last_checkin);
    beforeEach(async () => {
      dir = tempDir('fleet-bulk-');
      store = new SqliteStore(join(dir, 'fleet-server.db'));
      for (const id of ids) await store.createAgent(id, { active: true, type: 'PERMANENT', policy_id: 'p', agent: { id, version: '9.6.0' } } as unknown as AgentDoc);
    });
    afterEach(async () => {
      await store.close();
      removeDir(dir);
    });

    test('is applied in parts, the event loop turning between them, and is all written when it resolves', async () => {
      const at = '2026-12-03T12:00:00.000Z';
      const batch = store.bulkUpdateAgents(ids.map((id) => ({ id, doc: refresh(at) })));
      // One turn later (what an IPC message or a /stats scrape waits for): part of the batch, not all of it.
      await new Promise((r) => setImmediate(r));
      const early = (await lastCheckins()).filter((t) => t === at).length;
      expect(early).toBeGreaterThan(0);
      expect(early).toBeLessThan(ids.length);
      await batch;
      expect((await lastCheckins()).every((t) => t === at)).toBe(true);
    });

    test('a later batch waits for an earlier one\'s parts: an older check-in never lands over a newer one', async () => {
      const [t1, t2] = ['2026-12-03T12:00:00.000Z', '2026-12-03T12:00:05.000Z'];
      const last = ids.at(-1)!;
      // The agent's refresh is in the first batch's last part; its check-in with news, through another worker, comes next.
      const first = store.bulkUpdateAgents(ids.map((id) => ({ id, doc: refresh(t1) })));
      const second = store.bulkUpdateAgents([{ id: last, doc: { ...refresh(t2), last_checkin_status: 'degraded', local_metadata: { host: { name: 'moved' } } } as never }]);
      await Promise.all([first, second]);
      expect((await store.getAgent(last))!._source).toMatchObject({ last_checkin: t2, last_checkin_status: 'degraded', local_metadata: { host: { name: 'moved' } } });
    });

    test('a part that fails ends the batch, rejected once, with nothing left unhandled', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (err: unknown): void => void unhandled.push(err);
      process.on('unhandledRejection', onUnhandled);
      try {
        const at = '2026-12-03T12:00:00.000Z';
        const updates = ids.map((id) => ({ id, doc: refresh(at) }));
        // An update that cannot be applied, in the second part.
        updates[1_500] = { id: ids[1_500]!, doc: { get last_checkin(): string { throw new Error('unusable update'); } } as never };
        await expect(store.bulkUpdateAgents(updates)).rejects.toThrow('unusable update');
        await new Promise((r) => setTimeout(r, 50));
        expect(unhandled).toEqual([]);
        const written = await lastCheckins();
        expect(written.slice(0, 1_000).every((t) => t === at)).toBe(true);
        expect(written.slice(2_000).some((t) => t === at)).toBe(false);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  });

  test('disk full (the server may not grow its files): 503, DEGRADED until a write succeeds, and nothing answered 200 lost', async () => {
    // The failed bookkeeping flush is retried every 2 s, not 10: the wait for HEALTHY again below is then
    // not mostly the flush interval (CI once passed its 15 s with two runs sharing the machine).
    const server = await startFleetServer({ overrides: ['inputs.0.server.bulk.checkin_flush_interval=2s'] });
    const pid = server.child.pid!;
    const limitFileSize = (bytes: string): void => {
      try {
        execFileSync('prlimit', ['--pid', String(pid), `--fsize=${bytes}:unlimited`]);
      } catch (err) {
        throw new Error(`this test limits the server's file size with prlimit (util-linux): ${(err as Error).message}`);
      }
    };
    try {
      const token = (await server.enrollmentToken());
      const agent = new SimAgent(server.url);
      expect((await agent.enroll(token)).status).toBe(200);
      expect((await agent.checkin()).json.actions[0].type).toBe('POLICY_CHANGE');
      await until('HEALTHY', async () => (await status(server)).code === 200);

      // RLIMIT_FSIZE: the kernel refuses the server's writes past 4 KiB of any file (EFBIG), as a full
      // disk refuses them; SQLite reports an I/O error. Only this process is limited: the CLI is not.
      limitFileSize('4096');
      const refused = await new SimAgent(server.url).enroll(token);
      expect(refused.status).toBe(503);
      // The cause, in the error shape, with when to retry; the file's path stays in the server's log.
      expect(refused.json).toEqual({ statusCode: 503, error: 'ServiceUnavailable', message: 'the embedded store cannot be used: disk I/O error' });
      expect(refused.headers['retry-after']).toBe('5');
      expect(await status(server)).toEqual({ code: 503, state: 'DEGRADED' });
      await server.waitFor(`disk I/O error: ${join(server.dataDir, 'fleet-server.db')}`);

      // A check-in answered 200 while writes fail: its bookkeeping waits for the disk.
      const during = await agent.checkin({ status: 'online', message: 'checked in while the disk was full' }, { timeoutMs: 5000 });
      expect(during.status).toBe(200);
      await server.waitFor('check-in bookkeeping flush failed; will retry');
      expect(await status(server)).toEqual({ code: 503, state: 'DEGRADED' });

      limitFileSize('unlimited');
      await until('HEALTHY again', async () => (await status(server)).code === 200);
      await server.waitFor('store writes succeed again');
      const doc = await cli(server.dataDir, ['agents', 'show', agent.id]);
      expect(doc.last_checkin_message).toBe('checked in while the disk was full');
      expect((await new SimAgent(server.url).enroll(token)).status).toBe(200);
    } finally {
      await server.stop();
      removeDir(server.dataDir);
    }
  });
});
