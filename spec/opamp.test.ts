// OpAMP on /v1/opamp against the bundled program, on the embedded store and on the Elasticsearch
// double: a simulated Collector enrolls with an enrollment token, reports health and its effective
// configuration, is listed by the admin CLI, disconnects; bad tokens, malformed protobuf and oversize
// bodies get the bare answers opamp-go gives, and the server stays up.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { embedded, elasticsearch } from './support/backends';
import { cli as runCli } from './support/cli';
import { CAP, SimCollector, WsCollector, agentToServer, uuidText } from './support/collector';
import { clientFrame, WsClient } from './support/ws-client';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DIST, removeDir, startFleetServer, tempDir, type FleetServerProcess } from './support/fleet-server';
import { request } from './support/http';
import { expectDocument } from './support/schema';

jest.setTimeout(120_000);


const PROTOBUF = 'application/x-protobuf';
const FULL_STATE = 0x1;
const ACCEPTS_STATUS_AND_EFFECTIVE_CONFIG = 0x5;

const CONFIG_YAML = `
receivers:
  otlp:
    protocols: {grpc: {endpoint: 0.0.0.0:4317}}
exporters:
  elasticsearch:
    endpoints: [https://es:9200]
    api_key: c2VjcmV0OnNlY3JldA==
    auth: {authenticator: basicauth}
extensions:
  basicauth:
    client_auth: {username: elastic, password: changeme}
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [elasticsearch]}
`;

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.each([embedded, elasticsearch()])('OpAMP over HTTP on $name', (backend) => {
  const dataDir = tempDir();
  let server: FleetServerProcess;
  let token = '';
  const cli = (args: string[]): Promise<any> => runCli(dataDir, args, backend.settings());
  const show = (id: string): Promise<any> => cli(['agents', 'show', id]);

  beforeAll(async () => {
    await backend.start();
    server = await startFleetServer({
      dataDir, overrides: ['inputs.0.server.bulk.checkin_flush_interval=200ms', 'inputs.0.server.opamp.heartbeat_interval=15s',
        'inputs.0.server.timeouts.checkin_timestamp=1s', ...backend.settings()],
    });
    token = await backend.token(server);
    for (let i = 0; i < 50 && (await request(`${server.url}/api/status`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
  });

  afterAll(async () => {
    await server?.stop();
    await backend.stop();
    removeDir(dataDir);
  });

  test('a Collector enrolls, reports health and effective configuration, is listed, and disconnects', async () => {
    const col = new SimCollector(server.url, token);
    const first = await col.send({
      ...SimCollector.description('otelcol-contrib', '0.120.0'),
      nonIdentifying: { ...SimCollector.description().nonIdentifying, tags: 'edge, eu ,edge' },
      health: { healthy: false, status: 'StatusStarting' },
      effectiveConfig: CONFIG_YAML,
    });
    expect(first.res.status).toBe(200);
    expect(first.res.headers['content-type']).toBe(PROTOBUF);
    // Go's client asks for exactly "gzip" and gets it (opamp-go).
    expect(first.res.headers['content-encoding']).toBe('gzip');
    expect(first.reply).toMatchObject({ flags: FULL_STATE, capabilities: ACCEPTS_STATUS_AND_EFFECTIVE_CONFIG, hasCustomCapabilities: true });
    expect(first.reply!.error).toBeUndefined();
    expect(uuidText(first.reply!.instanceUid)).toBe(col.id);
    // No configuration for a Collector that does not accept one.
    expect(first.reply!.remoteConfig).toBeUndefined();

    // Enrolled at once, as upstream writes the document.
    const enrolled = await show(col.id);
    expectDocument('agent', enrolled);
    expect(enrolled).toMatchObject({
      _id: col.id, active: true, type: 'OPAMP', policy_id: 'default-policy', policy_revision_idx: 1,
      agent: { id: col.id, version: '0.120.0', type: 'otelcol-contrib' },
      local_metadata: {
        elastic: { agent: { id: col.id, version: '0.120.0', name: 'otelcol-contrib' } },
        host: { hostname: 'collector-host', name: 'collector-host' }, os: { platform: 'linux' },
      },
      identifying_attributes: { 'service.name': 'otelcol-contrib', 'service.version': '0.120.0', 'service.instance.id': 'x' },
      non_identifying_attributes: { 'host.arch': 'amd64', 'host.name': 'collector-host', 'os.description': 'Ubuntu 24.04', 'os.type': 'linux' },
      tags: ['otelcol-contrib', 'edge', 'eu'],
    });
    expect(enrolled).not.toHaveProperty('access_api_key_id');

    // The next message in sequence: no full state asked (upstream asks every time; see compatibility.md).
    const healthy = await col.send({ health: { healthy: true, status: 'StatusOK', startTimeUnixNano: 1_700_000_000_000_000_000n, components: { 'pipeline:logs': { healthy: true, status: 'StatusOK' } } } });
    expect(healthy.reply).toMatchObject({ flags: 0, capabilities: ACCEPTS_STATUS_AND_EFFECTIVE_CONFIG });
    const doc = await eventually(() => show(col.id), (d) => d.last_checkin_status === 'online' && d.sequence_num === 1);
    expectDocument('agent', doc);
    expect(doc).toMatchObject({
      last_checkin_status: 'online', last_checkin_message: 'StatusOK', sequence_num: 1,
      health: { healthy: true, status: 'StatusOK', component_health_map: { 'pipeline:logs': { healthy: true, status: 'StatusOK' } } },
      capabilities: ['ReportsStatus', 'ReportsEffectiveConfig', 'ReportsHealth'],
    });
    expect(doc.health.start_time_unix_nano).toBeGreaterThan(1.6e18);
    // The YAML as JSON with its secrets redacted (every key naming auth, key, password, … as upstream).
    expect(doc.effective_config).toEqual({
      receivers: { otlp: { protocols: { grpc: { endpoint: '0.0.0.0:4317' } } } },
      exporters: { elasticsearch: { endpoints: ['https://es:9200'], api_key: '[REDACTED]', auth: { authenticator: '[REDACTED]' } } },
      extensions: { basicauth: { client_auth: { username: 'elastic', password: '[REDACTED]' } } },
      service: { pipelines: { logs: { receivers: ['otlp'], exporters: ['elasticsearch'] } } },
    });

    // A poll without health keeps the status its last health gave.
    const unhealthy = await col.send({ health: { healthy: false, status: 'StatusPermanentError', lastError: 'exporter failed' } });
    expect(unhealthy.res.status).toBe(200);
    await col.send();
    const errored = await eventually(() => show(col.id), (d) => d.sequence_num === 3);
    expect(errored).toMatchObject({ last_checkin_status: 'error', last_checkin_message: 'exporter failed', sequence_num: 3 });

    await col.send({ health: { healthy: true, status: 'StatusRecoverableError', lastError: 'retrying' } });
    expect(await eventually(() => show(col.id), (d) => d.sequence_num === 4)).toMatchObject({ last_checkin_status: 'degraded', last_checkin_message: 'retrying' });

    // A new configuration replaces the stored one whole (a merge would keep the removed exporter).
    await col.send({ effectiveConfig: 'receivers: {otlp: {}}\nservice: {pipelines: {}}\n' });
    const replaced = await eventually(() => show(col.id), (d) => d.sequence_num === 5);
    expect(replaced.effective_config).toEqual({ receivers: { otlp: {} }, service: { pipelines: {} } });

    // The admin CLI lists it with its type, status (from its health) and version.
    const listed = await cli(['agents', 'list']);
    expect(listed).toEqual(expect.arrayContaining([expect.objectContaining({ _id: col.id, type: 'OPAMP', last_checkin_status: 'degraded' })]));
    // Run asynchronously: the Elasticsearch double answers from this process.
    const tableText = (await promisify(execFile)(process.execPath, [DIST, 'agents', 'list', '-E', `path.data=${dataDir}`, ...backend.settings().flatMap((s) => ['-E', s])], { cwd: dataDir })).stdout;
    expect(tableText.split('\n')[0]).toMatch(/^ID\s+TYPE\s+STATUS/);
    expect(tableText.split('\n').find((l) => l.startsWith(col.id))).toMatch(/\sOPAMP\s+degraded\s+default-policy\s.*\s0\.120\.0\s*$/);

    const bye = await col.send({ disconnect: true });
    expect(bye.reply).toMatchObject({ flags: 0, capabilities: 0 });
    expect(bye.reply!.error).toBeUndefined();
    expectDocument('agent', await eventually(() => show(col.id), (d) => d.last_checkin_status === 'disconnected'));
  });

  test('a sequence gap asks for a full state report; gzip bodies are taken; no gzip answer without "gzip"', async () => {
    const col = new SimCollector(server.url, token);
    expect((await col.send(SimCollector.description(), { gzip: true })).reply!.flags).toBe(FULL_STATE);
    expect((await col.send({}, { gzip: true })).reply!.flags).toBe(0);
    col.seq += 3;
    const gap = await col.send({}, { acceptEncoding: 'gzip, deflate' });
    expect(gap.res.headers['content-encoding']).toBeUndefined();
    expect(gap.reply!.flags).toBe(FULL_STATE);
  });

  test('RequestInstanceUid: the server assigns a new id and marks the old document re-enrolled', async () => {
    const col = new SimCollector(server.url, token);
    await col.send(SimCollector.description());
    const old = col.id;
    const again = await col.send({ ...SimCollector.description(), requestInstanceUid: true });
    expect(again.reply!.newInstanceUid).toHaveLength(16);
    expect(col.id).not.toBe(old);
    expect(col.id[14]).toBe('7');
    expect(await show(col.id)).toMatchObject({ type: 'OPAMP', agent: { id: col.id } });
    expect(await show(old)).toMatchObject({ audit_unenrolled_reason: 'reenrolled' });
    expect((await col.send({ health: { healthy: true, status: 'StatusOK' } })).reply!.error).toBeUndefined();
  });

  test('a heartbeat interval goes, once, only to Collectors that report heartbeats and do not take connection settings', async () => {
    // A client that accepts connection settings would reconnect with the offer's settings alone (its
    // Authorization dropped): it is offered none.
    const accepting = CAP.ReportsStatus | CAP.ReportsHeartbeat | CAP.AcceptsOpAMPConnectionSettings;
    const acc = new SimCollector(server.url, token, accepting);
    expect((await acc.send(SimCollector.description())).reply!.heartbeatIntervalSeconds).toBeUndefined();
    const plain = new SimCollector(server.url, token, CAP.ReportsStatus | CAP.ReportsHeartbeat);
    const first = (await plain.send(SimCollector.description())).reply!;
    expect(first.heartbeatIntervalSeconds).toBe(15);
    expect(first.capabilities).toBe(ACCEPTS_STATUS_AND_EFFECTIVE_CONFIG | 0x20);
    const next = (await plain.send()).reply!;
    expect(next.heartbeatIntervalSeconds).toBeUndefined();
    expect(next.capabilities).toBe(ACCEPTS_STATUS_AND_EFFECTIVE_CONFIG);
    // Over WebSocket: none for an accepting client; once for a new connection of a plain one.
    const wsAcc = new WsCollector(server.url, token, accepting);
    expect(await wsAcc.connect(server.url, token)).toBeUndefined();
    wsAcc.sendWs(SimCollector.description());
    expect((await wsAcc.receive()).heartbeatIntervalSeconds).toBeUndefined();
    wsAcc.ws.close();
    const ws = new WsCollector(server.url, token, CAP.ReportsStatus | CAP.ReportsHeartbeat);
    expect(await ws.connect(server.url, token)).toBeUndefined();
    ws.sendWs(SimCollector.description());
    expect((await ws.receive()).heartbeatIntervalSeconds).toBe(15);
    ws.ws.close();
  });

  test('protocol errors are answered in error_response, as upstream', async () => {
    const col = new SimCollector(server.url, token);
    const shortUid = await col.send({}, { raw: agentToServer(Buffer.alloc(5), 0, CAP.ReportsStatus, {}) });
    expect(shortUid.reply!.error).toEqual({ type: 1, message: 'failed to parse instance_uid' });
    const disconnectFirst = await col.send({ disconnect: true });
    expect(disconnectFirst.reply!.error).toEqual({ type: 1, message: 'agent_disconnect set on new enrollment message' });
  });

  test('refusals: bare 401 / 400 / 413 with the protobuf Content-Type; the server stays up', async () => {
    const col = new SimCollector(server.url, token);
    const body = agentToServer(col.uid, 0, CAP.ReportsStatus, {});
    const post = (headers: Record<string, string>, b: Buffer = body) => request(`${server.url}/v1/opamp`, { method: 'POST', headers, body: b });
    const bare = (r: { status: number; headers: Record<string, unknown>; body: Buffer }, status: number): void => {
      expect(r.status).toBe(status);
      expect(r.headers['content-type']).toBe(PROTOBUF);
      expect(r.body.length).toBe(0);
    };
    const ok = { 'Content-Type': PROTOBUF, Authorization: `ApiKey ${token}` };
    bare(await post({ 'Content-Type': PROTOBUF }), 401);
    bare(await post({ ...ok, Authorization: 'ApiKey Zm9vOmJhcg==' }), 401);
    bare(await post({ ...ok, Authorization: 'Bearer x' }), 401);
    bare(await post({ ...ok, Authorization: 'ApiKey ***' }), 401);
    // Malformed protobuf (a truncated length-delimited field), gzip that is not, and a foreign Content-Type.
    bare(await post(ok, Buffer.from([0x0a, 0x10, 0x01])), 400);
    bare(await post({ ...ok, 'Content-Encoding': 'gzip' }, Buffer.from('not gzip')), 400);
    bare(await post({ ...ok, 'Content-Type': 'application/json' }, Buffer.from('{}')), 400);
    // Over the route's 3 MiB body limit, and a gzip body that inflates past 4 MiB.
    bare(await post(ok, Buffer.alloc(4 * 1024 * 1024)), 413);
    bare(await post({ ...ok, 'Content-Encoding': 'gzip' }, gzipSync(Buffer.alloc(5 * 1024 * 1024))), 413);
    // Not a POST: the upstream JSON error shape of every route.
    expect((await request(`${server.url}/v1/opamp`, { method: 'PUT' })).status).toBe(405);
    expect((await request(`${server.url}/api/status`)).status).toBe(200);
    expect((await col.send(SimCollector.description())).res.status).toBe(200);
  });

  test('a Collector still sending a body over the limit gets its 413, not a reset', async () => {
    // 4 MiB declared (the limit is 3 MiB), sent in pieces: refused at once from the declared length, the
    // body is still read to its end (bounded) before the answer, so every write succeeds.
    const { hostname, port } = new URL(server.url);
    const socket = connect({ host: hostname, port: Number(port) });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const received: Buffer[] = [];
    // The answer's head, or the connection's end, whichever comes first.
    const answered = new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => {
        received.push(c);
        if (Buffer.concat(received).includes('\r\n\r\n')) resolve();
      });
      socket.once('close', () => resolve());
    });
    let writeError: Error | undefined;
    socket.on('error', (err) => (writeError = err));
    const write = (b: Buffer | string): Promise<void> => new Promise((resolve) => socket.write(b, (err) => {
      if (err) writeError = err;
      resolve();
    }));
    const piece = 256 * 1024;
    await write(`POST /v1/opamp HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${PROTOBUF}\r\nAuthorization: ApiKey ${token}\r\nContent-Length: ${16 * piece}\r\n\r\n`);
    for (let i = 0; i < 16 && !writeError; i++) {
      await write(Buffer.alloc(piece));
      await new Promise((r) => setTimeout(r, 15));
    }
    await answered;
    socket.destroy();
    expect(writeError).toBeUndefined();
    expect(Buffer.concat(received).toString('latin1')).toMatch(/^HTTP\/1\.1 413 /);
  });

  test('WebSocket: enroll, report, replies in order with the 0 header byte, disconnect closes with 1000', async () => {
    const col = new WsCollector(server.url, token);
    expect(await col.connect(server.url, token)).toBeUndefined();
    col.sendWs({ ...SimCollector.description(), health: { healthy: true, status: 'StatusOK' }, effectiveConfig: 'receivers: {otlp: {}}' });
    const first = await col.receive();
    expect(first).toMatchObject({ flags: FULL_STATE, capabilities: ACCEPTS_STATUS_AND_EFFECTIVE_CONFIG, hasCustomCapabilities: true });
    expect(uuidText(first.instanceUid)).toBe(col.id);
    col.sendWs({ health: { healthy: false, status: 'StatusPermanentError', lastError: 'down' } });
    col.sendWs();
    // custom_capabilities only in the first answer of a connection (opamp-go).
    expect(await col.receive()).toMatchObject({ flags: 0, hasCustomCapabilities: false });
    expect(await col.receive()).toMatchObject({ flags: 0 });
    const doc = await eventually(() => show(col.id), (d) => d.sequence_num === 2);
    expectDocument('agent', doc);
    expect(doc).toMatchObject({ type: 'OPAMP', last_checkin_status: 'error', last_checkin_message: 'down', effective_config: { receivers: { otlp: {} } } });
    // Silent but connected, it stays online: its last_checkin is refreshed as a held poll's is (old: never).
    const refreshed = await eventually(() => show(col.id), (d) => Date.parse(d.last_checkin) > Date.parse(doc.last_checkin));
    expect(refreshed).toMatchObject({ last_checkin_status: 'error', last_checkin_message: 'down', sequence_num: 2 });
    expect(Date.parse(refreshed.last_checkin)).toBeGreaterThan(Date.parse(doc.last_checkin));
    // A ping is answered; a text frame is dropped and the connection kept; a frame without the header byte
    // is read whole (opamp-go's tolerance of the old format).
    col.ws.write(clientFrame(0x9, Buffer.from('hi')));
    expect(await col.ws.next()).toEqual({ opcode: 0xa, payload: Buffer.from('hi') });
    col.ws.write(clientFrame(0x1, Buffer.from('{"text": true}')));
    col.ws.sendBinary(agentToServer(col.uid, col.seq++, col.capabilities, {}));
    expect(await col.receive()).toMatchObject({ flags: 0 });
    // Garbage in a binary frame: error_response, connection kept.
    col.ws.sendBinary(Buffer.from([0, 0x0a, 0x10, 0x01]));
    expect((await col.receive()).error).toEqual({ type: 1, message: 'failed to decode message' });
    col.sendWs({ disconnect: true });
    expect((await col.receive()).error).toBeUndefined();
    expect(await col.ws.closedWith()).toBe(1000);
    expect(await eventually(() => show(col.id), (d) => d.last_checkin_status === 'disconnected')).toMatchObject({ last_checkin_status: 'disconnected' });
  });

  test('remote configuration: sent with its hash to Collectors that accept it, APPLYING / APPLIED / FAILED stored, a new revision pushed over WebSocket and taken at the next HTTP poll', async () => {
    const putPolicy = async (config: string): Promise<void> => {
      const file = join(dataDir, 'collectors.yml');
      writeFileSync(file, [
        'id: default-policy', 'outputs:', '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
        `fleet: {hosts: ["${server.url}"]}`, 'opamp:', `  config: ${JSON.stringify(config)}`,
      ].join('\n'));
      await cli(['policy', 'put', file]);
    };
    const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
    const v1 = 'receivers:\n  otlp: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n';
    const v2 = v1.replace('debug: {}', 'debug: {verbosity: detailed}');
    await putPolicy(v1);
    const caps = CAP.ReportsStatus | CAP.ReportsEffectiveConfig | CAP.ReportsHealth | CAP.AcceptsRemoteConfig | CAP.ReportsRemoteConfig;

    // Over HTTP: the configuration with its hash, until the Collector reports that hash.
    const http = new SimCollector(server.url, token, caps);
    const first = (await eventually(() => http.send(SimCollector.description()), (x) => x.reply?.remoteConfig?.hash.equals(sha(v1)) === true)).reply!;
    expect(first.capabilities).toBe(0x7);
    expect(first.remoteConfig).toEqual({ files: { '': { body: v1, contentType: 'text/yaml' } }, hash: sha(v1) });
    const applying = await http.send({ remoteConfigStatus: { hash: sha(v1), status: 'APPLYING' } });
    expect(applying.reply!.remoteConfig).toBeUndefined();
    expect((await http.send()).reply!.remoteConfig).toBeUndefined();
    await http.send({ remoteConfigStatus: { hash: sha(v1), status: 'APPLIED' }, effectiveConfig: v1 });
    const applied = await eventually(() => show(http.id), (d) => d.remote_config_status?.status === 'APPLIED');
    expectDocument('agent', applied);
    expect(applied.remote_config_status).toEqual({ status: 'APPLIED', last_remote_config_hash: sha(v1).toString('hex') });

    // Over WebSocket: the same at connect, then a new revision is pushed without the Collector asking.
    const ws = new WsCollector(server.url, token, caps);
    expect(await ws.connect(server.url, token)).toBeUndefined();
    ws.sendWs(SimCollector.description());
    expect((await ws.receive()).remoteConfig?.hash).toEqual(sha(v1));
    ws.sendWs({ remoteConfigStatus: { hash: sha(v1), status: 'APPLIED' } });
    expect((await ws.receive()).remoteConfig).toBeUndefined();
    const changed = Date.now();
    await putPolicy(v2);
    const pushed = await ws.receive(10_000);
    console.log(`remote configuration pushed over WebSocket ${Date.now() - changed} ms after \`policy put\` returned`);
    expect(pushed.remoteConfig).toEqual({ files: { '': { body: v2, contentType: 'text/yaml' } }, hash: sha(v2) });
    expect(uuidText(pushed.instanceUid)).toBe(ws.id);
    ws.sendWs({ remoteConfigStatus: { hash: sha(v2), status: 'FAILED', errorMessage: 'unknown exporter' } });
    expect((await ws.receive()).remoteConfig).toBeUndefined();
    const failed = await eventually(() => show(ws.id), (d) => d.remote_config_status?.status === 'FAILED');
    expectDocument('agent', failed);
    expect(failed.remote_config_status).toEqual({ status: 'FAILED', last_remote_config_hash: sha(v2).toString('hex'), error_message: 'unknown exporter' });
    ws.ws.close();

    // The HTTP Collector gets the new revision at its next poll.
    expect((await http.send()).reply!.remoteConfig?.hash).toEqual(sha(v2));
    // Elastic Agents of the policy are not sent the section.
    const policy = await cli(['policy', 'show', 'default-policy']);
    expect(policy.data.opamp.config).toBe(v2);
  });

  test('WebSocket refusals: bad token 401 bare, oversize message 1009, a plain GET 400; the server stays up', async () => {
    const refused = await new WsCollector(server.url, token).connect(server.url, 'Zm9vOmJhcg==');
    expect(refused).toMatchObject({ status: 401, headers: { 'content-type': PROTOBUF } });
    expect(refused!.body.length).toBe(0);
    // A frame declaring more than the 4 MiB limit is refused on its header, before its bytes arrive.
    const big = new WsCollector(server.url, token);
    expect(await big.connect(server.url, token)).toBeUndefined();
    big.ws.write(clientFrame(0x2, Buffer.alloc(0), true, 4 * 1024 * 1024 + 1).subarray(0, 14));
    expect(await big.ws.closedWith()).toBe(1009);
    // An unmasked client frame is a protocol error.
    const unmasked = await WsClient.connect(`${server.url}/v1/opamp`, { Authorization: `ApiKey ${token}` }) as WsClient;
    unmasked.write(Buffer.from([0x82, 0x01, 0x00]));
    expect(await unmasked.closedWith()).toBe(1002);
    const plain = await request(`${server.url}/v1/opamp`, { headers: { Authorization: `ApiKey ${token}` } });
    expect(plain.status).toBe(400);
    expect(plain.body.length).toBe(0);
    expect((await request(`${server.url}/api/status`)).status).toBe(200);
  });
});

test('server.feature_flags.enable_opamp: false takes the route away', async () => {
  const dataDir = tempDir();
  const server = await startFleetServer({ dataDir, overrides: ['inputs.0.server.feature_flags.enable_opamp=false'] });
  try {
    const r = await new SimCollector(server.url, (await server.enrollmentToken())).send(SimCollector.description());
    expect(r.res.status).toBe(404);
  } finally {
    await server.stop();
    removeDir(dataDir);
  }
});

test('a stopping server closes OpAMP WebSockets with 1001 and exits cleanly', async () => {
  const dataDir = tempDir();
  const server = await startFleetServer({ dataDir });
  try {
    const col = new WsCollector(server.url, (await server.enrollmentToken()));
    expect(await col.connect(server.url, (await server.enrollmentToken()))).toBeUndefined();
    col.sendWs(SimCollector.description());
    expect((await col.receive()).error).toBeUndefined();
    const exited = server.stop();
    expect(await col.ws.closedWith(10_000)).toBe(1001);
    expect(await exited).toBe(0);
  } finally {
    await server.stop();
    removeDir(dataDir);
  }
});
