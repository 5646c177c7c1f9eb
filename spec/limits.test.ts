// Over a limit the client gets 429 with Retry-After, never a reset connection.
import { buildConfig } from '../src/config/config';
import { SimAgent } from './support/agent';
import { removeDir, startFleetServer, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';

test('enroll rate limit → 429 RateLimit with Retry-After', async () => {
  const server = await startFleetServer({ overrides: ['inputs.0.server.limits.enroll_limit.interval=10s', 'inputs.0.server.limits.enroll_limit.burst=1'] });
  try {
    const token = (await server.enrollmentToken());
    expect((await new SimAgent(server.url).enroll(token)).status).toBe(200);
    const res = await new SimAgent(server.url).enroll(token);
    expect(res.status).toBe(429);
    expect(res.json).toEqual({ statusCode: 429, error: 'RateLimit', message: 'exceeded the rate limit' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});

async function twoAgentsOnPolicy(server: FleetServerProcess): Promise<SimAgent[]> {
  const agents = [new SimAgent(server.url), new SimAgent(server.url)];
  for (const a of agents) {
    await a.enroll((await server.enrollmentToken()));
    await a.checkin(); // takes the POLICY_CHANGE; reporting the revision next time makes the poll hold
  }
  return agents;
}
const onPolicy = { agent_policy_id: 'default-policy', policy_revision_idx: 1 };
const heldPoll = ['inputs.0.server.timeouts.checkin_long_poll=3s', 'inputs.0.server.timeouts.checkin_jitter=0s'];

test('concurrent check-ins over checkin_limit.max → 429 MaxLimit', async () => {
  const server = await startFleetServer({ overrides: ['inputs.0.server.limits.checkin_limit.max=1', ...heldPoll] });
  try {
    const [a, b] = await twoAgentsOnPolicy(server);
    const held = a!.checkin(onPolicy);
    await new Promise((r) => setTimeout(r, 200));
    const refused = await b!.checkin(onPolicy);
    expect(refused.status).toBe(429);
    expect(refused.json).toEqual({ statusCode: 429, error: 'MaxLimit', message: 'exceeded the max limit' });
    expect(refused.headers['retry-after']).toBeDefined();
    expect((await held).status).toBe(200);
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});

test('requests over max_connections → 429 in the error shape with Retry-After', async () => {
  const server = await startFleetServer({ overrides: ['inputs.0.server.limits.max_connections=2', ...heldPoll] });
  try {
    const [a, b] = await twoAgentsOnPolicy(server);
    const held = [a!.checkin(onPolicy), b!.checkin(onPolicy)];
    await new Promise((r) => setTimeout(r, 200));
    const over = await request(`${server.url}/api/status`);
    expect(over.status).toBe(429);
    expect(over.json).toEqual({ statusCode: 429, error: 'MaxConnections', message: 'Server capacity exceeded.' });
    expect(over.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(Number(over.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    for (const h of await Promise.all(held)) expect(h.status).toBe(200);
    expect((await request(`${server.url}/api/status`)).status).toBe(200);
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});

/** The limits a configuration resolves to, with a fixed profile (lte0500: enroll 10ms/10/20, 1,500 connections). */
function limitsOf(limits: Record<string, unknown>): ReturnType<typeof buildConfig>['server']['limits'] {
  return buildConfig({ inputs: [{ type: 'fleet-server', server: { limits: { max_agents: 100, ...limits } } }] }).server.limits;
}

test('a limit field set to 0 turns that part off; a field left out keeps the profile', () => {
  const profile = limitsOf({}).routes.enroll;
  expect(profile).toMatchObject({ intervalMs: 10, burst: 10, max: 20 });
  expect(limitsOf({ enroll_limit: { max: 0 } }).routes.enroll).toMatchObject({ intervalMs: 10, burst: 10, max: 0 });
  expect(limitsOf({ enroll_limit: { interval: 0 } }).routes.enroll).toMatchObject({ intervalMs: 0, burst: 10, max: 20 });
  expect(limitsOf({ enroll_limit: { burst: 0 } }).routes.enroll).toMatchObject({ intervalMs: 10, burst: 0, max: 20 });
  expect(limitsOf({ enroll_limit: { max: 7 } }).routes.enroll).toMatchObject({ intervalMs: 10, burst: 10, max: 7 });
  expect(limitsOf({}).maxConnections).toBe(1500);
  expect(limitsOf({ max_connections: 0 }).maxConnections).toBe(0);
  // Body sizes keep upstream's rule: 0 is the default.
  expect(limitsOf({ enroll_limit: { max_body_byte_size: 0 } }).routes.enroll.maxBody).toBe(512 * 1024);
});

test('enroll_limit.burst=0 turns the rate limit off (the profile allows 10 per hour here)', async () => {
  const server = await startFleetServer({ overrides: [
    'inputs.0.server.limits.max_agents=100', 'inputs.0.server.limits.enroll_limit.interval=1h', 'inputs.0.server.limits.enroll_limit.burst=0',
  ] });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await new SimAgent(server.url).enroll((await server.enrollmentToken()))).status);
    expect(statuses).toEqual(new Array(12).fill(200));
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});
