// The admin command line in-process (src/cli through yargs, no bundle): what an operator's mistake
// gets — a usage error (exit 2) for an option value that is none, one line naming the file, the agent or
// the data directory (exit 1) — and that a store is made only by a command that may start one.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errors } from '@elastic/elasticsearch';
import { UsageError } from '../../src/cli/usage-error';
import { buildConfig } from '../../src/config/config';
import { publishFile } from '../../src/fleet/files-admin';
import { StoreUnavailableError } from '../../src/store/port';
import { SqliteStore } from '../../src/store/sqlite/store';
import { describeError } from '../../src/util/error-text';
import { removeDir, tempDir } from '../support/fleet-server';
import { yargsForTests } from '../support/yargs-cjs';

// What `policy put -` reads from standard input (fd 0 of a jest worker cannot be given).
let stdin = '';
jest.mock('node:fs', () => {
  const fs = jest.requireActual<typeof import('node:fs')>('node:fs');
  return { ...fs, readFileSync: (path: unknown, ...rest: unknown[]) => (path === 0 ? stdin : (fs.readFileSync as (...a: unknown[]) => unknown)(path, ...rest)) };
});
// Required after the mock (imports would be read before it).
const { noServiceToken } = require('../../src/cli/admin-common') as typeof import('../../src/cli/admin-common');
const { commandLine, stdoutFailed } = require('../../src/cli/command-line') as typeof import('../../src/cli/command-line');

const yargs = yargsForTests();

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the command line as main.ts does, capturing what it writes; exit codes as main.ts gives them. */
async function run(args: string[]): Promise<Ran> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  let code = 0;
  try {
    await commandLine(yargs(), args, () => Promise.reject(new Error('no server here'))).parseAsync();
  } catch (e) {
    code = e instanceof UsageError ? 2 : 1;
    stderr += e instanceof UsageError ? `${e.message}\n` : `fleet-server: ${describeError(e)}\n`;
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return { code, stdout, stderr };
}

const POLICY = 'id: p1\noutputs: {default: {type: elasticsearch, hosts: ["http://localhost:9200"]}}\n';

let dir: string;
let data: string;
let E: string[];
beforeEach(() => {
  dir = tempDir();
  data = join(dir, 'data');
  E = ['-E', `path.data=${data}`];
  writeFileSync(join(dir, 'p.yml'), POLICY);
});
afterEach(() => {
  jest.restoreAllMocks();
  removeDir(dir);
});

/** A store at `data` with policy p1 and an agent `a1` on it. */
async function withAgent(): Promise<void> {
  expect((await run(['policy', 'put', join(dir, 'p.yml'), ...E])).code).toBe(0);
  const store = new SqliteStore(join(data, 'fleet-server.db'));
  await store.createAgent('a1', { active: true, type: 'PERMANENT', enrolled_at: new Date().toISOString(), policy_id: 'p1', agent: { id: 'a1', version: '9.6.0' } });
  await store.close();
}

describe('policy put', () => {
  test('`-` reads the policy from standard input (yargs hands a lone - on as "")', async () => {
    stdin = POLICY;
    const r = await run(['policy', 'put', '-', '--json', ...E]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual({ id: 'p1', revision: 1 });
  });

  test('a missing file, a directory and bad YAML are one line naming the file; a numeric id must be a string', async () => {
    const missing = join(dir, 'missing.yml');
    // (Under jest Node's errors are of another realm's Error, so describeError cannot tell them as such.)
    const gone = await run(['policy', 'put', missing, ...E]);
    expect([gone.code, gone.stderr]).toEqual([1, expect.stringMatching(new RegExp(`^fleet-server: cannot read ${missing}: .*no such file or directory.*\n$`))]);
    const isDir = await run(['policy', 'put', dir, ...E]);
    expect([isDir.code, isDir.stderr]).toEqual([1, expect.stringMatching(new RegExp(`^fleet-server: cannot read ${dir}: .*illegal operation on a directory.*\n$`))]);
    writeFileSync(join(dir, 'bad.yml'), 'id: p1\noutputs: {default: [\n');
    const bad = await run(['policy', 'put', join(dir, 'bad.yml'), ...E]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`^fleet-server: ${join(dir, 'bad.yml')}: not valid YAML or JSON: .+\\n$`));
    writeFileSync(join(dir, 'n.yml'), 'id: 5\noutputs: {default: {type: elasticsearch}}\n');
    expect(await run(['policy', 'put', join(dir, 'n.yml'), ...E])).toMatchObject({ code: 1, stderr: 'fleet-server: policy.id must be a string (write it in quotes: id: "5")\n' });
  });

  test('an empty file name (`policy put "$UNSET"`) is refused, not taken for standard input', async () => {
    // Standard input holds a policy: read, it would be written.
    stdin = POLICY;
    expect(await run(['policy', 'put', '', '--json', ...E])).toEqual({ code: 1, stdout: '', stderr: "fleet-server: cannot read '': give a file name (or - for standard input)\n" });
    expect(existsSync(data)).toBe(false);
    // Commands that read no standard input say only that.
    expect(await run(['files', 'put', '', '--agents', 'a1', ...E])).toEqual({ code: 1, stdout: '', stderr: "fleet-server: cannot read '': give a file name\n" });
    expect(await run(['artifacts', 'put', '', '--identifier', 'x-v1', ...E])).toEqual({ code: 1, stdout: '', stderr: "fleet-server: cannot read '': give a file name\n" });
    expect(existsSync(data)).toBe(false);
  });
});

describe('the embedded store is made only by a command that may start one', () => {
  test('commands that read or change what a store holds refuse a path.data with no store, and create nothing', async () => {
    for (const args of [['policy', 'list'], ['policy', 'show', 'p1'], ['agents', 'list'], ['enrollment-token', 'list'],
      ['enrollment-token', 'create', '--policy', 'p1'], ['actions', 'list'], ['uploads', 'list']]) {
      const r = await run([...args, ...E]);
      expect({ args, r }).toEqual({ args, r: { code: 1, stdout: '', stderr: `fleet-server: no embedded store at ${data} (no fleet-server.db there): give the server's -c/-E path.data, or its Elasticsearch output\n` } });
    }
    expect(existsSync(data)).toBe(false);
    // An empty directory stays empty (no database, no key file).
    mkdirSync(data);
    expect((await run(['policy', 'list', ...E])).code).toBe(1);
    expect(readdirSync(data)).toEqual([]);
  });

  test('policy put and artifacts put make one, to prepare a first start', async () => {
    expect((await run(['policy', 'put', join(dir, 'p.yml'), ...E])).code).toBe(0);
    expect(existsSync(join(data, 'fleet-server.db'))).toBe(true);
    expect(JSON.parse((await run(['policy', 'list', '--json', ...E])).stdout).map((p: { id: string }) => p.id)).toEqual(['p1']);
    const other = join(dir, 'other');
    writeFileSync(join(dir, 'a.json'), '{}');
    expect((await run(['artifacts', 'put', join(dir, 'a.json'), '--identifier', 'x-v1', '-E', `path.data=${other}`])).code).toBe(0);
    expect(existsSync(join(other, 'fleet-server.db'))).toBe(true);
  });
});

describe('numbers', () => {
  const MAX_CHUNK = 64 * 1024 * 1024;

  test('a count, size or timeout that is not a whole number in its range is a usage error, before any store is opened', async () => {
    for (const [args, line] of [
      [['actions', 'list', '--limit', 'abc'], '--limit abc: give a whole number, 1 or more'],
      [['actions', 'list', '--limit=-1'], '--limit -1: give a whole number, 1 or more'],
      // 0 listed nothing.
      [['actions', 'list', '--limit', '0'], '--limit 0: give a whole number, 1 or more'],
      [['uploads', 'list', '--limit', '1.5'], '--limit 1.5: give a whole number, 1 or more'],
      [['uploads', 'list', '--limit', '0'], '--limit 0: give a whole number, 1 or more'],
      [['actions', 'create', '--type', 'SETTINGS', '--agents', 'a1', '--timeout', 'abc'], '--timeout abc: give a whole number, 0 or more'],
      [['files', 'put', join(dir, 'p.yml'), '--agents', 'a1', '--chunk-size', 'abc'], `--chunk-size abc: give a whole number, from 1 to ${MAX_CHUNK}`],
      // 0 failed in publishFile (exit 1), once the store was open.
      [['files', 'put', join(dir, 'p.yml'), '--agents', 'a1', '--chunk-size', '0'], `--chunk-size 0: give a whole number, from 1 to ${MAX_CHUNK}`],
      [['files', 'put', join(dir, 'p.yml'), '--agents', 'a1', '--chunk-size', String(MAX_CHUNK + 1)], `--chunk-size ${MAX_CHUNK + 1}: give a whole number, from 1 to ${MAX_CHUNK}`],
    ] as [string[], string][]) {
      const r = await run([...args, ...E]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trimEnd().split('\n').pop()).toBe(line);
      // The command's usage goes with it.
      expect(r.stderr).toContain(`fleet-server ${args[0]} ${args[1]}`);
    }
    expect(existsSync(data)).toBe(false);
  });

  test('whole numbers are taken; the chunk sizes taken are those publishFile takes', async () => {
    await withAgent();
    const r = await run(['actions', 'create', '--type', 'SETTINGS', '--agents', 'a1', '--timeout', '30', '--json', ...E]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).timeout).toBe(30);
    expect(JSON.parse((await run(['actions', 'list', '--limit', '1', '--json', ...E])).stdout)).toHaveLength(1);
    writeFileSync(join(dir, 'tool.bin'), 'x');
    for (const size of [1, MAX_CHUNK]) {
      const put = await run(['files', 'put', join(dir, 'tool.bin'), '--agents', 'a1', '--chunk-size', String(size), '--json', ...E]);
      expect({ size, code: put.code, stderr: put.stderr }).toEqual({ size, code: 0, stderr: '' });
      expect(JSON.parse(put.stdout).chunk_size).toBe(size);
    }
    const deliveries = { publishDeliveryFile: async () => undefined } as never;
    const once = async function* (): AsyncIterable<Uint8Array> { yield Buffer.from('x'); };
    await expect(publishFile(deliveries, { name: 'x', chunkSize: MAX_CHUNK + 1, agentIds: ['a1'] }, once)).rejects.toThrow(`from 1 to ${MAX_CHUNK}`);
    await expect(publishFile(deliveries, { name: 'x', chunkSize: 0, agentIds: ['a1'] }, once)).rejects.toThrow(`from 1 to ${MAX_CHUNK}`);
  });
});

describe('actions and files for agents', () => {
  test('an unknown agent is refused unless --force; a past expiration, a start after it and an UPGRADE without a version are refused', async () => {
    await withAgent();
    const refused = async (args: string[], line: string): Promise<void> => {
      expect({ args, r: await run([...args, ...E]) }).toEqual({ args, r: { code: 1, stdout: '', stderr: `fleet-server: ${line}\n` } });
    };
    const create = ['actions', 'create', '--type', 'SETTINGS', '--agents'];
    await refused([...create, 'a1,nosuchagent'], 'no agent nosuchagent (see agents list --all); give --force for agents yet to enroll');
    await refused([...create, 'a1', '--expiration', '2020-01-01T00:00:00Z'], '--expiration 2020-01-01T00:00:00Z is in the past (2020-01-01T00:00:00.000Z)');
    const late = await run([...create, 'a1', '--expiration', '1h', '--start-time', '2h', ...E]);
    expect([late.code, late.stderr]).toEqual([1, expect.stringMatching(/^fleet-server: --start-time 2h \(.+\) is not before the expiration \(.+\)\n$/)]);
    await refused(['actions', 'create', '--type', 'UPGRADE', '--agents', 'a1'], 'UPGRADE needs --data \'{"version":"<agent version>"}\'');
    await refused(['actions', 'create', '--type', 'POLICY_REASSIGN', '--agents', 'a1', '--data', '{"policy_id":"p1"}'],
      'POLICY_REASSIGN moves an agent to another policy: use fleet-server agents reassign AGENT_ID --policy POLICY_ID');
    writeFileSync(join(dir, 'tool.bin'), 'x');
    await refused(['files', 'put', join(dir, 'tool.bin'), '--agents', 'nosuchagent'], 'no agent nosuchagent (see agents list --all); give --force for agents yet to enroll');
    expect(JSON.parse((await run(['actions', 'list', '--json', ...E])).stdout)).toEqual([]);

    expect((await run([...create, 'later', '--force', ...E])).code).toBe(0);
    expect((await run(['actions', 'create', '--type', 'UPGRADE', '--agents', 'a1', '--data', '{"version":"9.6.1"}', '--start-time', '1m', ...E])).code).toBe(0);
    expect((await run(['files', 'put', join(dir, 'tool.bin'), '--agents', 'later', '--force', ...E])).code).toBe(0);
  });

  test('an unenrolled agent is refused as an unknown one is (it checks in no more: the action would wait for nobody), unless --force', async () => {
    await withAgent();
    const store = new SqliteStore(join(data, 'fleet-server.db'));
    await store.createAgent('gone', { active: false, type: 'PERMANENT', enrolled_at: new Date().toISOString(), policy_id: 'p1', agent: { id: 'gone', version: '9.6.0' } });
    await store.close();
    const refused = async (args: string[], line: string): Promise<void> => {
      expect({ args, r: await run([...args, ...E]) }).toEqual({ args, r: { code: 1, stdout: '', stderr: `fleet-server: ${line}\n` } });
    };
    await refused(['actions', 'create', '--type', 'SETTINGS', '--agents', 'a1,gone'], 'agent gone is unenrolled (see agents list --all); give --force for agents yet to enroll');
    await refused(['actions', 'create', '--type', 'SETTINGS', '--agents', 'gone,ghost'], 'no agent ghost; agent gone is unenrolled (see agents list --all); give --force for agents yet to enroll');
    writeFileSync(join(dir, 'tool.bin'), 'x');
    await refused(['files', 'put', join(dir, 'tool.bin'), '--agents', 'gone'], 'agent gone is unenrolled (see agents list --all); give --force for agents yet to enroll');
    expect(JSON.parse((await run(['actions', 'list', '--json', ...E])).stdout)).toEqual([]);
    expect((await run(['actions', 'create', '--type', 'SETTINGS', '--agents', 'gone', '--force', ...E])).code).toBe(0);
    expect((await run(['files', 'put', join(dir, 'tool.bin'), '--agents', 'gone', '--force', ...E])).code).toBe(0);
  });

  test('agents reassign moves the agent and writes the action', async () => {
    await withAgent();
    writeFileSync(join(dir, 'p2.yml'), POLICY.replace('p1', 'p2'));
    await run(['policy', 'put', join(dir, 'p2.yml'), ...E]);
    const r = await run(['agents', 'reassign', 'a1', '--policy', 'p2', '--json', ...E]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 'a1', policy_id: 'p2' });
    expect(JSON.parse((await run(['agents', 'show', 'a1', '--json', ...E])).stdout)).toMatchObject({ policy_id: 'p2', policy_revision_idx: null });
    expect(JSON.parse((await run(['actions', 'list', '--json', ...E])).stdout)).toEqual([expect.objectContaining({ type: 'POLICY_REASSIGN', agents: ['a1'], data: { policy_id: 'p2' } })]);
  });
});

test('an enrollment token name Elasticsearch would refuse as an API key name is refused before any key is minted', async () => {
  expect((await run(['policy', 'put', join(dir, 'p.yml'), ...E])).code).toBe(0);
  for (const name of ['x'.repeat(257), '_hidden', ' padded', 'tab\there', '']) {
    const r = await run(['enrollment-token', 'create', '--policy', 'p1', '--name', name, ...E]);
    // Old: created on the embedded store (Elasticsearch answered 400, a bare error, for the same command).
    expect([name.slice(0, 8), r.code, r.stderr]).toEqual([name.slice(0, 8), 1, expect.stringContaining('--name must be 1 to 256 characters')]);
  }
  expect(JSON.parse((await run(['enrollment-token', 'list', '--json', ...E])).stdout)).toEqual([]);
  const ok = await run(['enrollment-token', 'create', '--policy', 'p1', '--name', 'x'.repeat(256), '--json', ...E]);
  expect([ok.code, JSON.parse(ok.stdout)]).toEqual([0, expect.objectContaining({ name: 'x'.repeat(256) })]);
});

test('the usage of actions create names every action type and what its options are for', async () => {
  const r = await run(['actions', 'create', ...E]);
  expect(r.code).toBe(2);
  for (const text of ['PRIVILEGE_LEVEL_CHANGE', 'agents reassign', '--input-type', 'the input that handles it', '--timeout', 'seconds the agent may take',
    '--force']) expect({ text, found: r.stderr.includes(text) }).toEqual({ text, found: true });
  expect(r.stderr).toMatch(/credentials in policies,\s+agents\s+and actions/);
  const tokens = await run(['enrollment-token', 'list', '--bogus', ...E]);
  expect(tokens.stderr).toContain('only the tokens of this policy');
});

test('standard output closed by its reader (`| head`) ends the command quietly with 0; another write error is one line and 1', () => {
  const exits: number[] = [];
  let stderr = '';
  jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  stdoutFailed(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' }), (c) => exits.push(c));
  expect([exits, stderr]).toEqual([[0], '']);
  stdoutFailed(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' }), (c) => exits.push(c));
  expect([exits, stderr]).toEqual([[0, 1], 'fleet-server: cannot write to standard output: no space left on device (ENOSPC)\n']);
});

test('Elasticsearch without a service token: its 401 says none was given (not that a token was refused)', () => {
  // The client's error, as the store keeps it under its own (connection.ts toStoreError).
  const answered = (status: number) => new errors.ResponseError({
    body: { error: { type: 'security_exception', reason: 'missing authentication credentials' }, status }, statusCode: status, headers: {}, warnings: null,
    meta: { context: null, name: 'fleet-server', attempts: 0, aborted: false, request: { params: { method: 'GET', path: '/' }, options: {}, id: 1 }, connection: null },
  } as never);
  const refused = new StoreUnavailableError('list policies: Elasticsearch refused the service token (401)', { cause: answered(401) });
  const none = buildConfig({ output: { elasticsearch: { hosts: ['http://127.0.0.1:9200'] } } });
  const told = 'no Elasticsearch service token was given (Elasticsearch answered 401): set output.elasticsearch.service_token or service_token_path, as for the server';
  expect(noServiceToken(none, refused)?.message).toBe(told);
  expect(noServiceToken(none, answered(401))?.message).toBe(told);
  // A token given and refused is that; other failures are themselves.
  expect(noServiceToken(buildConfig({ output: { elasticsearch: { hosts: ['http://127.0.0.1:9200'], service_token: 't' } } }), refused)).toBeUndefined();
  expect(noServiceToken(none, new StoreUnavailableError('x', { cause: answered(503) }))).toBeUndefined();
  expect(noServiceToken(buildConfig({}), refused)).toBeUndefined();
});
