// The packaged single executable (npm run package): runs with no Node and no environment, standalone
// and in agent mode under the fake agent; the tarball holds it and its component spec.
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { arch } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { proto } from '../src/control/generated/control';
import { fleetServerUnits, withAgentEnv } from './support/fake-agent';
import { removeDir, tempDir } from './support/fleet-server';
import { request } from './support/http';
import { freePort } from './support/ports';
import { cli } from './support/cli';
import { esSettings } from './support/es-mode';
import { missingFromEnviron } from './support/node-flags';

jest.setTimeout(180_000);

const ROOT = resolve(__dirname, '..');
const EXE = join(ROOT, 'dist/fleet-server');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const PLATFORM = `linux-${arch() === 'x64' ? 'x86_64' : arch()}`;
const TARBALL = join(ROOT, `dist/fleet-server-${VERSION}-${PLATFORM}.tar.gz`);

beforeAll(() => {
  // Packaging follows the build `npm test` just ran; it is not repeated when already current.
  const bundle = statSync(join(ROOT, 'dist/fleet-server.js')).mtimeMs;
  if (!existsSync(EXE) || statSync(EXE).mtimeMs < bundle || !existsSync(TARBALL) || !existsSync(`${TARBALL}.sha512`)) {
    execFileSync(process.execPath, [join(ROOT, 'scripts/package.mjs')], { cwd: ROOT, stdio: 'inherit' });
  }
});

test('--version prints the version and commit with no Node on PATH and an empty environment, and nothing else', () => {
  const run = spawnSync(EXE, ['--version'], { env: {}, encoding: 'utf8' });
  expect(run.stdout).toMatch(new RegExp(`^fleet-server version ${VERSION.replace(/\./g, '\\.')} \\(commit \\w+\\)`));
  // Node warns when V8 rejects the executable's code cache (one made under other flags: scripts/package.mjs).
  expect(run.stderr).toBe('');
});

test('standalone: the executable serves /api/status, with two workers on the embedded store', async () => {
  const dir = tempDir();
  const port = await freePort();
  const child = spawn(EXE, ['-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1', '-E', `inputs.0.server.port=${port}`, '-E', `inputs.0.server.internal_port=${await freePort()}`,
    '-E', 'inputs.0.server.workers=2'], { cwd: dir, env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = await request(`http://127.0.0.1:${port}/api/status`).then((r) => r.status, () => 0);
    }
    expect(status).toBe(200);
    // The workers of the single executable take its arguments as the primary does.
    for (let i = 0; i < 100 && !stderr.includes('fleet-server workers ready'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(stderr).toContain('fleet-server workers ready');
    // Started with an empty environment, the executable and its workers run in the one it ships with.
    const workers = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(workers).toHaveLength(2);
    for (const pid of [child.pid!, ...workers]) expect(missingFromEnviron(pid)).toEqual([]);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    removeDir(dir);
  }
});

test('the libraries one mode uses are assets of the executable, read when required: admin commands on either store', () => withAgentEnv(async ({ dir, es }) => {
  const file = join(dir, 'p.yml');
  writeFileSync(file, ['id: asset-policy', 'outputs: {default: {type: elasticsearch, hosts: ["http://localhost:9200"]}}', 'inputs: []'].join('\n'));
  // A copy with nothing beside it: dist/vendor/ holds the bundle's copies of these libraries.
  const exe = join(dir, 'bin', 'fleet-server');
  mkdirSync(dirname(exe));
  copyFileSync(EXE, exe);
  // yargs reads the command line, the Elasticsearch client writes through the output's service token.
  // Not execFileSync: the Elasticsearch double answers from this process.
  const admin = async (args: string[], overrides: string[] = []) => (await promisify(execFile)(exe,
    [...args, '--json', '-E', `path.data=${dir}`, ...overrides.flatMap((o) => ['-E', o])], { cwd: dir, env: {}, encoding: 'utf8' })).stdout;
  for (const store of [[], esSettings(es)]) {
    await admin(['policy', 'put', file], store);
    expect(JSON.parse(await admin(['policy', 'list'], store))).toEqual([expect.objectContaining({ id: 'asset-policy', revision: 1 })]);
  }
}));

test('agent mode: the executable runs under the fake agent and turns HEALTHY', () => withAgentEnv(async ({ dir, es, fake }) => {
  const file = join(dir, 'fs.yml');
  writeFileSync(file, ['id: fs-policy', 'outputs: {default: {type: elasticsearch, hosts: ["http://localhost:9200"]}}', 'inputs: [{id: fleet-server, type: fleet-server}]'].join('\n'));
  await cli(dir, ['policy', 'put', file], esSettings(es));
  fake.agentInfo = { ...fake.agentInfo, id: 'packaged-host' };
  fake.units = fleetServerUnits({ policyId: 'fs-policy', esHosts: [es.url], serviceToken: es.serviceToken, port: await freePort(), internalPort: await freePort() });
  fake.spawn(dir, [], { command: [EXE] });
  await fake.waitObserved('HEALTHY', (o) => o.units.length === 2 && o.units.every((u) => u.state === proto.State.HEALTHY
    && u.message === 'Running on policy with Fleet Server integration: fs-policy'));
  fake.child!.kill('SIGTERM');
  expect(await fake.exit).toEqual({ code: 0, signal: null });
}));

test('the tarball holds the executable and a version 2 component spec with upstream\'s arguments', () => {
  const listing = execFileSync('tar', ['-tzvf', TARBALL]).toString().split('\n').filter(Boolean);
  const top = `fleet-server-${VERSION}-${PLATFORM}/`;
  expect(listing.some((l) => l.startsWith('-rwxr-xr-x') && l.endsWith(`${top}fleet-server`))).toBe(true);
  const spec = parse(execFileSync('tar', ['-xzOf', TARBALL, `${top}fleet-server.spec.yml`]).toString()) as {
    version: number; inputs: { name: string; outputs: string[]; command: { args: string[] } }[];
  };
  expect(spec.version).toBe(2);
  expect(spec.inputs).toHaveLength(1);
  expect(spec.inputs[0]).toMatchObject({ name: 'fleet-server', outputs: ['elasticsearch'], command: { args: ['--agent-mode', '-E', 'logging.level=debug', '-E', 'logging.to_stderr=true'] } });
});

test('the tarball has its .sha512 beside it (sha512sum\'s format, as Elastic Agent\'s packaging checks) and names no builder: 0:0, the commit\'s time, name order', () => {
  const tarball = readFileSync(TARBALL);
  const name = TARBALL.split('/').pop()!;
  expect(readFileSync(`${TARBALL}.sha512`, 'utf8')).toBe(`${createHash('sha512').update(tarball).digest('hex')}  ${name}\n`);
  expect(execFileSync('sha512sum', ['-c', `${name}.sha512`], { cwd: dirname(TARBALL) }).toString()).toBe(`${name}: OK\n`);
  // gzip's header: no time of its own (bytes 4-7) and no file name (FNAME flag, bit 3 of byte 3).
  expect([...tarball.subarray(4, 8)]).toEqual([0, 0, 0, 0]);
  expect(tarball[3]! & 0x08).toBe(0);
  const commit = Number(process.env['SOURCE_DATE_EPOCH'] || execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: ROOT }).toString().trim());
  const entries = execFileSync('tar', ['-tzvf', TARBALL, '--numeric-owner', '--full-time'], { env: { ...process.env, TZ: 'UTC' } }).toString().split('\n').filter(Boolean);
  const when = new Date(commit * 1000).toISOString().replace('T', ' ').slice(0, 19);
  for (const line of entries) expect(line).toMatch(new RegExp(`^(drwxr-xr-x|-rwxr-xr-x|-rw-r--r--) 0/0 +\\d+ ${when} `));
  const paths = entries.map((l) => l.split(' ').pop()!);
  expect(paths).toEqual([...paths].sort());
  expect(paths).toEqual([`fleet-server-${VERSION}-${PLATFORM}/`, ...['README.md', 'fleet-server', 'fleet-server.spec.yml', 'fleet-server.yml'].map((f) => `fleet-server-${VERSION}-${PLATFORM}/${f}`)]);
});

test('the executable reports the packaged commit\'s time as its build time (scripts/source-date.mjs), not the moment it was built', () => {
  // Dated by the clock, two packagings of one commit differed in these bytes (and so in the tarball's).
  const commit = Number(process.env['SOURCE_DATE_EPOCH'] || execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: ROOT }).toString().trim());
  const built = new Date(commit * 1000).toISOString().replace(/\.000Z$/, 'Z');
  expect(readFileSync(EXE).includes(JSON.stringify(built))).toBe(true);
});
