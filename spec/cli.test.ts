// The command line as an operator meets it: global options before or after the command, an unknown
// command is an error (never a silently started server), and a failure at start-up is one line on
// stderr that names the cause and the path, with a non-zero exit.
import { execFile, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Authority } from './support/certs';
import { EsDouble } from './support/es-double/server';
import { DIST, removeDir, tempDir } from './support/fleet-server';
import { request } from './support/http';
import { NODE_FLAGS } from './support/node-flags';
import { freePort } from './support/ports';

jest.setTimeout(60_000);

function run(args: string[], cwd: string, input?: string): SpawnSyncReturns<string> {
  // A server started by mistake would never exit: the timeout turns that into a failure.
  return spawnSync(process.execPath, [...NODE_FLAGS, DIST, ...args], { cwd, encoding: 'utf8', timeout: 20_000, input });
}

/** stderr without the JSON log lines: what a person reads. */
const plain = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{"log.level"'));

describe('global options before or after the command', () => {
  const dir = tempDir();
  const data = join(dir, 'data');
  const conf = join(dir, 'fleet-server.yml');
  // A config file elsewhere: the command must use it (and its data directory), not ./data.
  const cwd = join(dir, 'cwd');

  beforeAll(() => {
    mkdirSync(cwd);
    writeFileSync(conf, `path.data: ${data}\n`);
    writeFileSync(join(dir, 'p.yml'), 'id: p1\noutputs: {default: {type: elasticsearch, hosts: ["http://localhost:9200"]}}\n');
  });
  afterAll(() => removeDir(dir));

  const both = (cmd: string[]): [string, string[]][] => [
    ['before', ['-c', conf, '-E', 'logging.level=warn', '--json', ...cmd]],
    ['after', [...cmd, '-c', conf, '-E', 'logging.level=warn', '--json']],
  ];

  test('every admin command takes -c/-E/--json before and after it', () => {
    const ok = (args: string[]): any => {
      const r = run(args, cwd);
      expect({ args, status: r.status, stderr: r.stderr }).toEqual({ args, status: 0, stderr: '' });
      return JSON.parse(r.stdout);
    };
    for (const [where, args] of both(['policy', 'put', join(dir, 'p.yml')])) expect([where, ok(args).id]).toEqual([where, 'p1']);
    for (const [where, args] of both(['policy', 'list'])) expect([where, ok(args).map((p: any) => p.id)]).toEqual([where, ['p1']]);
    for (const [where, args] of both(['policy', 'show', 'p1'])) expect([where, ok(args).policy_id]).toEqual([where, 'p1']);
    const tokens = both(['enrollment-token', 'create', '--policy', 'p1']).map(([, args]) => ok(args).id as string);
    for (const [where, args] of both(['enrollment-token', 'list'])) expect([where, ok(args).length]).toEqual([where, 2]);
    for (const [i, [, args]] of both(['enrollment-token', 'revoke', tokens[0]!]).entries()) expect(ok(i === 0 ? args : args.map((a) => (a === tokens[0] ? tokens[1]! : a))).revoked).toBe(true);
    for (const [where, args] of both(['agents', 'list'])) expect([where, ok(args)]).toEqual([where, []]);
    // a1 has not enrolled (yet): --force.
    const actions = both(['actions', 'create', '--type', 'UNENROLL', '--agents', 'a1', '--force']).map(([, args]) => ok(args).id as string);
    for (const [where, args] of both(['actions', 'list'])) expect([where, ok(args).length]).toEqual([where, 2]);
    for (const [where, args] of both(['actions', 'show', actions[0]!])) expect([where, ok(args).action.action_id]).toEqual([where, actions[0]]);
    // Everything went to the configured data directory; no server ran (no default policy, no ./data).
    expect(existsSync(join(data, 'fleet-server.db'))).toBe(true);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
    expect(ok(['policy', 'list', '-c', conf, '--json']).map((p: any) => p.id)).toEqual(['p1']);
  });

  test('agents show: options before and after', () => {
    for (const [, args] of both(['agents', 'show', 'nope'])) {
      const r = run(args, cwd);
      expect(r.status).toBe(1);
      expect(plain(r.stderr)).toEqual(['fleet-server: agent nope not found']);
    }
  });

  test('run takes options before and after it', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [...NODE_FLAGS, DIST, '-c', conf, '-E', 'inputs.0.server.host=127.0.0.1', 'run',
      '-E', `inputs.0.server.port=${port}`, '-E', `inputs.0.server.internal_port=${await freePort()}`], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      for (let i = 0; i < 300 && !stderr.includes('fleet-server internal listener'); i++) await new Promise((r) => setTimeout(r, 50));
      expect((await request(`http://127.0.0.1:${port}/api/status`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });

  test('an unknown command word is a usage error, not a started server', () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    for (const args of [['polcy', 'list'], ['-E', `path.data=${empty}`, 'polcy', 'list'], ['policy', 'lst'], ['actions', 'lst'], ['policy', 'list', '--bogus']]) {
      const r = run([...args, '-E', `path.data=${empty}`], cwd);
      expect({ args, status: r.status }).toEqual({ args, status: 2 });
      expect(r.stderr).toMatch(/Unknown argument|Did you mean/);
      expect(r.stderr).not.toContain('"log.level"');
    }
    expect(existsSync(join(empty, 'fleet-server.db'))).toBe(false);
  });
});

test('credentials in policies and actions are redacted unless --show-secrets; a new enrollment token is shown', () => {
  const dir = tempDir();
  try {
    writeFileSync(join(dir, 'p.yml'), [
      'id: p1',
      'outputs:',
      '  default: {type: elasticsearch, hosts: ["https://fleet:hunter2@es:9200"], api_key: "policy-api-key", ssl: {key: "-----BEGIN PRIVATE KEY-----", certificate: "/etc/c.pem"}}',
      '  remote: {type: remote_elasticsearch, hosts: ["https://r:9200"], service_token: "$co.elastic.secret{s1}", headers: {X-Auth: "h-secret"}}',
      'inputs: [{type: logfile, streams: [{password: "input-password", paths: ["/x"], access_token: "input-token"}]}]',
      'secret_references: [{id: s1}]',
      'opamp: {config: "exporters:\\n  otlphttp:\\n    endpoint: https://otel:4318\\n    headers: {Authorization: \\"Bearer otel-secret\\"}\\n"}',
    ].join('\n'));
    const ok = (args: string[]): any => {
      const r = run([...args, '-E', `path.data=${dir}`], dir);
      expect({ args, status: r.status, stderr: plain(r.stderr) }).toEqual({ args, status: 0, stderr: [] });
      return r.stdout;
    };
    ok(['policy', 'put', join(dir, 'p.yml')]);
    const action = JSON.parse(ok(['actions', 'create', '--type', 'MIGRATE', '--agents', 'a1', '--force', '--data', '{"target_uri":"https://u:url-pass@f:8220","enrollment_token":"migrate-token"}', '--json']));
    expect(action.data).toEqual({ target_uri: 'https://[REDACTED]@f:8220', enrollment_token: '[REDACTED]' });
    for (const out of [ok(['policy', 'show', 'p1']), ok(['policy', 'show', 'p1', '--json'])]) {
      const p = JSON.parse(out);
      expect(p.data.outputs.default).toMatchObject({ hosts: ['https://[REDACTED]@es:9200'], api_key: '[REDACTED]', ssl: { key: '[REDACTED]', certificate: '/etc/c.pem' } });
      // A secret reference names a secret, it is none: it stays readable.
      expect(p.data.outputs.remote).toMatchObject({ service_token: '$co.elastic.secret{s1}', headers: { 'X-Auth': '[REDACTED]' } });
      expect(p.data.inputs[0].streams[0]).toEqual({ password: '[REDACTED]', paths: ['/x'], access_token: '[REDACTED]' });
      expect(p.data.secret_references).toEqual([{ id: 's1' }]);
      expect(p.data.opamp.config).toContain('endpoint: https://otel:4318');
      expect(p.data.opamp.config).toContain('Authorization: "[REDACTED]"');
      for (const secret of ['hunter2', 'policy-api-key', 'PRIVATE KEY', 'h-secret', 'input-password', 'input-token', 'otel-secret']) expect(out).not.toContain(secret);
    }
    const shown = ok(['actions', 'show', action.id, '--json']);
    expect(JSON.parse(shown).action.data.enrollment_token).toBe('[REDACTED]');
    expect(ok(['actions', 'list', '--json'])).not.toMatch(/migrate-token|url-pass/);
    // Asked for, they are shown as stored.
    expect(JSON.parse(ok(['policy', 'show', 'p1', '--show-secrets'])).data.outputs.default).toMatchObject({ api_key: 'policy-api-key', hosts: ['https://fleet:hunter2@es:9200'] });
    expect(JSON.parse(ok(['actions', 'show', action.id, '--show-secrets', '--json'])).action.data.enrollment_token).toBe('migrate-token');
    // What the command exists to show once is never redacted.
    const created = JSON.parse(ok(['enrollment-token', 'create', '--policy', 'p1', '--json']));
    expect(created.api_key).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
    expect(ok(['enrollment-token', 'create', '--policy', 'p1']).trim()).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
  } finally {
    removeDir(dir);
  }
});

describe('start-up failures: one line naming the cause and the path, exit 1', () => {
  const dir = tempDir();
  let blocker: Server;
  let busyPort: number;

  beforeAll(async () => {
    busyPort = await freePort();
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(busyPort, '127.0.0.1', r));
  });
  afterAll(async () => {
    await new Promise((r) => blocker.close(r));
    removeDir(dir);
  });

  const fails = (args: string[], line: RegExp): void => {
    const r = run([...args, '-E', 'inputs.0.server.host=127.0.0.1', '-E', `inputs.0.server.internal_port=0`], dir);
    expect({ status: r.status, lines: plain(r.stderr) }).toEqual({ status: 1, lines: [expect.stringMatching(line)] });
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toContain('Options:');
  };

  test('a data directory that cannot be created (under a regular file)', () => {
    writeFileSync(join(dir, 'a-file'), '');
    const data = join(dir, 'a-file', 'data');
    fails(['-E', `path.data=${data}`], new RegExp(`^fleet-server: data directory ${data} \\(path\\.data\\): not a directory \\(ENOTDIR\\)$`));
  });

  test('a log directory that cannot be created', () => {
    const logs = join(dir, 'a-file', 'logs');
    fails(['-E', `path.data=${join(dir, 'd0')}`, '-E', 'logging.to_files=true', '-E', `logging.files.path=${logs}`],
      new RegExp(`^fleet-server: cannot open log file ${logs}/fleet-server.log \\(logging.files.path\\): not a directory`));
  });

  test('a bad configuration value', () => {
    fails(['-E', `path.data=${join(dir, 'd1')}`, '-E', 'inputs.0.server.port=eighty'], /^fleet-server: config key inputs\.0\.server\.port: expected a number$/);
  });

  test('the port already in use', () => {
    fails(['-E', `path.data=${join(dir, 'd2')}`, '-E', `inputs.0.server.port=${busyPort}`],
      new RegExp(`^fleet-server: cannot listen on 127\\.0\\.0\\.1:${busyPort}: address already in use \\(EADDRINUSE\\)$`));
  });

  test('an unreadable or malformed config file', () => {
    fails(['-c', dir, '-E', `path.data=${join(dir, 'd3')}`], new RegExp(`^fleet-server: cannot read config file ${dir}: illegal operation on a directory \\(EISDIR\\)$`));
    const bad = join(dir, 'bad.yml');
    writeFileSync(bad, 'inputs: [\n');
    fails(['-c', bad, '-E', `path.data=${join(dir, 'd3')}`], new RegExp(`^fleet-server: config file ${bad} is not valid YAML: .*line 2`));
  });

  test('a missing or malformed TLS certificate file', () => {
    const { key } = new Authority().leaf('localhost');
    const keyFile = join(dir, 'key.pem');
    writeFileSync(keyFile, key);
    const missing = join(dir, 'missing.pem');
    fails(['-E', `path.data=${join(dir, 'd4')}`, '-E', `inputs.0.server.ssl.certificate=${missing}`, '-E', `inputs.0.server.ssl.key=${keyFile}`],
      new RegExp(`^fleet-server: cannot read TLS file ${missing} \\(inputs\\.0\\.server\\.ssl\\.certificate\\): no such file or directory \\(ENOENT\\)$`));
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    fails(['-E', `path.data=${join(dir, 'd5')}`, '-E', `inputs.0.server.ssl.certificate=${garbage}`, '-E', `inputs.0.server.ssl.key=${keyFile}`],
      new RegExp(`^fleet-server: invalid TLS certificate ${garbage} \\(inputs\\.0\\.server\\.ssl\\.certificate\\): `));
    // The failure comes before anything is written to the data directory.
    expect(existsSync(join(dir, 'd5', 'fleet-server.db'))).toBe(false);
    // Key material given inline without its PEM lines is not a file name: never repeated in the message.
    const inline = key.split('\n').filter((l) => !l.startsWith('-----')).join('');
    const r = run(['-E', `path.data=${join(dir, 'd6')}`, '-E', `inputs.0.server.ssl.certificate=${garbage}`, '-E', `inputs.0.server.ssl.key=${inline}`], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('inputs.0.server.ssl.key (an inline value that is not PEM)');
    expect(r.stderr).not.toContain(inline.slice(0, 20));
  });
});

describe('admin commands as an operator meets them', () => {
  const dir = tempDir();
  const data = join(dir, 'data');
  const E = ['-E', `path.data=${data}`];
  afterAll(() => removeDir(dir));
  const policy = 'id: p1\noutputs: {default: {type: elasticsearch, hosts: ["http://localhost:9200"]}}\n';

  test('policy put - reads standard input', () => {
    const r = run(['policy', 'put', '-', '--json', ...E], dir, policy);
    expect({ status: r.status, stderr: plain(r.stderr) }).toEqual({ status: 0, stderr: [] });
    expect(JSON.parse(r.stdout)).toEqual({ id: 'p1', revision: 1 });
  });

  test('policy put "" (an unset variable) is refused, not read from standard input', () => {
    // Standard input closed at once: read, it was an empty document ("policy must be an object").
    const r = run(['policy', 'put', '', ...E], dir);
    expect({ status: r.status, stderr: plain(r.stderr) }).toEqual({ status: 1, stderr: ["fleet-server: cannot read '': give a file name (or - for standard input)"] });
  });

  test('a path.data with no store is refused and left as it was; only policy put makes one', () => {
    const missing = join(dir, 'missing');
    const r = run(['policy', 'list', '-E', `path.data=${missing}`], dir);
    expect({ status: r.status, stderr: plain(r.stderr) }).toEqual({ status: 1, stderr: [`fleet-server: no embedded store at ${missing} (no fleet-server.db there): give the server's -c/-E path.data, or its Elasticsearch output`] });
    expect(existsSync(missing)).toBe(false);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(run(['agents', 'list', '-E', `path.data=${empty}`], dir).status).toBe(1);
    expect(readdirSync(empty)).toEqual([]);
  });

  test('a number that is none is a usage error (exit 2), not a store error', () => {
    for (const [args, wanted] of [[['actions', 'list', '--limit', 'abc'], '1 or more'], [['uploads', 'list', '--limit', '0'], '1 or more'],
      [['actions', 'create', '--type', 'SETTINGS', '--agents', 'x', '--timeout', 'abc'], '0 or more']] as [string[], string][]) {
      const r = run([...args, ...E], dir);
      expect({ args, status: r.status, last: plain(r.stderr).pop() }).toEqual({ args, status: 2, last: `--${args[args.length - 2]!.slice(2)} ${args[args.length - 1]}: give a whole number, ${wanted}` });
    }
  });

  test('an action for an agent that does not exist is refused unless --force', () => {
    const r = run(['actions', 'create', '--type', 'SETTINGS', '--agents', 'nosuchagent', ...E], dir);
    expect({ status: r.status, stderr: plain(r.stderr) }).toEqual({ status: 1, stderr: ['fleet-server: no agent nosuchagent (see agents list --all); give --force for agents yet to enroll'] });
    expect(run(['actions', 'create', '--type', 'SETTINGS', '--agents', 'nosuchagent', '--force', ...E], dir).status).toBe(0);
  });

  test('output cut short by its reader (| head -1) ends the command quietly with 0', async () => {
    const big = { id: 'big', outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
      inputs: Array.from({ length: 400 }, (_, i) => ({ id: `i${i}`, type: 'logfile', streams: [{ paths: Array(20).fill(`/var/log/x${i}/*.log`) }] })) };
    writeFileSync(join(dir, 'big.json'), JSON.stringify(big));
    expect(run(['policy', 'put', join(dir, 'big.json'), ...E], dir).status).toBe(0);
    const child = spawn(process.execPath, [...NODE_FLAGS, DIST, 'policy', 'show', 'big', ...E], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // The first chunk read, the reader goes away, as `head -1` does.
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    child.stdout!.destroy();
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  test('Elasticsearch without a service token: the error says none was given', async () => {
    const es = await new EsDouble().start();
    try {
      // Not spawnSync: the double answers from this process.
      const r = await promisify(execFile)(process.execPath, [...NODE_FLAGS, DIST, 'policy', 'list', '-E', `output.elasticsearch.hosts=${es.url}`], { cwd: dir, encoding: 'utf8' })
        .then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }));
      expect({ code: r.code, stderr: plain(r.stderr) }).toEqual({ code: 1, stderr: [
        'fleet-server: no Elasticsearch service token was given (Elasticsearch answered 401): set output.elasticsearch.service_token or service_token_path, as for the server'] });
    } finally {
      await es.stop();
    }
  });
});
