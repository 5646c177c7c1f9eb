// The metrics listener as Elastic Agent, Kibana and Prometheus read it: upstream's /stats shape and
// /metrics names and types (parsed with a Prometheus text-format parser), counters that move with the
// requests, and the process metrics also under beat.* where the agent's monitoring copies them from.
import { readFileSync } from 'node:fs';
import parsePrometheus from 'parse-prometheus-text-format';
import { SimAgent } from './support/agent';
import { freePort } from './support/ports';
import { removeDir, startFleetServer, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';
import { freshStats } from './support/stats';

const ROUTES = ['checkin', 'enroll', 'artifacts', 'acks', 'status', 'opAMP', 'uploadStart', 'uploadChunk', 'uploadEnd', 'deliverFile', 'getPGPKey', 'auditUnenroll'];
const COUNTERS = ['active', 'total', 'limit_rate', 'limit_max', 'fail', 'drop', 'body_in', 'body_out'];

let server: FleetServerProcess;
let metricsUrl: string;

beforeAll(async () => {
  const port = await freePort();
  server = await startFleetServer({ overrides: [
    'http.enabled=true', `http.port=${port}`, 'http.host=127.0.0.1',
    'inputs.0.server.timeouts.checkin_long_poll=2s', 'inputs.0.server.timeouts.checkin_jitter=0s',
    'inputs.0.server.limits.enroll_limit.interval=1h', 'inputs.0.server.limits.enroll_limit.burst=2',
  ] });
  metricsUrl = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  expect(await server.stop()).toBe(0);
  removeDir(server.dataDir);
});

const stats = (): Promise<any> => freshStats(`${metricsUrl}/stats`);

test('/stats: upstream http_server shape; route counters move with requests, limiter refusals and failures', async () => {
  const before = (await stats()).http_server;
  const agent = new SimAgent(server.url);
  expect((await agent.enroll((await server.enrollmentToken()))).status).toBe(200);
  expect((await agent.checkin()).status).toBe(200);
  expect((await new SimAgent(server.url).enroll((await server.enrollmentToken()))).status).toBe(200);
  // The burst of 2 is spent: refused by the rate limiter, whatever the token.
  expect((await new SimAgent(server.url).enroll((await server.enrollmentToken()))).status).toBe(429);
  expect((await new SimAgent(server.url).enroll('bm9wZTpub3Bl')).status).toBe(429);
  // A request that fails after taking its slot: an ack with a body that is not JSON.
  const bad = await request(`${server.url}/api/fleet/agents/${agent.id}/acks`, { method: 'POST', headers: agent.headers(), body: '{"events":' });
  expect(bad.status).toBe(400);
  const after = (await stats()).http_server;

  expect(Object.keys(after.routes).sort()).toEqual([...ROUTES].sort());
  for (const r of ROUTES) for (const k of COUNTERS) expect(typeof after.routes[r][k]).toBe('number');
  expect(after.routes.artifacts).toEqual(expect.objectContaining({ not_found: 0, throttle: 0 }));
  const d = (r: string, k: string): number => after.routes[r][k] - before.routes[r][k];
  expect(d('enroll', 'total')).toBe(4);
  expect(d('enroll', 'limit_rate')).toBe(2);
  expect(d('enroll', 'fail')).toBe(0);
  expect(d('acks', 'total')).toBe(1);
  expect(d('acks', 'fail')).toBe(1);
  expect(d('enroll', 'body_in')).toBeGreaterThan(100);
  expect(d('enroll', 'body_out')).toBeGreaterThan(100);
  expect(d('checkin', 'total')).toBe(1);
  expect(d('checkin', 'body_in')).toBeGreaterThan(10);
  expect(d('checkin', 'body_out')).toBeGreaterThan(100);
  expect(after.routes.enroll.active).toBe(0);

  // A held check-in is active for as long as it is held.
  const held = agent.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 1 });
  const deadline = Date.now() + 5000;
  while ((await stats()).http_server.routes.checkin.active < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect((await stats()).http_server.routes.checkin.active).toBe(1);
  expect((await held).status).toBe(200);
  expect((await stats()).http_server.routes.checkin.active).toBe(0);
  expect(after.tcp_open - before.tcp_open).toBeGreaterThanOrEqual(5);
  expect(after.tcp_active).toBe(after.tcp_open - after.tcp_close);

  expect(after.memstats).toEqual(expect.objectContaining({ memory_total: expect.any(Number), memory_alloc: expect.any(Number),
    memory_sys: expect.any(Number), gc_next: expect.any(Number), rss: expect.any(Number) }));
  expect(after.cpu.total.value).toBeGreaterThan(0);
  expect(after.cpu.user.time.ms).toEqual(expect.any(Number));
  expect(after.info).toEqual(expect.objectContaining({ name: 'fleet-server', ephemeral_id: '', version: expect.any(String) }));
  expect(after.handles.open).toBeGreaterThan(3);
  expect(after.handles.limit.soft).toBeGreaterThan(0);
  // Linux: the process's control group, as libbeat reports it (v1 here: per-controller groups).
  if (/memory:|^0::/m.test(readFileSync('/proc/self/cgroup', 'utf8'))) {
    expect(after.cgroup.memory.mem.usage.bytes).toBeGreaterThan(0);
    expect(typeof after.cgroup.memory.id).toBe('string');
  }
});


test('/stats also carries the process metrics under beat.* (what Elastic Agent copies for Kibana)', async () => {
  const s = await stats();
  expect(s.beat.memstats.memory_sys).toBeGreaterThan(0);
  expect(s.beat.cpu.total.value).toBeGreaterThan(0);
  expect(s.beat.handles.open).toBeGreaterThan(0);
  expect(s.fleet.event_loop.delay.max_ms).toEqual(expect.any(Number));
});

test('/, /state, /dataset, ?pretty and 404', async () => {
  const root = await request(`${metricsUrl}/`);
  expect(root.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(root.json).toEqual({ beat: 'fleet-server', name: 'fleet-server', hostname: expect.any(String), uuid: expect.any(String), version: expect.any(String) });
  expect((await request(`${metricsUrl}/state`)).json).toEqual({});
  expect((await request(`${metricsUrl}/dataset`)).json).toEqual({});
  expect((await request(`${metricsUrl}/state?pretty`)).text).toBe('{}');
  expect((await request(`${metricsUrl}/stats?pretty`)).text).toContain('\n  "http_server": {');
  expect((await request(`${metricsUrl}/nothing`)).status).toBe(404);
});

test('/metrics: upstream names and types, consistent with /stats', async () => {
  const res = await request(`${metricsUrl}/metrics`);
  expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  const families = new Map(parsePrometheus(res.text).map((f) => [f.name, f]));
  const value = (name: string): number => Number(families.get(name)!.metrics[0]!.value);
  for (const r of ROUTES) {
    for (const k of COUNTERS) {
      const f = families.get(`http_server_routes_${r}_${k}`);
      expect({ name: `${r}_${k}`, type: f?.type }).toEqual({ name: `${r}_${k}`, type: k === 'active' ? 'GAUGE' : 'COUNTER' });
    }
  }
  expect(families.get('http_server_tcp_open')?.type).toBe('COUNTER');
  expect(families.get('http_server_tcp_active')?.type).toBe('GAUGE');
  expect(families.get('http_server_routes_artifacts_not_found')?.type).toBe('COUNTER');
  expect(families.get('service_info')).toEqual({ name: 'service_info', help: 'Service information', type: 'COUNTER',
    metrics: [{ value: '1', labels: { name: 'fleet-server', version: expect.any(String) } }] });
  expect(families.get('promhttp_metric_handler_requests_total')?.metrics.map((m) => m.labels?.['code']).sort()).toEqual(['200', '500', '503']);
  const s = (await stats()).http_server;
  expect(value('http_server_routes_enroll_total')).toBe(s.routes.enroll.total);
  expect(value('http_server_routes_checkin_body_out')).toBe(s.routes.checkin.body_out);
  // No process metrics in Prometheus, as upstream.
  expect([...families.keys()].filter((n) => n.includes('memstats') || n.startsWith('process_'))).toEqual([]);
});
