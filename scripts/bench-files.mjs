// npm run bench:files: moves one large file each way through the bundled server as an agent does —
// a chunked upload (4 MiB chunks, BENCH_PARALLEL at a time) and a download of a published file — and
// prints throughput (MiB/s) and the server's RSS before and at its peak during each transfer, sampled
// every 20 ms. BENCH_FILE_MIB sets the size (default 128), BENCH_STORE=sqlite|elasticsearch the stores
// (default both). Prints figures; asserts nothing.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rssKiB, sleep, startDouble, waitFor } from './bench/common.mjs';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.BENCH_FILE_MIB ?? 128) * MiB;
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 4);
const PORT = Number(process.env.BENCH_PORT ?? 18520);
const STORES = (process.env.BENCH_STORE ?? 'sqlite,elasticsearch').split(',');
const dist = new URL('../dist/fleet-server.js', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const rssMiB = (pid) => rssKiB(pid) / 1024;


/** Samples a process's RSS while fn runs: the baseline and the peak. */
async function withRss(pid, fn) {
  const before = rssMiB(pid);
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB(pid)); }, 20);
  const started = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return { seconds: (performance.now() - started) / 1000, before, peak: Math.max(peak, rssMiB(pid)) };
}

function send(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: keepAlive }, (res) => {
      const chunks = [];
      const hash = createHash('sha256');
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (res.headers['content-type']?.startsWith('application/json')) chunks.push(c);
        else hash.update(c);
      });
      res.on('end', () => resolve({ status: res.statusCode, size, sha256: hash.digest('hex'), json: chunks.length ? JSON.parse(Buffer.concat(chunks)) : undefined }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 16 });

async function run(store) {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-files-'));
  const settings = [];
  let double;
  if (store === 'elasticsearch') {
    const started = await startDouble(PORT + 3);
    double = started.proc;
    const token = started.token;
    settings.push('-E', `output.elasticsearch.hosts=http://127.0.0.1:${PORT + 3}`, '-E', `output.elasticsearch.service_token=${token}`);
  }
  const cli = (args) => JSON.parse(execFileSync(process.execPath, [dist, ...args, '--json', '-E', `path.data=${dir}`, ...settings], { cwd: dir, maxBuffer: 64 * MiB }).toString());
  const server = spawn(process.execPath, [...pkg.fleetServer.nodeFlags, dist, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1',
    '-E', `inputs.0.server.port=${PORT}`, '-E', `inputs.0.server.internal_port=${PORT + 1}`, '-E', 'logging.level=warn',
    // Open the chunk limiter: this measures the server, not the throttle.
    '-E', 'inputs.0.server.limits.upload_chunk_limit.interval=1us', '-E', 'inputs.0.server.limits.upload_chunk_limit.burst=100000',
    ...settings], { stdio: ['ignore', 'ignore', 'inherit'] });
  const base = `http://127.0.0.1:${PORT}`;
  try {
    await waitFor('the server', async () => (await send(`${base}/api/status`)).status === 200);
    const policy = join(dir, 'p.yml');
    writeFileSync(policy, 'id: bench\noutputs:\n  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}\n');
    cli(['policy', 'put', policy]);
    const token = cli(['enrollment-token', 'create', '--policy', 'bench', '--name', 'bench']).api_key;
    const enrolled = await send(`${base}/api/fleet/agents/enroll`, {
      method: 'POST', headers: { 'User-Agent': `Elastic Agent ${pkg.version}`, Authorization: `ApiKey ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'PERMANENT', metadata: { local: {}, tags: [] } }),
    });
    const agent = enrolled.json.item;
    const auth = { Authorization: `ApiKey ${agent.access_api_key}` };

    const data = randomBytes(SIZE);
    const chunk = 4 * MiB;
    const count = Math.ceil(SIZE / chunk);
    const hashes = Array.from({ length: count }, (_, n) => sha256(data.subarray(n * chunk, (n + 1) * chunk)));
    const begin = await send(`${base}/api/fleet/uploads`, {
      method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ action_id: 'bench', agent_id: agent.id, src: 'agent', file: { name: 'bench.zip', mime_type: 'application/zip', size: SIZE } }),
    });
    const uploadId = begin.json.upload_id;
    const up = await withRss(server.pid, async () => {
      let next = 0;
      await Promise.all(Array.from({ length: PARALLEL }, async () => {
        for (let n = next++; n < count; n = next++) {
          const r = await send(`${base}/api/fleet/uploads/${uploadId}/${n}`, {
            method: 'PUT', headers: { ...auth, 'X-Chunk-SHA2': hashes[n] }, body: data.subarray(n * chunk, (n + 1) * chunk),
          });
          if (r.status !== 200) throw new Error(`chunk ${n}: ${r.status} ${JSON.stringify(r.json)}`);
        }
      }));
      const transit = sha256(Buffer.concat(hashes.map((h) => Buffer.from(h, 'hex'))));
      const done = await send(`${base}/api/fleet/uploads/${uploadId}`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ transithash: { sha256: transit } }) });
      if (done.status !== 200) throw new Error(`complete: ${done.status} ${JSON.stringify(done.json)}`);
    });

    const file = join(dir, 'big.bin');
    writeFileSync(file, data);
    const fileId = cli(['files', 'put', file, '--agents', agent.id]).id;
    let got;
    const down = await withRss(server.pid, async () => {
      got = await send(`${base}/api/fleet/file/${fileId}`, { headers: auth });
    });
    if (got.status !== 200 || got.sha256 !== sha256(data)) throw new Error(`download: ${got.status}, ${got.size} bytes`);

    const mib = SIZE / MiB;
    console.log(`\nFile transfer benchmark (${store === 'sqlite' ? 'embedded store' : 'Elasticsearch mode on the double'}, plain HTTP, loopback, ${mib} MiB)`);
    console.log(`  upload   ${(mib / up.seconds).toFixed(1)} MiB/s (${count} chunks, ${PARALLEL} at a time); server RSS ${up.before.toFixed(1)} → peak ${up.peak.toFixed(1)} MiB (+${(up.peak - up.before).toFixed(1)})`);
    console.log(`  download ${(mib / down.seconds).toFixed(1)} MiB/s; server RSS ${down.before.toFixed(1)} → peak ${down.peak.toFixed(1)} MiB (+${(down.peak - down.before).toFixed(1)})`);
  } finally {
    server.kill('SIGTERM');
    double?.kill('SIGTERM');
    await sleep(500);
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`load average: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const store of STORES) await run(store);
keepAlive.destroy();
