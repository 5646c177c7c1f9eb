// Hostile clients: malformed URLs, stalled bodies and headers, connection floods, decompression bombs
// and aborted uploads. Each gets a clear answer (or a prompt close), and the server keeps serving.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { SimAgent } from './support/agent';
import { removeDir, startFleetServer, type FleetServerProcess } from './support/fleet-server';
import { request, type Response } from './support/http';

const UA = 'Elastic Agent 9.6.0';

function expectErrorShape(res: Response, status: number, error?: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.json).toEqual(expect.objectContaining({ statusCode: status, error: error ?? expect.any(String) }));
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** A raw connection that sends `text` and then nothing; resolves with what came back and when it closed. */
function stall(port: number, text: string): { done: Promise<{ data: string; closedAfterMs: number }>; socket: net.Socket } {
  const started = Date.now();
  const socket = net.connect(port, '127.0.0.1');
  let data = '';
  socket.on('data', (d) => (data += d.toString()));
  socket.on('error', () => undefined);
  socket.write(text);
  const done = new Promise<{ data: string; closedAfterMs: number }>((r) => socket.once('close', () => r({ data, closedAfterMs: Date.now() - started })));
  return { done, socket };
}

async function statusOk(url: string): Promise<void> {
  const res = await request(`${url}/api/status`);
  expect(res.status).toBe(200);
}

describe('one server under hostile requests', () => {
  let server: FleetServerProcess;
  let token: string;
  let agent: SimAgent;

  beforeAll(async () => {
    server = await startFleetServer({ overrides: [
      'inputs.0.server.timeouts.read=2s', 'inputs.0.server.timeouts.read_header=1s',
      'inputs.0.server.timeouts.checkin_long_poll=3s', 'inputs.0.server.timeouts.checkin_jitter=0s',
      'inputs.0.server.limits.enroll_limit.max=3', 'inputs.0.server.limits.enroll_limit.burst=100',
    ] });
    token = server.printedToken!;
    agent = new SimAgent(server.url);
    expect((await agent.enroll(token)).status).toBe(200);
  });

  afterAll(async () => {
    expect(await server.stop()).toBe(0);
    removeDir(server.dataDir);
  });

  test.each(['%zz', '%', '%C0%AF', '%E0%A4%A', '%ED%A0%80'])('agent id %s on checkin and acks → 400 in the error shape, process alive', async (id) => {
    for (const route of ['checkin', 'acks']) {
      const res = await request(`${server.url}/api/fleet/agents/${id}/${route}`, { method: 'POST', body: '{}' });
      expectErrorShape(res, 400, 'BadRequest');
      expect(res.json.message).toMatch(/^Bad request: /);
    }
    expect(server.exitCode).toBeUndefined();
    await statusOk(server.url);
  });

  test('a wrong method → 405 with Allow, in the error shape', async () => {
    const res = await request(`${server.url}/api/fleet/agents/${agent.id}/checkin`);
    expectErrorShape(res, 405, 'MethodNotAllowed');
    expect(res.headers['allow']).toBe('POST');
    const status = await request(`${server.url}/api/status`, { method: 'DELETE' });
    expect(status.headers['allow']).toBe('GET, HEAD');
  });

  test('an unknown route → 404 in the error shape', async () => {
    expectErrorShape(await request(`${server.url}/api/fleet/nothing/here`), 404, 'NotFound');
  });

  test('stalled enroll bodies are answered 408 within read and free their limiter slots', async () => {
    const head = `POST /api/fleet/agents/enroll HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey ${token}\r\nUser-Agent: ${UA}\r\n`
      + 'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"type":';
    const stalled = [1, 2, 3].map(() => stall(server.port, head));
    await new Promise((r) => setTimeout(r, 300));
    const refused = await new SimAgent(server.url).enroll(token);
    expect(refused.status).toBe(429);
    expect(refused.json.error).toBe('MaxLimit');
    for (const s of await Promise.all(stalled.map((s) => s.done))) {
      expect(s.data).toMatch(/^HTTP\/1\.1 408 /);
      expect(s.data).toContain('"error":"RequestTimeout"');
      // read is 2 s; the old server never closed them.
      expect(s.closedAfterMs).toBeLessThan(10_000);
    }
    expect((await new SimAgent(server.url).enroll(token)).status).toBe(200);
  });

  test('a stalled check-in body with a valid agent key is closed with 408', async () => {
    const s = stall(server.port, `POST /api/fleet/agents/${agent.id}/checkin HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey ${agent.apiKey}\r\n`
      + `User-Agent: ${UA}\r\nContent-Length: 500\r\n\r\n{"status":`);
    const { data } = await s.done;
    expect(data).toMatch(/^HTTP\/1\.1 408 /);
  });

  test('headers that never finish are closed within read_header + 1 s', async () => {
    const s = stall(server.port, 'GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const { data, closedAfterMs } = await s.done;
    expect(data).toMatch(/^HTTP\/1\.1 408 /);
    // read_header is 1 s and deadlines are checked every 0.5 s; the old server checked every 30 s.
    expect(closedAfterMs).toBeLessThan(5_000);
  });

  test('a client that aborts its body is a client close: no 500, no error log', async () => {
    const before = server.logs().length;
    const s = stall(server.port, `POST /api/fleet/agents/enroll HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey ${token}\r\nUser-Agent: ${UA}\r\n`
      + 'Content-Length: 100\r\n\r\n{"type"');
    await new Promise((r) => setTimeout(r, 300));
    s.socket.destroy();
    await s.done;
    await new Promise((r) => setTimeout(r, 300));
    const logs = server.logs().slice(before);
    const line = logs.find((l) => l['http.response.status_code'] === 499);
    expect(line?.['log.level']).toBe('debug');
    expect(logs.filter((l) => l['log.level'] === 'error')).toEqual([]);
    await statusOk(server.url);
  });

  test('decompression bombs are refused after their first kilobytes; others are served meanwhile; memory returns', async () => {
    const depthBomb = gzipSync(Buffer.concat([Buffer.alloc(10_000_000, '['), Buffer.alloc(10_000_000, ']')]), { level: 9 });
    const valueBomb = gzipSync(Buffer.from(`[${'0,'.repeat(5_000_000)}0]`), { level: 9 });
    const sizeBomb = gzipSync(Buffer.alloc(30 * 1024 * 1024, ' '), { level: 9 });
    expect(depthBomb.length).toBeLessThan(64 * 1024);
    const rssBefore = rssKiB(server.child.pid!);
    const send = (body: Buffer): Promise<Response> => request(`${server.url}/api/fleet/agents/${agent.id}/checkin`, {
      method: 'POST', body, headers: { ...agent.headers(), 'Content-Encoding': 'gzip' },
    });
    let statusChecks = 0;
    let stop = false;
    const poller = (async () => {
      while (!stop) {
        await statusOk(server.url);
        statusChecks++;
      }
    })();
    const answers = await Promise.all([...Array(8).fill(depthBomb), valueBomb, sizeBomb].map(send));
    stop = true;
    await poller;
    for (const res of answers.slice(0, 8)) {
      expectErrorShape(res, 400, 'BadRequest');
      expect(res.json.message).toMatch(/nesting deeper than 100/);
    }
    expect(answers[8]!.json.message).toMatch(/more than 100000 values/);
    expect(answers[9]!.json.message).toMatch(/request body too large/);
    expect(statusChecks).toBeGreaterThan(0);
    // The old server took RSS to 1.1 GB on one such body.
    expect(rssKiB(server.child.pid!) - rssBefore).toBeLessThan(100 * 1024);
    await statusOk(server.url);
  });

  test('an overflowing poll_timeout is a 400', async () => {
    const res = await agent.checkin({ poll_timeout: '99999999999999h' });
    expectErrorShape(res, 400, 'BadRequest');
    expect(res.json.message).toMatch(/poll_timeout cannot be parsed as duration/);
  });
});

describe('connection floods', () => {
  test('unfinished connections cannot starve agents: a held poll survives and new agents are served', async () => {
    const server = await startFleetServer({ overrides: [
      'inputs.0.server.limits.max_connections=40', 'inputs.0.server.timeouts.read_header=5s',
      'inputs.0.server.timeouts.checkin_long_poll=4s', 'inputs.0.server.timeouts.checkin_jitter=0s',
    ] });
    const flood: net.Socket[] = [];
    try {
      const a = new SimAgent(server.url);
      expect((await a.enroll(server.printedToken!)).status).toBe(200);
      await a.checkin();
      const held = a.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 1 });
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < 300; i++) flood.push(stall(server.port, 'GET /api/status HTTP/1.1\r\nHost: x\r\n').socket);
      await new Promise((r) => setTimeout(r, 500));
      // The hard limit is 44 connections; 300 unfinished ones were offered, the held poll is among the 44.
      await statusOk(server.url);
      const b = new SimAgent(server.url);
      expect((await b.enroll(server.printedToken!)).status).toBe(200);
      expect((await held).status).toBe(200);
      expect(server.exitCode).toBeUndefined();
    } finally {
      for (const s of flood) s.destroy();
      await server.stop();
      removeDir(server.dataDir);
    }
  });

  test('under a low file limit a flood of unfinished connections never exhausts descriptors', async () => {
    const server = await startFleetServer({ fileLimit: 400, overrides: ['inputs.0.server.timeouts.read_header=5s'] });
    const flood: net.Socket[] = [];
    try {
      for (let i = 0; i < 600; i++) flood.push(stall(server.port, 'GET /api/status HTTP/1.1\r\n').socket);
      await new Promise((r) => setTimeout(r, 800));
      await statusOk(server.url);
      const a = new SimAgent(server.url);
      expect((await a.enroll(server.printedToken!)).status).toBe(200);
      expect((await a.checkin()).status).toBe(200);
      expect(server.exitCode).toBeUndefined();
    } finally {
      for (const s of flood) s.destroy();
      await server.stop();
      removeDir(server.dataDir);
    }
  });
});
