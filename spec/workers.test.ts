// inputs.0.server.workers: the HTTP service in several processes on one Elasticsearch cluster (the
// double), supervised by a primary that sums their figures on the metrics listener.
import { buildConfig } from '../src/config/config';
import { chooseWorkers, shareLimits } from '../src/runtime/sizing';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import net from 'node:net';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { SimAgent } from './support/agent';
import { localhostCertificate } from './support/certs';
import { EsDouble } from './support/es-double/server';
import { bumpPolicy, esSettings, seedPolicy } from './support/es-mode';
import { DIST, removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { NODE_FLAGS } from './support/node-flags';
import { request } from './support/http';
import { freePort } from './support/ports';
import { AgentPool, alive, stats, statsUntil, workersOf, type Outcome } from './support/workers';

jest.setTimeout(120_000);

interface Bed {
  dir: string;
  es: EsDouble;
  metricsPort: number;
  /** The program with two workers on the double, the metrics listener on `metricsPort`; ready once both workers are. */
  start(overrides: string[], logFile?: string): Promise<FleetServerProcess>;
}

/** A data directory, the double and a free metrics port for `fn`; afterwards every server started is stopped and all removed. */
async function onTheDouble(fn: (bed: Bed) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const es = await new EsDouble().start();
  const metricsPort = await freePort();
  const servers: FleetServerProcess[] = [];
  const start = async (overrides: string[], logFile?: string): Promise<FleetServerProcess> => {
    const server = await startFleetServer({
      dataDir: dir, readyText: 'fleet-server workers ready', logFile,
      overrides: ['inputs.0.server.workers=2', 'http.enabled=true', `http.port=${metricsPort}`, ...overrides, ...esSettings(es)],
    });
    servers.push(server);
    return server;
  };
  try {
    await fn({ dir, es, metricsPort, start });
  } finally {
    for (const server of servers) await server.stop();
    await es.stop();
    removeDir(dir);
  }
}

const heldSum = (s: any): number => workersOf(s).reduce((n, w) => n + w.checkin.held, 0);

test('two workers: polls held on both, a policy change reaches all, a killed worker is replaced, SIGTERM answers every held poll', async () => {
  await onTheDouble(async ({ dir, es, metricsPort, start }) => {
    const server = await start(['inputs.0.server.timeouts.checkin_jitter=0s', 'inputs.0.server.timeouts.checkin_long_poll=60s']);
    const url = server.url;
    const started = server.logs().find((l) => l['message'] === 'fleet-server starting');
    expect(started).toMatchObject({ workers: 2, 'workers.reason': 'configured' });
    // Peers that need nothing from the primary keep its priority (runtime/worker-priority.ts).
    expect(server.logs().find((l) => l['message'] === 'fleet-server workers ready')!['workers.nice']).toEqual([getPriority(0), getPriority(0)]);
    expect(started!['limits.profile']).toEqual(expect.any(String));
    expect(started!['limits.memory_mib']).toBeGreaterThan(0);

    const token = await seedPolicy(dir, esSettings(es), url);
    await statsUntil(metricsPort, (s) => s.fleet.status === 'HEALTHY' && s.fleet.cluster.answering === 2, 'both workers healthy');

    // Each agent opens a new connection per request; the primary deals them to the workers in turn.
    const pool = new AgentPool(url, token, metricsPort);
    const { agents } = pool;
    const enrollOne = (): Promise<SimAgent> => pool.enrollOne();
    for (let i = 0; i < 6; i++) await enrollOne();
    const s0 = await stats(metricsPort);
    const prom = (await request(`http://127.0.0.1:${metricsPort}/metrics`)).text;
    expect(prom).toContain('\nhttp_server_routes_enroll_total 6\n');
    // /stats is the sum of the workers: six enrollments and six first check-ins, whichever worker served them.
    expect(s0.http_server.routes.enroll.total).toBe(6);
    expect(s0.http_server.routes.checkin.total).toBe(6);
    expect(workersOf(s0)).toHaveLength(2);
    expect(new Set(workersOf(s0).map((w) => w.pid)).size).toBe(2);
    expect(s0.beat.memstats.rss).toBeGreaterThan(Math.max(...workersOf(s0).map((w: any) => w.rss)));

    const poll = (agent: SimAgent, rev: number): Promise<Outcome> => pool.poll(agent, rev);
    const failed = (o: Outcome): boolean => 'error' in o;
    // Polls held on both workers.
    const first = await pool.holdOnEveryWorker(1);
    let held = first.held;
    const s1 = first.stats;
    expect(s1.fleet.checkin.held).toBe(heldSum(s1));
    expect(s1.http_server.routes.checkin.active).toBe(agents.length);

    // A new revision reaches every held poll, on both workers.
    const secretReads = (): number => es.stats.requests['secret_get'] ?? 0;
    const readsBefore = secretReads();
    const rev2 = await bumpPolicy(dir, esSettings(es), url, 'two');
    const keys = new Set<string>();
    for (const o of await Promise.all(held)) {
      expect(o).toMatchObject({ status: 200 });
      const policy = (o as any).json.actions.find((a: any) => a.type === 'POLICY_CHANGE').data.policy;
      expect(policy.revision).toBe(rev2);
      keys.add(policy.outputs.default.api_key);
    }
    expect(keys.size).toBe(agents.length);
    // With polls held on both workers, some agents' keys were minted by the other one: the primary kept
    // them, so the rollout read no Fleet secret (runtime/shared-secrets.ts).
    expect(secretReads()).toBe(readsBefore);

    // Kill one worker outright: its agents' polls end with a reset, the primary starts a replacement.
    held = agents.map((a) => poll(a, rev2));
    const s2 = await statsUntil(metricsPort, (s) => s.fleet.checkin.held === agents.length, 'every poll held again');
    const victim = workersOf(s2).find((w) => w.checkin.held > 0)!;
    const survivor = workersOf(s2).find((w) => w.pid !== victim.pid)!;
    process.kill(victim.pid, 'SIGKILL');
    const s3 = await statsUntil(metricsPort, (s) => s.fleet.cluster.restarts === 1 && s.fleet.cluster.answering === 2, 'a replacement worker');
    expect(workersOf(s3).map((w) => w.pid)).not.toContain(victim.pid);
    expect(workersOf(s3).map((w) => w.pid)).toContain(survivor.pid);
    await server.waitFor('worker exited; starting a replacement');
    // The survivor took the whole server's limits while alone, and gave half back to the replacement.
    const reshared = (): unknown[] => server.logs().filter((l) => l['message'] === 'limits reshared').map((l) => l['cluster.serving']);
    for (let i = 0; i < 200 && reshared().length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    expect(reshared()).toEqual([1, 2]);
    // The survivor still holds its polls; exactly the victim's were cut.
    expect(s3.fleet.checkin.held).toBe(survivor.checkin.held);
    const cut: SimAgent[] = [];
    await Promise.all(held.map(async (p, i) => {
      const o = await Promise.race([p, statsUntil(metricsPort, () => true, '').then(() => undefined)]);
      if (o && failed(o)) cut.push(agents[i]!);
    }));
    expect(cut).toHaveLength(victim.checkin.held);
    // Reconnecting, they are held again (by the survivor or the replacement), and a new revision reaches everyone.
    const stillHeld = held.filter((_, i) => !cut.includes(agents[i]!));
    held = [...stillHeld, ...cut.map((a) => poll(a, rev2))];
    await statsUntil(metricsPort, (s) => s.fleet.checkin.held === agents.length, 'every poll held after the restart');
    const rev3 = await bumpPolicy(dir, esSettings(es), url, 'three');
    for (const o of await Promise.all(held)) {
      expect(o).toMatchObject({ status: 200 });
      expect((o as any).json.actions.find((a: any) => a.type === 'POLICY_CHANGE').data.policy.revision).toBe(rev3);
    }
    held = agents.map((a) => poll(a, rev3));
    await statsUntil(metricsPort, (s) => s.fleet.checkin.held === agents.length, 'every poll held before the stop');

    // SIGTERM: every worker drains, every held poll is answered, the program exits 0.
    const code = await server.stop(60_000);
    expect(code).toBe(0);
    for (const o of await Promise.all(held)) expect(o).toMatchObject({ status: 200 });
    const stopped = server.logs().filter((l) => l['message'] === 'fleet-server stopped');
    expect(stopped).toHaveLength(3);
    // Each worker answered once the primary said every listener was closed, not after waiting it out.
    expect(stopped.filter((l) => l['worker.slot'] !== undefined).map((l) => l['stop.others_closed'])).toEqual([true, true]);
  });
});

test('sizing: auto follows the CPUs, on either store; workers: 1 is one process', () => {
  const es = { output: { elasticsearch: { hosts: ['http://es:9200'] } } };
  const cfg = (workers: unknown, withEs: boolean): ReturnType<typeof buildConfig> =>
    buildConfig({ ...(withEs ? es : {}), inputs: [{ type: 'fleet-server', server: { ...(workers === undefined ? {} : { workers }) } }] });
  expect(cfg(undefined, true).server.workers).toBe('auto');
  expect(chooseWorkers(cfg(3, true))).toEqual({ workers: 3, reason: 'configured' });
  expect(chooseWorkers(cfg(1, true))).toEqual({ workers: 1, reason: 'configured' });
  expect(chooseWorkers(cfg(3, false))).toEqual({ workers: 3, reason: 'configured' });
  expect(chooseWorkers(cfg('auto', false))).toEqual(chooseWorkers(cfg('auto', true)));
  const auto = chooseWorkers(cfg('auto', true));
  expect(auto.workers).toBeGreaterThanOrEqual(1);
  expect(() => cfg(0, true)).toThrow(/inputs.0.server.workers/);
  expect(() => cfg('many', true)).toThrow(/inputs.0.server.workers/);
});

test('each of n workers gets 1/n of every route limit and of max_connections; a limit that is off stays off', () => {
  const limits = buildConfig({ inputs: [{ type: 'fleet-server', server: { limits: { max_agents: 100, checkin_limit: { max: 0 } } } }] }).server.limits;
  const shared = shareLimits(limits, 2);
  expect(limits.routes.enroll).toMatchObject({ intervalMs: 10, burst: 10, max: 20 });
  expect(shared.routes.enroll).toMatchObject({ intervalMs: 20, burst: 5, max: 10, maxBody: limits.routes.enroll.maxBody });
  expect(shared.routes.checkin.max).toBe(0);
  expect(shared.maxConnections).toBe(750);
  // Rounded up: never a share of 0, which would turn the part off.
  expect(shareLimits(limits, 3).routes.enroll).toMatchObject({ intervalMs: 30, burst: 4, max: 7 });
  expect(shareLimits(limits, 1)).toBe(limits);
});

/** One TLS connection asking for /api/status, offering `session`; whether it was resumed, and the ticket it got. */
function statusOverTls(port: number, ca: Buffer, session: Buffer | undefined): Promise<{ reused: boolean; session: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, session, minVersion: 'TLSv1.3' }, () => {
      socket.write('GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    socket.on('session', (s: Buffer) => (ticket = s));
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('end', () => {
      if (!text.startsWith('HTTP/1.1 ')) reject(new Error(`no answer: ${text}`));
      resolve({ reused: socket.isSessionReused(), session: ticket });
    });
    socket.on('error', reject);
  });
}

test('TLS sessions resume on any worker: the workers share their session-ticket keys', async () => {
  await onTheDouble(async ({ dir, metricsPort, start }) => {
    const { certPath, keyPath, ca } = localhostCertificate(dir);
    const server = await start(
      ['inputs.0.server.ssl.enabled=true', `inputs.0.server.ssl.certificate=${certPath}`, `inputs.0.server.ssl.key=${keyPath}`]);
    const first = await statusOverTls(server.port, ca, undefined);
    expect(first.reused).toBe(false);
    let session = first.session;
    expect(session).toBeDefined();
    // Connections are dealt in turn; go on until both workers have served some, every one resumed.
    let s = await stats(metricsPort);
    for (let i = 0; i < 20 && workersOf(s).some((w: any) => !(w.tcp_open > 0)); i++) {
      const next = await statusOverTls(server.port, ca, session);
      expect(next.reused).toBe(true);
      session = next.session ?? session;
      s = await stats(metricsPort);
    }
    expect(workersOf(s).every((w: any) => w.tcp_open > 0)).toBe(true);
  });
});

test('a worker that cannot start stops the whole start (exit 1); workers whose primary is killed exit too', async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  try {
    await onTheDouble(async ({ dir, es, metricsPort, start }) => {
      // The external port is taken: the first worker's listen fails, and the program exits 1 saying so in one line.
      const taken = (blocker.address() as net.AddressInfo).port;
      const failed = spawn(process.execPath, [...NODE_FLAGS, DIST, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1',
        '-E', `inputs.0.server.port=${taken}`, '-E', 'inputs.0.server.workers=2', ...esSettings(es).flatMap((s) => ['-E', s])], { cwd: dir });
      let stderr = '';
      failed.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((r) => failed.once('close', (c) => r(c)));
      expect(code).toBe(1);
      expect(stderr.split('\n').filter((l) => l.startsWith('fleet-server: '))).toEqual([expect.stringMatching(/EADDRINUSE/)]);

      const server = await start([]);
      const pids = workersOf(await statsUntil(metricsPort, (s) => s.fleet.cluster.answering === 2, 'both workers')).map((w) => w.pid);
      // A second server on the first one's port fails as well: its workers must not join the first's listeners (SO_REUSEPORT).
      const second = spawn(process.execPath, [...NODE_FLAGS, DIST, '-E', `path.data=${dir}/second`, '-E', 'inputs.0.server.host=127.0.0.1',
        '-E', `inputs.0.server.port=${server.port}`, '-E', 'inputs.0.server.internal_port=0', '-E', 'inputs.0.server.workers=2', ...esSettings(es).flatMap((s) => ['-E', s])], { cwd: dir });
      let secondErr = '';
      second.stderr.on('data', (d: Buffer) => (secondErr += d.toString()));
      expect(await new Promise<number | null>((r) => second.once('close', (c) => r(c)))).toBe(1);
      expect(secondErr.split('\n').filter((l) => l.startsWith('fleet-server: '))).toEqual([expect.stringMatching(/address already in use/)]);
      server.child.kill('SIGKILL');
      await server.stop();
      for (let i = 0; i < 300 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
      expect(pids.filter(alive)).toEqual([]);
    });
  } finally {
    blocker.close();
  }
});

test('route limits are for the whole server: two workers together admit the burst one process would', async () => {
  await onTheDouble(async ({ dir, es, metricsPort, start }) => {
    // A burst of 2 per hour: each worker gets 1 (and a 2 h interval), so at most 2 enrollments pass in all.
    const server = await start(
      ['inputs.0.server.limits.enroll_limit.interval=1h', 'inputs.0.server.limits.enroll_limit.burst=2']);
    const token = await seedPolicy(dir, esSettings(es), server.url);
    await statsUntil(metricsPort, (s) => s.fleet.status === 'HEALTHY' && s.fleet.cluster.answering === 2, 'both workers healthy');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await new SimAgent(server.url).enroll(token)).status);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(2);
    expect(statuses.filter((s) => s !== 200).every((s) => s === 429)).toBe(true);
    const s = await stats(metricsPort);
    expect(s.http_server.routes.enroll.limit_rate).toBe(statuses.filter((x) => x === 429).length);
  });
});

test('with logging to files, the primary writes every worker\'s lines and reopens the file on SIGHUP', async () => {
  await onTheDouble(async ({ dir, metricsPort, start }) => {
    const file = join(dir, 'logs', 'fleet-server.log');
    const lines = (): Record<string, unknown>[] => (existsSync(file) ? readFileSync(file, 'utf8') : '').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const server = await start(['logging.to_files=true', `logging.files.path=${join(dir, 'logs')}`], file);
    await statsUntil(metricsPort, () => lines().filter((l) => l['message'] === 'fleet-server worker ready').length === 2, 'both workers\' lines in the file');
    expect(new Set(lines().map((l) => l['worker.slot']))).toEqual(new Set([undefined, 1, 2]));
    renameSync(file, `${file}.rotated`);
    server.child.kill('SIGHUP');
    await statsUntil(metricsPort, () => lines().some((l) => l['message'] === 'log files reopened'), 'the file reopened');
    expect(await server.stop()).toBe(0);
    // After the reopen every process's lines, the workers' last ones included, go to the new file.
    expect(lines().filter((l) => l['message'] === 'fleet-server stopped').map((l) => l['worker.slot']).sort()).toEqual([1, 2, undefined]);
  });
});
