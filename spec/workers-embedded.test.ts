// inputs.0.server.workers on the embedded store: the primary owns the database and serves it on a unix
// socket; the HTTP workers reach it through the store proxy. Polls held on every worker, policy changes
// made with the admin CLI reaching all of them, a killed worker replaced, a drain that answers every
// held poll, files through a worker, and writes a worker acknowledged surviving a SIGKILL.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { bumpPolicy } from './support/es-mode';
import { removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { freePort } from './support/ports';
import { localhostCertificate } from './support/certs';
import { AgentPool, alive, EMBEDDED_WORKER_NICE, stats, statsUntil, threadNice, workersOf, type Outcome } from './support/workers';

jest.setTimeout(120_000);

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/** Two workers on a fresh embedded store, the metrics listener on; `fn` gets them, everything is removed after. */
async function twoWorkers(overrides: string[], fn: (server: FleetServerProcess, metricsPort: number, dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  const metricsPort = await freePort();
  const server = await startFleetServer({
    dataDir: dir, readyText: 'fleet-server workers ready',
    overrides: ['inputs.0.server.workers=2', 'http.enabled=true', `http.port=${metricsPort}`, 'inputs.0.server.timeouts.checkin_jitter=0s', ...overrides],
  });
  try {
    await fn(server, metricsPort, dir);
  } finally {
    await server.stop();
    removeDir(dir);
  }
}

test('two workers on the embedded store: polls held on both, a CLI policy change reaches all, a killed worker is replaced, SIGTERM drains all', async () => {
  await twoWorkers(['inputs.0.server.timeouts.checkin_long_poll=60s'], async (server, metricsPort, dir) => {
    const url = server.url;
    const started = server.logs().find((l) => l['message'] === 'fleet-server starting');
    expect(started).toMatchObject({ workers: 2, 'workers.reason': 'configured' });
    // The workers run below the primary, the store's one writer: every thread of each.
    expect(EMBEDDED_WORKER_NICE).toBeGreaterThan(getPriority(0));
    const ready = server.logs().find((l) => l['message'] === 'fleet-server workers ready')!;
    expect(ready['workers.nice']).toEqual([EMBEDDED_WORKER_NICE, EMBEDDED_WORKER_NICE]);
    for (const pid of ready['pids'] as number[]) expect(threadNice(pid)).toEqual([EMBEDDED_WORKER_NICE]);
    expect(threadNice(server.child.pid!)).toEqual([getPriority(0)]);
    const socket = server.logs().find((l) => l['message'] === 'store served to the workers')!['store.socket'] as string;
    expect(socket).toBe(join(dir, 'fleet-server.sock'));
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    // Zero-config: the primary, owning the store, made the default policy and printed a token.
    const token = (await server.enrollmentToken());
    expect(token).toBeDefined();
    await statsUntil(metricsPort, (s) => s.fleet.status === 'HEALTHY' && s.fleet.cluster.answering === 2, 'both workers healthy');

    const pool = new AgentPool(url, token, metricsPort);
    const { agents } = pool;
    const enrollOne = (): Promise<SimAgent> => pool.enrollOne();
    for (let i = 0; i < 6; i++) await enrollOne();
    expect((await stats(metricsPort)).http_server.routes.enroll.total).toBe(6);

    const poll = (agent: SimAgent, rev: number): Promise<Outcome> => pool.poll(agent, rev);
    // Polls held on both workers.
    let { held } = await pool.holdOnEveryWorker(1);

    // A revision written by the admin CLI (another process) reaches the owner's feed, and every worker's held polls.
    const rev2 = await bumpPolicy(dir, [], url, 'two');
    expect(rev2).toBe(2);
    for (const o of await Promise.all(held)) {
      expect(o).toMatchObject({ status: 200 });
      expect((o as any).json.actions.find((a: any) => a.type === 'POLICY_CHANGE').data.policy.revision).toBe(rev2);
    }

    // Kill one worker outright: the primary (and the store it owns) carry on, a replacement starts.
    held = agents.map((a) => poll(a, rev2));
    const s2 = await statsUntil(metricsPort, (s) => s.fleet.checkin.held === agents.length, 'every poll held again');
    const victim = workersOf(s2).find((w) => w.checkin.held > 0)!;
    process.kill(victim.pid, 'SIGKILL');
    const s3 = await statsUntil(metricsPort, (s) => s.fleet.cluster.restarts === 1 && s.fleet.cluster.answering === 2
      && s.fleet.status === 'HEALTHY', 'a replacement worker');
    expect(workersOf(s3).map((w) => w.pid)).not.toContain(victim.pid);
    for (const w of workersOf(s3)) expect(threadNice(w.pid)).toEqual([EMBEDDED_WORKER_NICE]);
    const cut: SimAgent[] = [];
    await Promise.all(held.map(async (p, i) => {
      const o = await Promise.race([p, statsUntil(metricsPort, () => true, '').then(() => undefined)]);
      if (o && 'error' in o) cut.push(agents[i]!);
    }));
    expect(cut).toHaveLength(victim.checkin.held);
    // Their agents are served again (by the survivor or the replacement), and the next revision reaches everyone.
    held = [...held.filter((_, i) => !cut.includes(agents[i]!)), ...cut.map((a) => poll(a, rev2))];
    await statsUntil(metricsPort, (s) => s.fleet.checkin.held === agents.length, 'every poll held after the restart');
    const rev3 = await bumpPolicy(dir, [], url, 'three');
    for (const o of await Promise.all(held)) {
      expect(o).toMatchObject({ status: 200 });
      expect((o as any).json.actions.find((a: any) => a.type === 'POLICY_CHANGE').data.policy.revision).toBe(rev3);
    }
    // A new agent enrolls through whichever worker takes it.
    await enrollOne();
    held = agents.map((a) => poll(a, rev3));
    await statsUntil(metricsPort, (s) => s.fleet.checkin.held === agents.length, 'every poll held before the stop');

    // SIGTERM: the workers drain (their bookkeeping goes through the store), then the primary closes it; exit 0.
    const code = await server.stop(60_000);
    expect(code).toBe(0);
    for (const o of await Promise.all(held)) expect(o).toMatchObject({ status: 200 });
    const stopped = server.logs().filter((l) => l['message'] === 'fleet-server stopped');
    expect(stopped).toHaveLength(3);
    // Every listener was closed before any worker answered its polls (the primary's word, not the 1 s wait).
    expect(stopped.filter((l) => l['worker.slot'] !== undefined).map((l) => l['stop.others_closed'])).toEqual([true, true]);
    // The check-ins' bookkeeping went through the store before it closed: every agent is listed as seen.
    const listed = new Map((await cli(dir, ['agents', 'list']) as any[]).map((a) => [a._id, a]));
    for (const a of agents) expect(listed.get(a.id)).toMatchObject({ last_checkin: expect.any(String) });
  });
});

test('files through the workers: an upload in chunks (a refused one too) and a delivered download', async () => {
  await twoWorkers([], async (server, metricsPort, dir) => {
    await statsUntil(metricsPort, (s) => s.fleet.cluster.answering === 2, 'both workers');
    const agent = new SimAgent(server.url);
    expect((await agent.enroll((await server.enrollmentToken()))).status).toBe(200);

    const CHUNK = 4 * MiB;
    const data = randomBytes(CHUNK + 12345);
    const begin = await agent.uploadBegin({
      action_id: 'action-1', agent_id: agent.id, src: 'agent',
      file: { name: 'bundle.zip', mime_type: 'application/zip', size: data.length, hash: { sha256: sha256(data) } },
    });
    expect(begin.status).toBe(200);
    const id = begin.json.upload_id as string;
    const parts = [data.subarray(0, CHUNK), data.subarray(CHUNK)];
    // A body longer than the chunk is refused by the edge while it streams to the store: the edge's own 400.
    const longer = Buffer.concat([parts[1]!, Buffer.from('!')]);
    const refused = await agent.uploadChunk(id, 1, longer, sha256(longer));
    expect({ status: refused.status, error: refused.json?.error }).toEqual({ status: 400, error: 'BadRequest' });
    for (const [n, p] of parts.entries()) expect((await agent.uploadChunk(id, n, p, sha256(p))).status).toBe(200);
    const transit = sha256(Buffer.concat(parts.map((p) => Buffer.from(sha256(p), 'hex'))));
    expect((await agent.uploadComplete(id, transit)).status).toBe(200);
    const out = join(dir, 'bundle.zip');
    await cli(dir, ['uploads', 'get', id, '-o', out]);
    expect(sha256(readFileSync(out))).toBe(sha256(data));

    const tool = randomBytes(5 * MiB + 7);
    writeFileSync(join(dir, 'tool.bin'), tool);
    const put = await cli(dir, ['files', 'put', join(dir, 'tool.bin'), '--agents', agent.id]);
    // Each request is a new connection, dealt in turn: both workers serve the file.
    for (let i = 0; i < 2; i++) {
      const whole = await agent.getFile(put.id as string);
      expect(whole.status).toBe(200);
      expect(sha256(whole.body)).toBe(sha256(tool));
    }
    const range = await agent.getFile(put.id as string, { Range: `bytes=${CHUNK - 2}-${CHUNK + 1}` });
    expect(range.body).toEqual(tool.subarray(CHUNK - 2, CHUNK + 2));
    expect((await agent.getFile('no-such-file')).status).toBe(404);
  });
});

test('writes a worker acknowledged survive a SIGKILL of the whole server', async () => {
  await twoWorkers([], async (server, metricsPort, dir) => {
    const pids = workersOf(await statsUntil(metricsPort, (s) => s.fleet.cluster.answering === 2, 'both workers')).map((w) => w.pid);
    const agents: SimAgent[] = [];
    for (let i = 0; i < 4; i++) {
      const a = new SimAgent(server.url);
      expect((await a.enroll((await server.enrollmentToken()))).status).toBe(200);
      agents.push(a);
    }
    server.child.kill('SIGKILL');
    await server.stop();
    for (let i = 0; i < 300 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    expect(pids.filter(alive)).toEqual([]);
    for (const a of agents) expect((await cli(dir, ['agents', 'show', a.id]))).toMatchObject({ _id: a.id, active: true });

    // Started again on the same directory (the killed primary's socket file is still there): the agents check in.
    const again = await startFleetServer({ dataDir: dir, readyText: 'fleet-server workers ready', overrides: ['inputs.0.server.workers=2'] });
    try {
      for (const a of agents) {
        const same = Object.assign(new SimAgent(again.url), { id: a.id, apiKey: a.apiKey });
        expect((await same.checkin()).status).toBe(200);
      }
    } finally {
      expect(await again.stop()).toBe(0);
    }
  });
});

test.each(['plain HTTP', 'TLS'])('a full worker hands new connections to the other (%s): max_connections holds for the whole server however the kernel deals them', async (kind) => {
  // 1/2 of 200 each. The kernel deals connections by a hash of their addresses; without handoffs, 200
  // busy connections split exactly 100/100 only one time in eighteen, and the worker over 100 answers 429.
  // Over TLS the bare TCP connection is handed over before its handshake.
  const certDir = tempDir();
  const cert = kind === 'TLS' ? localhostCertificate(certDir) : undefined;
  const overrides = ['inputs.0.server.limits.max_connections=200', 'inputs.0.server.limits.enroll_limit.interval=0', 'inputs.0.server.limits.enroll_limit.max=0',
    'inputs.0.server.timeouts.read=60s',
    ...(cert ? ['inputs.0.server.ssl.enabled=true', `inputs.0.server.ssl.certificate=${cert.certPath}`, `inputs.0.server.ssl.key=${cert.keyPath}`] : [])];
  await twoWorkers(overrides, async (server, metricsPort) => {
    await statsUntil(metricsPort, (s) => s.fleet.cluster.answering === 2, 'both workers answering');
    const port = Number(new URL(server.url).port);
    const token = await server.enrollmentToken();
    const received: string[] = [];
    const sockets: net.Socket[] = [];
    /** A connection with `text` written once connected (after the handshake over TLS); what comes back accumulates in `received`. */
    const open = (text: string): Promise<number> => new Promise((resolve, reject) => {
      const i = sockets.length;
      received[i] = '';
      const connected = (): void => {
        s.write(text);
        resolve(i);
      };
      const s = cert ? tls.connect({ host: '127.0.0.1', port, ca: cert.ca, servername: 'localhost' }, connected) : net.connect({ host: '127.0.0.1', port }, connected);
      s.on('data', (d) => (received[i] += d.toString()));
      s.on('error', reject);
      sockets.push(s);
    });
    // Busy connections: an enrollment whose body is still arriving (the request is in flight until it has).
    const busy = `POST /api/fleet/agents/enroll HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Elastic Agent 9.6.0\r\nAuthorization: ApiKey ${token}\r\n`
      + 'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"type":';
    try {
      // In steps, each in flight before the next, with time for the workers' room reports (every 0.5 s).
      for (let n = 20; n <= 200; n += 20) {
        await Promise.all(Array.from({ length: 20 }, () => open(busy)));
        await statsUntil(metricsPort, (s) => s.fleet.http.in_flight === n || received.some((r) => r !== ''), `${n} in flight`);
        await new Promise((r) => setTimeout(r, 600));
      }
      const s = await stats(metricsPort);
      expect(received.filter((r) => r !== '')).toEqual([]);
      expect(s.fleet.http.in_flight).toBe(200);
      expect(s.fleet.http.admission.turned_away).toBe(0);
      expect(s.fleet.http.admission.handed_off).toBe(s.fleet.http.admission.adopted);
      expect(workersOf(s).map((w: any) => w.http.connections)).toEqual([100, 100]);
      // The server is full: one more is answered 429 MaxConnections, by whichever worker takes it.
      const over = await open('GET /api/status HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Elastic Agent 9.6.0\r\n\r\n');
      await statsUntil(metricsPort, () => received[over] !== '', 'the answer over the limit');
      expect(received[over]).toMatch(/^HTTP\/1\.1 429 [^]*"error":"MaxConnections"/);
    } finally {
      for (const s of sockets) s.destroy();
      removeDir(certDir);
    }
  });
});
