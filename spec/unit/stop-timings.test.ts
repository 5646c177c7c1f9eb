// What a stop reports, in-process: how long each step took and how many requests the drain's deadline
// cut, so that a stop near its deadline says where its time went.
import '../support/released-version';
import { connect } from 'node:net';
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { Admin } from '../../src/fleet/admin';
import { ServerInstance } from '../../src/runtime/server-instance';
import { SimAgent } from '../support/agent';
import { removeDir, tempDir } from '../support/fleet-server';
import { freePort } from '../support/ports';
import { until, VERSION } from '../support/in-process-fleet';

let dir: string;
afterEach(() => removeDir(dir));

test('a stop answers the held poll, cuts a request still in flight at the drain deadline, and reports both with its steps', async () => {
  dir = tempDir();
  const port = await freePort();
  const config = buildConfig({
    path: { data: dir },
    logging: { level: 'error' },
    inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port, internal_port: 0, workers: 1, timeouts: { drain: '1s' } } }],
  });
  const server = await ServerInstance.create(config, pino({ level: 'silent' }));
  let stopped = false;
  try {
    const { token } = (await new Admin(server.store).ensureDefaultPolicy(`http://127.0.0.1:${port}`, { withToken: true }))! as { token: string };
    await server.start({ metrics: false });
    const agent = new SimAgent(`http://127.0.0.1:${port}`, VERSION);
    expect((await agent.enroll(token)).status).toBe(200);
    // A held poll: on the policy it has, for a minute.
    const poll = agent.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 1, poll_timeout: '3m' });
    await until(() => server.fleet.checkins.heldCount === 1);
    // An enrollment whose body never comes: in flight until the deadline closes its connection.
    const slow = connect(port, '127.0.0.1');
    slow.on('error', () => undefined);
    const slowEnded = new Promise<string>((resolve) => {
      let data = '';
      slow.on('data', (d) => (data += d.toString()));
      slow.on('close', () => resolve(data));
    });
    slow.write(`POST /api/fleet/agents/enroll HTTP/1.1\r\nHost: x\r\nUser-Agent: Elastic Agent ${VERSION}\r\nAuthorization: ApiKey ${token}\r\n`
      + 'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
    await until(() => server.http.inFlightRequests === 2);
    const timings = await server.stop();
    stopped = true;
    expect((await poll).status).toBe(200);
    expect(await slowEnded).toBe('');
    expect(timings['stop.cut_requests']).toBe(1);
    // The drain waits out its window for the slow request (1 s, less a timer's rounding).
    expect(timings['stop.answer_ms'] + timings['stop.drain_ms']).toBeGreaterThanOrEqual(950);
    for (const k of ['stop.write_ms', 'stop.close_ms'] as const) expect(timings[k]).toBeGreaterThanOrEqual(0);
  } finally {
    if (!stopped) await server.stop();
  }
});
