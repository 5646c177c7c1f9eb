// npm run bench: starts the bundled server on the embedded store, enrolls N simulated agents from
// several load-generator processes, holds their long polls, then writes a new policy revision and
// measures how fast it reaches them. Prints figures; asserts nothing.
import { spawn, fork, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 10_000);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 4);
const PORT = Number(process.env.BENCH_PORT ?? 18420);
const dist = new URL('../dist/fleet-server.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const stats = async () => (await fetch(`http://127.0.0.1:${PORT + 2}/stats?gc=1`)).json();

// --expose-gc lets /stats?gc=1 report the live heap, not garbage awaiting collection.
const serverArgs = () => ['--expose-gc', ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), dist,
  '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1', '-E', `inputs.0.server.port=${PORT}`,
  '-E', `inputs.0.server.internal_port=${PORT + 1}`, '-E', 'logging.level=warn',
  '-E', 'http.enabled=true', '-E', `http.port=${PORT + 2}`,
  // Open the enroll and check-in limiters: this measures the server, not the throttles.
  '-E', 'inputs.0.server.limits.enroll_limit.interval=1us', '-E', 'inputs.0.server.limits.enroll_limit.burst=100000',
  '-E', 'inputs.0.server.limits.enroll_limit.max=100000',
  '-E', 'inputs.0.server.limits.checkin_limit.interval=1us', '-E', 'inputs.0.server.limits.checkin_limit.burst=100000',
  '-E', 'inputs.0.server.limits.checkin_limit.max=100000',
];
let server = spawn(process.execPath, serverArgs(), { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
let stdout = '';
server.stdout.on('data', (d) => (stdout += d));
for (let i = 0; i < 200 && !/enrollment token for it:\s+(\S+)/.test(stdout); i++) await sleep(50);
const token = /enrollment token for it:\s+(\S+)/.exec(stdout)?.[1];
if (!token) throw new Error('server did not print a token');
await sleep(500);
const rssIdle = rssKiB(server.pid);
const heapIdle = (await stats()).beat.memstats.heap_used;

const workers = Array.from({ length: WORKERS }, () => fork(new URL('./bench/agent-worker.mjs', import.meta.url)));
function all(cmd, type, perWorker = () => ({})) {
  return Promise.all(workers.map((w, k) => new Promise((resolve, reject) => {
    const on = (m) => {
      if (m.type === 'error') reject(new Error(m.message));
      if (m.type === type) {
        w.off('message', on);
        resolve(m);
      }
    };
    w.on('message', on);
    w.send({ cmd, ...perWorker(k) });
  })));
}

const per = Math.ceil(AGENTS / WORKERS);
const enrolled = await all('enroll', 'enrolled', (k) => ({ url: `http://127.0.0.1:${PORT}`, token, count: Math.min(per, AGENTS - k * per), offset: k * per, concurrency: 32 }));
const enrollMs = Math.max(...enrolled.map((e) => e.ms));
const total = enrolled.reduce((s, e) => s + e.n, 0);
const checked = await all('first-checkin', 'checked-in', () => ({ concurrency: 32 }));
const firstCheckinMs = Math.max(...checked.map((c) => c.ms));
// BENCH_RESTART=1: restart before holding, to see held-poll memory without the enrollment burst's.
let rssIdleAfterRestart;
if (process.env.BENCH_RESTART) {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  server = spawn(process.execPath, serverArgs(), { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  await sleep(2000);
  rssIdleAfterRestart = rssKiB(server.pid);
}
await all('hold', 'holding');
await sleep(3000);
let status = await all('status', 'status', () => ({ rev: 99 }));
const held = status.reduce((s, x) => s + x.pending, 0);
// Let the check-in bookkeeping flush (10 s) so what is measured is the steady state of held polls.
await sleep(12_000);
const rssHeld = rssKiB(server.pid);
const statsHeld = await stats();

const policyFile = join(dir, 'policy.json');
writeFileSync(policyFile, JSON.stringify({
  id: 'default-policy',
  outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
  inputs: Array.from({ length: 8 }, (_, i) => ({ id: `logfile-${i}`, type: 'logfile', use_output: 'default', data_stream: { namespace: 'default' },
    streams: [{ id: `logfile-${i}-s`, data_stream: { dataset: `bench.${i}` }, paths: [`/var/log/bench-${i}/*.log`] }] })),
  agent: { monitoring: { enabled: false } },
  fleet: { hosts: [`http://127.0.0.1:${PORT}`] },
}));
const put = JSON.parse(execFileSync(process.execPath, [dist, 'policy', 'put', policyFile, '--json', '-E', `path.data=${dir}`], { cwd: dir }).toString());
const written = Date.parse(JSON.parse(execFileSync(process.execPath, [dist, 'policy', 'show', 'default-policy', '--json', '-E', `path.data=${dir}`], { cwd: dir }).toString())['@timestamp']);
let times = [];
for (let i = 0; i < 120; i++) {
  await sleep(500);
  status = await all('status', 'status', () => ({ rev: put.revision }));
  times = status.flatMap((s) => s.delivered);
  if (times.length >= total) break;
}
const badKeys = status.reduce((s, x) => s + x.badKeys, 0);
const lat = times.map((t) => t - written).sort((a, b) => a - b);
const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.ceil((p / 100) * total) - 1)] : NaN);
const rssAfter = rssKiB(server.pid);

const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : String(n));
console.log('\nFleet Server benchmark (embedded store, plain HTTP, loopback)');
console.log(`agents                          ${total} (${WORKERS} load-generator processes)`);
console.log(`enrollments/s                   ${fmt(total / (enrollMs / 1000))}  (${fmt(enrollMs / 1000, 2)} s for ${total})`);
console.log(`first check-ins/s               ${fmt(total / (firstCheckinMs / 1000))}  (each answered with POLICY_CHANGE + output key minted)`);
console.log(`held long polls                 ${held}`);
console.log(`server RSS idle                 ${fmt(rssIdle / 1024)} MiB`);
console.log(`server RSS with polls held      ${fmt(rssHeld / 1024)} MiB`);
console.log(`RSS per held agent (total)      ${fmt(rssHeld / total)} KiB   target ≤ 25 KB`);
console.log(`RSS per held agent (over idle)  ${fmt((rssHeld - rssIdle) / total)} KiB`);
if (rssIdleAfterRestart) console.log(`  restarted before holding: idle ${fmt(rssIdleAfterRestart / 1024)} MiB, per held agent over that ${fmt((rssHeld - rssIdleAfterRestart) / total)} KiB`);
console.log(`live JS heap per held agent     ${fmt((statsHeld.beat.memstats.heap_used - heapIdle) / 1024 / total)} KiB  (heap ${fmt(statsHeld.beat.memstats.heap_used / 1048576)} MiB, server counts ${statsHeld.fleet.checkin.held} held)`);
console.log(`policy revision ${put.revision} reached      ${lat.length}/${total} agents`);
console.log(`  p50 / p99 / 100%              ${fmt(pct(50) / 1000, 3)} s / ${fmt(pct(99) / 1000, 3)} s / ${fmt(lat.length === total ? lat[lat.length - 1] / 1000 : NaN, 3)} s   target 100% ≤ 5 s`);
console.log(`responses without an output key ${badKeys}`);
console.log(`server RSS after the rollout    ${fmt(rssAfter / 1024)} MiB`);

// Workers exit on 'exit'; wait for the processes, not for a reply.
await Promise.all(workers.map((w) => new Promise((r) => {
  w.once('exit', r);
  w.send({ cmd: 'exit' });
})));
server.kill('SIGTERM');
await new Promise((r) => server.once('exit', r));
rmSync(dir, { recursive: true, force: true });
