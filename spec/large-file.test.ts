// A file larger than 100 MiB each way through the embedded store: uploaded in 4 MiB chunks (several at
// once) and downloaded whole. The server streams both, so its resident memory grows by a small part
// of the file, not by the file (a buffered transfer would add at least 101 MiB).
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { removeDir, startFleetServer, type FleetServerProcess } from './support/fleet-server';

jest.setTimeout(180_000);
const MiB = 1024 * 1024;
const SIZE = 101 * MiB;
const CHUNK = 4 * MiB;
/** Well under the file's size: what streaming may cost at most (buffers, allocator slack, GC timing). */
const MAX_GROWTH_MIB = 48;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

let server: FleetServerProcess;
afterAll(async () => {
  await server?.stop();
  if (server) removeDir(server.dataDir);
});

/** Runs fn while sampling the server's RSS; returns the growth over the start, in MiB. */
async function rssGrowth(fn: () => Promise<void>): Promise<number> {
  const pid = server.child.pid!;
  const before = rssMiB(pid);
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB(pid)); }, 10);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rssMiB(pid)) - before;
}

function put(url: string, headers: Record<string, string>, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'PUT', headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Downloads without holding the body: its hash and length only. */
function download(url: string, headers: Record<string, string>): Promise<{ status: number; size: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, agent: false }, (res) => {
      const h = createHash('sha256');
      let size = 0;
      res.on('data', (c: Buffer) => { size += c.length; h.update(c); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, size, sha256: h.digest('hex') }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

test('a 101 MiB upload and download stream through the embedded store with the server\'s RSS flat', async () => {
  server = await startFleetServer({ overrides: [
    'inputs.0.server.limits.upload_chunk_limit.interval=1ms', 'inputs.0.server.limits.upload_chunk_limit.burst=1000',
  ] });
  const agent = new SimAgent(server.url);
  expect((await agent.enroll((await server.enrollmentToken()))).status).toBe(200);
  const data = randomBytes(SIZE);
  const count = Math.ceil(SIZE / CHUNK);
  const hashes = Array.from({ length: count }, (_, n) => sha256(data.subarray(n * CHUNK, (n + 1) * CHUNK)));
  const begin = await agent.uploadBegin({ action_id: 'big', agent_id: agent.id, src: 'agent', file: { name: 'big.zip', mime_type: 'application/zip', size: SIZE } });
  const id = begin.json.upload_id as string;

  const upGrowth = await rssGrowth(async () => {
    let next = 0;
    await Promise.all([0, 1, 2, 3].map(async () => {
      for (let n = next++; n < count; n = next++) {
        const status = await put(`${server.url}/api/fleet/uploads/${id}/${n}`, agent.headers({ 'X-Chunk-SHA2': hashes[n]! }), data.subarray(n * CHUNK, (n + 1) * CHUNK));
        expect(status).toBe(200);
      }
    }));
    const transit = sha256(Buffer.concat(hashes.map((h) => Buffer.from(h, 'hex'))));
    expect((await agent.uploadComplete(id, transit)).status).toBe(200);
  });

  const file = join(server.dataDir, 'big.bin');
  writeFileSync(file, data);
  const fileId = (await cli(server.dataDir, ['files', 'put', file, '--agents', agent.id])).id as string;
  let got = { status: 0, size: 0, sha256: '' };
  const downGrowth = await rssGrowth(async () => {
    got = await download(`${server.url}/api/fleet/file/${fileId}`, agent.headers());
  });
  expect(got).toEqual({ status: 200, size: SIZE, sha256: sha256(data) });
  console.log(`server RSS growth: upload ${upGrowth.toFixed(1)} MiB, download ${downGrowth.toFixed(1)} MiB (file ${SIZE / MiB} MiB)`);
  expect(upGrowth).toBeLessThan(MAX_GROWTH_MIB);
  expect(downGrowth).toBeLessThan(MAX_GROWTH_MIB);
});
