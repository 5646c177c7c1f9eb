// Agent mode against the bundled program under a fake Elastic Agent (mTLS, SNI, the agent's stream
// rules), on the Elasticsearch double: bootstrap → DEGRADED with an enrollment token → the agent enrolls
// through the internal port → HEALTHY → a policy change keeps held check-ins → bad output → FAILED →
// recovery → units STOPPED → SIGTERM. Plus reconnects, unit types, diagnostics and heartbeats.
import { writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { proto } from '../src/control/generated/control';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { EsDouble } from './support/es-double/server';
import { esSettings } from './support/es-mode';
import { FakeAgent, fleetServerUnits, withAgentEnv, type FakeUnit } from './support/fake-agent';
import { removeDir, tempDir } from './support/fleet-server';
import { request, type Response } from './support/http';
import { freePort } from './support/ports';

jest.setTimeout(120_000);

const S = proto.State;
const POLICY = 'fleet-server-policy';
const RUNNING = `Running on policy with Fleet Server integration: ${POLICY}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(what: string, pred: () => boolean, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !pred(); await sleep(50)) if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
}
/** The same value with every object's keys in reverse order. */
const reorder = <T>(v: T): T => (v === null || typeof v !== 'object' || Array.isArray(v) ? v
  : Object.fromEntries(Object.entries(v as Record<string, unknown>).reverse().map(([k, x]) => [k, reorder(x)])) as T);
const both = (state: proto.State, message?: string | RegExp) => (o: { units: { state: proto.State; message: string }[] }): boolean =>
  o.units.length === 2 && o.units.every((u) => u.state === state && (message === undefined || (typeof message === 'string' ? u.message === message : message.test(u.message))));

/** A Fleet Server policy (with the fleet-server input) and an enrollment token, as Kibana makes them. */
async function seedFleetServerPolicy(dir: string, es: EsDouble, revision = 1): Promise<string | undefined> {
  const file = join(dir, `fs-policy-${revision}.yml`);
  writeFileSync(file, [`id: ${POLICY}`, 'default_fleet_server: true', 'outputs:', '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
    `inputs: [{id: fleet-server, type: fleet-server, revision: ${revision}}]`, 'agent: {monitoring: {enabled: false}}'].join('\n'));
  await cli(dir, ['policy', 'put', file], esSettings(es));
  if (revision > 1) return undefined;
  return (await cli(dir, ['enrollment-token', 'create', '--policy', POLICY], esSettings(es))).api_key as string;
}

/** A newly enrolled agent whose next check-in (at `revision`) is held; `answered()` tells whether it came back. */
async function holdCheckin(port: number, token: string, revision: number): Promise<{ held: Promise<Response>; answered: () => boolean }> {
  const agent = new SimAgent(`http://127.0.0.1:${port}`);
  expect((await agent.enroll(token)).status).toBe(200);
  expect((await agent.checkin()).json.actions[0].type).toBe('POLICY_CHANGE');
  let answered = false;
  const held = agent.checkin({ agent_policy_id: POLICY, policy_revision_idx: revision }, { timeoutMs: 60_000 }).finally(() => (answered = true));
  await sleep(500);
  return { held, answered: () => answered };
}

describe('agent mode lifecycle', () => {
  const dir = tempDir();
  let es: EsDouble;
  const fake = new FakeAgent();
  let port: number;
  let internalPort: number;
  let units: FakeUnit[];
  /** Shown once, at creation: token lists give a prefix only. */
  let seededToken: string;

  beforeAll(async () => {
    es = await new EsDouble().start();
    seededToken = (await seedFleetServerPolicy(dir, es))!;
    port = await freePort();
    internalPort = await freePort();
    await fake.start();
  });

  afterAll(async () => {
    await fake.stop();
    await es.stop();
    removeDir(dir);
  });

  test('bootstrap: no agent id yet → DEGRADED with the enrollment token, served on the internal port', async () => {
    units = fleetServerUnits({ policyId: POLICY, esHosts: [es.url], serviceToken: es.serviceToken, port, internalPort, bootstrap: true });
    fake.units = units;
    fake.spawn(dir);
    const first = await fake.waitObserved('the first check-in', () => true, 10_000);
    expect(fake.observed[0]!.versionInfo?.name).toBe('fleet-server');
    expect(first).toBeDefined();
    const degraded = await fake.waitObserved('DEGRADED', both(S.DEGRADED, `${RUNNING}; missing config fleet.agent.id (expected during bootstrap process)`));
    const token = degraded.units[0]!.payload?.['enrollment_token'];
    expect(typeof token).toBe('string');
    expect(degraded.units.every((u) => u.configIdx === 1)).toBe(true);
    const status = await request(`http://localhost:${internalPort}/api/status`);
    expect(status.status).toBe(503);
    expect(status.json.status).toBe('DEGRADED');
    // The agent enrolls itself through the internal listener with that token.
    const self = new SimAgent(`http://localhost:${internalPort}`);
    expect((await self.enroll(token as string)).status).toBe(200);
    fake.agentInfo = { ...fake.agentInfo, id: self.id };
    fake.send();
    await fake.waitObserved('HEALTHY', both(S.HEALTHY, RUNNING));
    expect((await request(`http://127.0.0.1:${port}/api/status`)).status).toBe(200);
    expect(fake.errors).toEqual([]);
  });

  test('a policy change (input unit idx 2): CONFIGURING, then HEALTHY, and held check-ins stay held', async () => {
    const token = seededToken;
    const { held, answered } = await holdCheckin(port, token, 1);
    const before = fake.observed.length;
    units[0]!.configIdx = 2;
    units[0]!.config = { ...units[0]!.config, revision: 2 };
    fake.send();
    await fake.waitObserved('HEALTHY on idx 2', (o) => both(S.HEALTHY, RUNNING)(o) && o.units.some((u) => u.type === proto.UnitType.INPUT && u.configIdx === 2));
    expect(fake.observed.slice(before).some(both(S.CONFIGURING, 'Re-configuring'))).toBe(true);
    expect(answered()).toBe(false);
    // The poll held across the reconfiguration receives the next revision.
    await seedFleetServerPolicy(dir, es, 2);
    const res = await held;
    expect(res.status).toBe(200);
    expect(res.json.actions[0].id).toBe(`policy:${POLICY}:2`);
  });

  test('a log-level change is applied in place: the held check-in stays held and debug lines appear', async () => {
    const token = seededToken;
    const { held, answered } = await holdCheckin(port, token, 2);
    const before = fake.observed.length;
    const debugBefore = (fake.stderr.match(/"log.level":"debug"/g) ?? []).length;
    for (const u of units) u.logLevel = proto.UnitLogLevel.INFO;
    units[0]!.logLevel = proto.UnitLogLevel.DEBUG;
    fake.send();
    await fake.waitObserved('HEALTHY after the log-level change', (o) => fake.observed.indexOf(o) > before && both(S.HEALTHY, RUNNING)(o));
    expect(fake.observed.slice(before).some(both(S.CONFIGURING, 'Re-configuring'))).toBe(true);
    expect(answered()).toBe(false);
    await seedFleetServerPolicy(dir, es, 3);
    expect((await held).json.actions[0].id).toBe(`policy:${POLICY}:3`);
    expect((fake.stderr.match(/"log.level":"debug"/g) ?? []).length).toBeGreaterThan(debugBefore);
  });

  test('a revision that re-sends the same input with its keys in another order keeps the listeners; a real change restarts them', async () => {
    const token = seededToken;
    const { held, answered } = await holdCheckin(port, token, 3);
    const listening = (): number => (fake.stderr.match(/"message":"fleet-server listening"/g) ?? []).length;
    const started = listening();
    // As Elastic Agent does on each revision of the Fleet Server policy: the next idx and revision, the
    // same settings, keys (nested ones too) in another order.
    for (const idx of [3, 4, 5]) {
      const before = fake.observed.length;
      units[0]!.configIdx = idx;
      units[0]!.config = reorder({ ...units[0]!.config, revision: idx });
      fake.send();
      await fake.waitObserved(`HEALTHY on idx ${idx}`, (o) => fake.observed.indexOf(o) >= before && both(S.HEALTHY, RUNNING)(o)
        && o.units.some((u) => u.type === proto.UnitType.INPUT && u.configIdx === idx));
      expect(fake.observed.slice(before).some((o) => o.units.some((u) => u.state === S.STARTING))).toBe(false);
    }
    expect(listening()).toBe(started);
    expect(answered()).toBe(false);
    await seedFleetServerPolicy(dir, es, 4);
    expect((await held).json.actions[0].id).toBe(`policy:${POLICY}:4`);

    // A setting the server uses does restart it.
    const before = fake.observed.length;
    units[0]!.configIdx = 6;
    units[0]!.config = { ...units[0]!.config, revision: 6, cache: { ttl_api_key: '10m' } };
    fake.send();
    await fake.waitObserved('HEALTHY on idx 6', (o) => fake.observed.indexOf(o) >= before && both(S.HEALTHY, RUNNING)(o)
      && o.units.some((u) => u.type === proto.UnitType.INPUT && u.configIdx === 6));
    await until('the listeners restarted', () => listening() === started + 1);
  });

  test('a bad output: FAILED with the reason, then recovery when the output is fixed', async () => {
    units[1]!.configIdx = 2;
    units[1]!.config = { id: 'default', type: 'elasticsearch', hosts: ['http://127.0.0.1:1'], service_token: es.serviceToken };
    fake.send();
    const failed = await fake.waitObserved('FAILED', both(S.FAILED, /^Error - /));
    expect(failed.units[0]!.message).toMatch(/connect|ECONNREFUSED/i);
    units[1]!.configIdx = 3;
    units[1]!.config = { id: 'default', type: 'elasticsearch', hosts: [es.url], service_token: es.serviceToken };
    fake.send();
    await fake.waitObserved('HEALTHY again', (o) => both(S.HEALTHY, RUNNING)(o) && o.units.some((u) => u.type === proto.UnitType.OUTPUT && u.configIdx === 3));
  });

  test('units STOPPED: the server stops, both units report STOPPED, the process stays; SIGTERM exits 0', async () => {
    for (const u of units) u.state = S.STOPPED;
    fake.send();
    await fake.waitObserved('units removed after STOPPED', (o) => o.units.length === 0);
    expect(fake.observed.some(both(S.STOPPED, 'Stopped'))).toBe(true);
    expect(fake.child!.exitCode).toBeNull();
    await expect(request(`http://127.0.0.1:${port}/api/status`)).rejects.toThrow();
    const t0 = Date.now();
    fake.child!.kill('SIGTERM');
    expect(await fake.exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(25_000);
  });
});

describe('agent mode protocol behaviour', () => {
  const dir = tempDir();
  let es: EsDouble;
  const fake = new FakeAgent();
  let port: number;

  let token: string;

  beforeAll(async () => {
    es = await new EsDouble().start();
    token = (await seedFleetServerPolicy(dir, es))!;
    port = await freePort();
    await fake.start();
    fake.agentInfo = { ...fake.agentInfo, id: 'host-agent-1' };
    fake.units = fleetServerUnits({ policyId: POLICY, esHosts: [es.url], serviceToken: es.serviceToken, port, internalPort: await freePort() });
    // The monitoring settings the real agent appends when agent monitoring is on.
    fake.spawn(dir, ['-E', 'http.enabled=true', '-E', `http.host=unix://${join(dir, 'metrics.sock')}`]);
    await fake.waitObserved('HEALTHY', both(S.HEALTHY, RUNNING));
  });

  test('metrics are served on the unix socket the agent names', async () => {
    const stats = await new Promise<Record<string, any>>((resolve, reject) => {
      const req = httpRequest({ socketPath: join(dir, 'metrics.sock'), path: '/stats' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(JSON.parse(body) as Record<string, any>));
      });
      req.on('error', reject);
      req.end();
    });
    expect(stats['fleet'].status).toBe('HEALTHY');
    expect(stats['beat'].memstats.rss).toBeGreaterThan(0);
  });

  test('SIGHUP is logged and changes nothing: the held check-in stays held, the listeners stay up', async () => {
    const { held, answered } = await holdCheckin(port, token, 1);
    const listening = (fake.stderr.match(/"message":"fleet-server listening"/g) ?? []).length;
    fake.child!.kill('SIGHUP');
    await until('the SIGHUP log line', () => fake.stderr.includes('"signal":"SIGHUP"'));
    await sleep(500);
    expect(fake.child!.exitCode).toBeNull();
    expect(answered()).toBe(false);
    expect((fake.stderr.match(/"message":"fleet-server listening"/g) ?? []).length).toBe(listening);
    await seedFleetServerPolicy(dir, es, 2);
    expect((await held).json.actions[0].id).toBe(`policy:${POLICY}:2`);
  });

  afterAll(async () => {
    await fake.stop();
    await es.stop();
    removeDir(dir);
  });

  test('a dropped CheckinV2 stream is reopened; version info is sent again and unit state is kept', async () => {
    const before = fake.observed.length;
    fake.dropCheckin();
    const again = await fake.waitObserved('a new stream', (o) => !!o.versionInfo && fake.observed.indexOf(o) >= before, 15_000);
    expect(again.units.map((u) => [u.state, u.configIdx])).toEqual([[S.HEALTHY, 1], [S.HEALTHY, 1]]);
  });

  test('chunked expected messages are reassembled; unit and global idx values are echoed', async () => {
    const input = fake.units.find((u) => u.type === proto.UnitType.INPUT)!;
    input.configIdx = 2;
    input.config = { ...input.config, revision: 2 };
    fake.sendChunked();
    const o = await fake.waitObserved('idx 2 adopted', (x) => both(S.HEALTHY, RUNNING)(x) && x.units.some((u) => u.id === input.id && u.configIdx === 2));
    expect([o.featuresIdx, o.componentIdx]).toEqual([2, 2]);
  });

  test('diagnostics: the redacted configuration and TLS facts; custom and unknown actions fail', async () => {
    const diag = await fake.action({ type: proto.ActionRequest.Type.DIAGNOSTICS, level: proto.ActionRequest.Level.COMPONENT, params: Buffer.from('{}') });
    expect(diag.status).toBe(proto.ActionResponse.Status.SUCCESS);
    expect(diag.diagnostic.map((d) => d.filename)).toEqual(['fleet-server.yml', 'fleet-server-api-tls.txt', 'fleet-server-output-tls.txt']);
    const yml = Buffer.from(diag.diagnostic[0]!.content!).toString();
    expect(yml).toContain('[REDACTED]');
    expect(yml).not.toContain(es.serviceToken);
    const conn = await fake.action({ type: proto.ActionRequest.Type.DIAGNOSTICS, level: proto.ActionRequest.Level.ALL, params: Buffer.from('{"additional_metrics":["CONN"]}') });
    expect(Buffer.from(conn.diagnostic.find((d) => d.filename === 'fleet-server-output-request.txt')!.content!).toString()).toMatch(/GET \/ → Elasticsearch 9\.6\.0/);
    const custom = await fake.action({ type: proto.ActionRequest.Type.CUSTOM, name: 'nope', unitId: 'fleet-server-default', unitType: proto.UnitType.OUTPUT, params: Buffer.from('{}') });
    expect(custom.status).toBe(proto.ActionResponse.Status.FAILED);
    expect(JSON.parse(Buffer.from(custom.result).toString())).toEqual({ error: 'action undefined' });
    const unknown = await fake.action({ type: 7 as proto.ActionRequest.Type, params: Buffer.from('{}') });
    expect(JSON.parse(Buffer.from(unknown.result).toString())).toEqual({ error: 'action type unknown' });
  });

  test('an unsupported unit type is FAILED with upstream\'s message', async () => {
    const bad: FakeUnit = { id: 'logs-default-logfile', type: proto.UnitType.INPUT, state: S.HEALTHY, configIdx: 1, logLevel: proto.UnitLogLevel.INFO, config: { id: 'logfile', type: 'logfile' } };
    fake.units = [...fake.units, bad];
    fake.send();
    const o = await fake.waitObserved('FAILED unit', (x) => x.units.some((u) => u.id === bad.id && u.state === S.FAILED));
    expect(o.units.find((u) => u.id === bad.id)!.message).toBe('logfile is an unsupported input type');
    fake.units = fake.units.filter((u) => u !== bad);
    fake.send();
    await fake.waitObserved('the bad unit gone', (x) => x.units.length === 2);
  });

  test('with nothing changing, an observed message still goes out at least every 25 s', async () => {
    const from = fake.observed.length;
    await sleep(26_000);
    const later = fake.observed.slice(from);
    expect(later.length).toBeGreaterThanOrEqual(1);
    expect(later.every(both(S.HEALTHY, RUNNING))).toBe(true);
  }, 60_000);
});

test('waiting states: a missing output unit, then a policy that does not exist yet', () => withAgentEnv(async ({ dir, es, fake }) => {
  fake.agentInfo = { ...fake.agentInfo, id: 'host-agent-3' };
  const [input, output] = fleetServerUnits({ policyId: 'not-yet', esHosts: [es.url], serviceToken: es.serviceToken, port: await freePort(), internalPort: await freePort() });
  fake.units = [input!];
  fake.spawn(dir);
  const alone = await fake.waitObserved('waiting for output', (o) => o.units.length === 1 && o.units[0]!.message === 'waiting for output unit');
  expect(alone.units[0]!.state).toBe(S.STARTING);
  fake.units = [input!, output!];
  fake.send();
  await fake.waitObserved('waiting on the policy', both(S.STARTING, 'Waiting on policy with Fleet Server integration: not-yet'));
}));

test('a port in use: FAILED with the reason, retried on a timer (not per expected message), HEALTHY once the port is free', () => withAgentEnv(async ({ dir, es, fake }) => {
  await seedFleetServerPolicy(dir, es);
  fake.agentInfo = { ...fake.agentInfo, id: 'host-agent-4' };
  const port = await freePort();
  const blocker = createHttpServer();
  await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
  fake.units = fleetServerUnits({ policyId: POLICY, esHosts: [es.url], serviceToken: es.serviceToken, port, internalPort: await freePort() });
  fake.spawn(dir);
  await fake.waitObserved('FAILED on the taken port', both(S.FAILED, /^Error - listen EADDRINUSE/));
  // The agent answers every observed message while FAILED; the restarts still wait 2 s, then 4 s.
  await sleep(3000);
  const failures = (fake.stderr.match(/the server failed to start; retrying/g) ?? []).length;
  expect(failures).toBeGreaterThanOrEqual(1);
  expect(failures).toBeLessThanOrEqual(3);
  await new Promise((r) => blocker.close(r));
  // No new policy: the restart timer alone brings the server up.
  await fake.waitObserved('HEALTHY once the port is free', both(S.HEALTHY, RUNNING), 30_000);
  expect(await request(`http://127.0.0.1:${port}/api/status`)).toMatchObject({ status: 200 });
}));

test('a component that stops checking in is killed after three missed check-in ticks', () => withAgentEnv(async ({ dir, es, fake }) => {
  fake.tickMs = 1000;
  fake.agentInfo = { ...fake.agentInfo, id: 'host-agent-2' };
  fake.units = fleetServerUnits({ policyId: POLICY, esHosts: [es.url], serviceToken: es.serviceToken, port: await freePort(), internalPort: await freePort() });
  const child = fake.spawn(dir);
  await fake.waitObserved('a first check-in', () => true, 10_000);
  child.kill('SIGSTOP');
  expect(await fake.exit).toEqual({ code: null, signal: 'SIGKILL' });
  expect(fake.errors).toContain('missed 3 check-ins; killing');
}));
