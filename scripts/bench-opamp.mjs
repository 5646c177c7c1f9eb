// npm run bench:opamp: BENCH_COLLECTORS (default 5000) OpenTelemetry Collectors hold OpAMP WebSockets
// to the bundled server (embedded store); prints the server's RSS per held connection, and the time a
// remote-configuration change (`policy put` with an opamp section) takes to reach all of them.
// Prints figures; asserts nothing. The Collectors are one process of minimal WebSocket clients.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const N = Number(process.env.BENCH_COLLECTORS ?? 5000);
const PORT = Number(process.env.BENCH_PORT ?? 18530);
const CONCURRENCY = 200;
const dist = new URL('../dist/fleet-server.js', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

function varint(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** AgentToServer{instance_uid, sequence_num, capabilities: ReportsStatus|AcceptsRemoteConfig[, remote_config_status]}. */
function agentToServer(uid, seq, appliedHash) {
  const parts = [Buffer.from([0x0a, 16]), uid, Buffer.from([0x10]), varint(seq), Buffer.from([0x20, 0x03])];
  if (appliedHash) {
    const rcs = Buffer.concat([Buffer.from([0x0a, appliedHash.length]), appliedHash, Buffer.from([0x10, 0x01])]);
    parts.push(Buffer.from([0x3a]), varint(rcs.length), rcs);
  }
  return Buffer.concat([Buffer.from([0]), ...parts]);
}

function maskedFrame(payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x82, 0x80 | n]) : Buffer.from([0x82, 0x80 | 126, n >> 8, n & 0xff]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

/** The config_hash of a ServerToAgent's remote_config (field 3, its field 2), if any. */
function remoteConfigHash(msg) {
  let i = 0;
  const read = () => {
    let v = 0;
    let s = 1;
    for (;;) {
      const b = msg[i++];
      v += (b & 0x7f) * s;
      if ((b & 0x80) === 0) return v;
      s *= 128;
    }
  };
  while (i < msg.length) {
    const key = read();
    const wire = key & 7;
    if (wire === 0) read();
    else if (wire === 1) i += 8;
    else if (wire === 2) {
      const len = read();
      if (key >> 3 === 3) {
        const rc = msg.subarray(i, i + len);
        let j = 0;
        while (j < rc.length) {
          const k = rc[j++];
          let l = 0;
          let s = 1;
          for (;;) {
            const b = rc[j++];
            l += (b & 0x7f) * s;
            if ((b & 0x80) === 0) break;
            s *= 128;
          }
          if (k >> 3 === 2) return rc.subarray(j, j + l);
          j += l;
        }
      }
      i += len;
    } else return undefined;
  }
  return undefined;
}

class Collector {
  constructor(token) {
    this.uid = randomBytes(16);
    this.uid[6] = (this.uid[6] & 0x0f) | 0x70;
    this.uid[8] = (this.uid[8] & 0x3f) | 0x80;
    this.seq = 0;
    this.token = token;
    this.buf = Buffer.alloc(0);
    this.onMessage = () => undefined;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const req = http.request(`http://127.0.0.1:${PORT}/v1/opamp`, {
        agent: false,
        headers: {
          Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': randomBytes(16).toString('base64'), Authorization: `ApiKey ${this.token}`,
        },
      });
      req.on('upgrade', (_res, socket, head) => {
        this.socket = socket;
        socket.on('data', (c) => this.receive(c));
        socket.on('error', () => undefined);
        if (head.length) this.receive(head);
        resolve();
      });
      req.on('response', (res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
  }

  send(appliedHash) {
    this.socket.write(maskedFrame(agentToServer(this.uid, this.seq++, appliedHash)));
  }

  next() {
    return new Promise((r) => { this.onMessage = r; });
  }

  receive(c) {
    this.buf = Buffer.concat([this.buf, c]);
    for (;;) {
      if (this.buf.length < 2) return;
      let len = this.buf[1] & 0x7f;
      let pos = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        pos = 4;
      }
      if (this.buf.length < pos + len) return;
      const payload = this.buf.subarray(pos + 1, pos + len);
      this.buf = this.buf.subarray(pos + len);
      this.onMessage(payload);
    }
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-opamp-'));
  const args = [...pkg.fleetServer.nodeFlags, dist, '-E', `path.data=${dir}`, '-E', `inputs.0.server.port=${PORT}`,
    '-E', 'inputs.0.server.internal_port=0', '-E', 'inputs.0.server.host=127.0.0.1', '-E', 'logging.level=warning',
    // Open the OpAMP limiter: this measures the server, not the throttle (1,000 a burst by default).
    '-E', 'inputs.0.server.limits.opamp_limit.interval=1us', '-E', 'inputs.0.server.limits.opamp_limit.burst=100000'];
  const server = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  server.stdout.on('data', (d) => { out += d; });
  try {
    // The zero-config start makes the default policy; its token is printed only on a terminal.
    for (let i = 0; i < 300 && !out.includes('Created policy "default-policy"'); i++) await sleep(100);
    if (!out.includes('Created policy "default-policy"')) throw new Error('no default policy made');
    const token = JSON.parse(execFileSync(process.execPath, [dist, 'enrollment-token', 'create', '--policy', 'default-policy', '--json',
      '-E', `path.data=${dir}`], { cwd: dir }).toString()).api_key;
    await sleep(1000);
    const base = rssMiB(server.pid);
    const collectors = Array.from({ length: N }, () => new Collector(token));
    const t0 = performance.now();
    for (let i = 0; i < N; i += CONCURRENCY) {
      await Promise.all(collectors.slice(i, i + CONCURRENCY).map(async (c) => {
        await c.connect();
        const first = c.next();
        c.send();
        await first;
      }));
    }
    const connectS = (performance.now() - t0) / 1000;
    await sleep(3000);
    const held = rssMiB(server.pid);
    console.log(`OpAMP WebSocket: ${N} Collectors enrolled and connected in ${connectS.toFixed(1)} s; server RSS ${base.toFixed(0)} → ${held.toFixed(0)} MiB, ${((held - base) * 1024 / N).toFixed(1)} KiB per held connection`);

    const body = 'receivers: {otlp: {}}\nexporters: {debug: {}}\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}\n';
    const hash = createHash('sha256').update(body).digest();
    const got = collectors.map((c) => new Promise((resolve) => {
      c.onMessage = (m) => { if (remoteConfigHash(m)?.equals(hash)) resolve(performance.now()); };
    }));
    const file = join(dir, 'policy.yml');
    writeFileSync(file, ['id: default-policy', 'outputs:', '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
      'opamp:', `  config: ${JSON.stringify(body)}`].join('\n'));
    const t1 = performance.now();
    execFileSync(process.execPath, [dist, 'policy', 'put', file, '-E', `path.data=${dir}`], { stdio: 'ignore' });
    const times = await Promise.all(got);
    const last = (Math.max(...times) - t1) / 1000;
    times.sort((a, b) => a - b);
    console.log(`OpAMP remote configuration: reached all ${N} Collectors ${last.toFixed(2)} s after \`policy put\` started (median ${((times[N >> 1] - t1) / 1000).toFixed(2)} s); server RSS ${rssMiB(server.pid).toFixed(0)} MiB`);
    for (const c of collectors) c.socket.destroy();
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
