// npm run bench: measures the packaged executable's start-up; then starts the bundled server, enrolls N simulated agents from several load-generator
// processes, holds their long polls, then writes a new policy revision and measures how fast it reaches
// them. Runs on the embedded store and in Elasticsearch mode on the double (BENCH_STORE=sqlite|elasticsearch
// picks one); the Elasticsearch run also measures a minute of steady long-polling: Elasticsearch requests
// by kind, documents written and the API-key cache hit rate; then a worker crash and a restart under the
// held polls (bench/storm.mjs). BENCH_TLS=1.3 or 1.2 runs the scale run over TLS (a self-signed ECDSA
// P-256 certificate; the agents offer only that version and resume their sessions) and adds handshakes per
// server CPU second, full and resumed. Prints figures; asserts nothing.
import { spawn, fork, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, cpuSecondsOf, ensurePortsFree, generatorNice, listenOverflows, machineText, OVERFLOWS_MEANING, pssKiB, rssEachKiB, rssKiB, rssSettled, sleep, startDouble, waitFor } from './bench/common.mjs';
import { printOutcomes, runStorms, STORMS } from './bench/storm.mjs';
import { freshStats } from './bench/fresh-stats.mjs';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 10_000);
// One load-generator process holds at most ~16,000 agents (20,000 open files per process here).
const WORKERS = Number(process.env.BENCH_WORKERS ?? Math.max(4, Math.ceil(AGENTS / 16_000)));
/** Requests in flight per load-generator process while agents enroll and take their first policy. */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
/** inputs.0.server.workers for the server (default: its own choice). */
const SERVER_WORKERS = process.env.BENCH_SERVER_WORKERS;
const GZIP_BODIES = process.env.BENCH_GZIP_BODIES !== '0';
const PORT = Number(process.env.BENCH_PORT ?? 18420);
// BENCH_STORE picks runs: sqlite, elasticsearch, startup (the packaged executable's start-up); default all.
const RUNS = (process.env.BENCH_STORE ?? 'startup,sqlite,elasticsearch,opamp').split(',');
const STORES = RUNS.filter((r) => r === 'sqlite' || r === 'elasticsearch');
const STEADY_S = Number(process.env.BENCH_STEADY_SECONDS ?? 60);
const ES_LONG_POLL = process.env.BENCH_ES_LONG_POLL ?? '20s';
/** BENCH_TLS: the TLS version the agents speak (1.3 or 1.2); unset: plain HTTP. */
const TLS = process.env.BENCH_TLS ? `TLSv${process.env.BENCH_TLS}` : undefined;
/** Fresh connections (over all load-generator processes) in each handshake pass of a TLS run. */
const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 4000);
const dist = new URL('../dist/fleet-server.js', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : String(n));
/** Seconds between two readings of the parent's monotonic clock (µs, as bigint). */
const monoS = (a, b) => Number(b - a) / 1e6;
/**
 * The check-in bookkeeping's flush interval the server runs with (inputs.0.server.bulk.checkin_flush_interval):
 * its default, 10 s, unless BENCH_SERVER_E sets it.
 */
const CHECKIN_FLUSH_S = (() => {
  const m = /(?:^|\s)inputs\.0\.server\.bulk\.checkin_flush_interval=(\d+(?:\.\d+)?)(ms|s|m)?(?:\s|$)/.exec(process.env.BENCH_SERVER_E ?? '');
  return m ? Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2] ?? 's'] : 10;
})();


async function run(store) {
  const machineStart = machineText();
  await ensurePortsFree([PORT, PORT + 1, PORT + 2, ...(store === 'elasticsearch' ? [PORT + 3] : [])]);
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-'));
  const stats = async () => (await freshStats(`http://127.0.0.1:${PORT + 2}/stats?gc=1`)).json();
  const statsNoGc = async () => (await freshStats(`http://127.0.0.1:${PORT + 2}/stats`, { signal: AbortSignal.timeout(20_000) })).json();
  let double;
  const storeSettings = [];
  if (store === 'elasticsearch') {
    const started = await startDouble(PORT + 3);
    double = started.proc;
    const token = started.token;
    storeSettings.push('-E', `output.elasticsearch.hosts=http://127.0.0.1:${PORT + 3}`, '-E', `output.elasticsearch.service_token=${token}`);
  }
  const doubleStats = async () => (await fetch(`http://127.0.0.1:${PORT + 3}/_double/stats`)).json();
  // The certificate as spec/support/certs.ts makes it: ECDSA P-256, for localhost and 127.0.0.1.
  const tlsSettings = [];
  let tls;
  if (TLS) {
    const [certPath, keyPath] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyPath, '-out', certPath], { stdio: 'ignore' });
    tls = { ca: readFileSync(certPath, 'utf8'), version: TLS };
    tlsSettings.push('-E', 'inputs.0.server.ssl.enabled=true', '-E', `inputs.0.server.ssl.certificate=${certPath}`, '-E', `inputs.0.server.ssl.key=${keyPath}`,
      // The handshake passes each make one status request per connection: measure handshakes, not the throttle.
      '-E', 'inputs.0.server.limits.status_limit.interval=1us', '-E', 'inputs.0.server.limits.status_limit.burst=100000',
      '-E', 'inputs.0.server.limits.status_limit.max=100000');
  }
  const cli = (args) => JSON.parse(execFileSync(process.execPath, [dist, ...args, '--json', '-E', `path.data=${dir}`, ...storeSettings], { cwd: dir }).toString());

  // --expose-gc lets /stats?gc=1 report the live heap, not garbage awaiting collection.
  // The server runs with the V8 flags it ships with (package.json fleetServer.nodeFlags), plus BENCH_NODE_FLAGS.
  const serverArgs = ['--expose-gc', ...pkg.fleetServer.nodeFlags, ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), dist,
    '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1', '-E', `inputs.0.server.port=${PORT}`,
    '-E', `inputs.0.server.internal_port=${PORT + 1}`, '-E', 'logging.level=warn',
    '-E', 'http.enabled=true', '-E', `http.port=${PORT + 2}`,
    // The enroll and check-in limiters off (0, as upstream): this measures the server, not the throttles. A
    // cap of 100,000 was not open with workers: each takes 1/n of it, and the kernel does not deal
    // reconnecting agents out evenly, so the fullest worker refused polls with Retry-After up to 60 s.
    '-E', 'inputs.0.server.limits.enroll_limit.interval=0', '-E', 'inputs.0.server.limits.enroll_limit.burst=0',
    '-E', 'inputs.0.server.limits.enroll_limit.max=0',
    '-E', 'inputs.0.server.limits.checkin_limit.interval=0', '-E', 'inputs.0.server.limits.checkin_limit.burst=0',
    '-E', 'inputs.0.server.limits.checkin_limit.max=0',
    // Elasticsearch mode: polls of 15–20 s, so a minute of steady state holds several check-ins per agent
    // (BENCH_ES_LONG_POLL=default: the server's 5 minutes, as the embedded store's run, so that what is
    // held is measured rather than 1,500 check-ins a second at 30,000 agents).
    ...(store === 'elasticsearch' && ES_LONG_POLL !== 'default' ? ['-E', `inputs.0.server.timeouts.checkin_long_poll=${ES_LONG_POLL}`, '-E', 'inputs.0.server.timeouts.checkin_jitter=5s'] : []),
    ...(SERVER_WORKERS ? ['-E', `inputs.0.server.workers=${SERVER_WORKERS}`] : []),
    // BENCH_SERVER_E: more -E settings, space-separated (e.g. inputs.0.server.limits.max_connections=0).
    ...(process.env.BENCH_SERVER_E ?? '').split(' ').filter(Boolean).flatMap((e) => ['-E', e]),
    ...storeSettings,
    ...tlsSettings,
  ];
  // The restart scenario (bench/storm.mjs) starts a second one with the same arguments.
  const startServer = () => spawn(process.execPath, serverArgs, { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
  let server = startServer();
  // A bench that fails midway must not leave a server holding the ports for the next run.
  const killServer = () => server.kill('SIGKILL');
  process.once('exit', killServer);
  let stdout = '';
  server.stdout.on('data', (d) => (stdout += d));
  // Without forced GCs: the idle reading below must not follow GCs the bench forced.
  await waitFor('the server', () => statsNoGc().then((s) => s.fleet.status === 'HEALTHY'));
  // The embedded store's zero-config start made the default policy (its token is printed only on a
  // terminal); Elasticsearch mode makes none, as Kibana would.
  if (store === 'sqlite') await waitFor('the default policy', () => stdout.includes('Created policy "default-policy"'));
  else {
    writePolicy(join(dir, 'p1.json'), 0);
    cli(['policy', 'put', join(dir, 'p1.json')]);
  }
  const token = cli(['enrollment-token', 'create', '--policy', 'default-policy']).api_key;
  // The idle reading takes the held reading's settle rule (25 s, then until the RSS stops falling), with
  // no forced GC before it either; the heap's forced-GC reading comes after the RSS and PSS, as there.
  await sleep(25_000);
  const idleSettledS = 25 + await rssSettled(server.pid);
  const rssIdle = rssKiB(server.pid);
  const pssIdle = pssKiB(server.pid);
  const heapIdle = (await stats()).beat.memstats.heap_used;
  const cpuStart = cpuSeconds(server.pid);

  const agentNice = generatorNice(server.pid);
  const workers = Array.from({ length: WORKERS }, () => fork(new URL('./bench/agent-worker.mjs', import.meta.url), { env: { ...process.env, BENCH_AGENT_NICE: String(agentNice) } }));
  // Where a phase's CPU goes: the primary alone, the whole server, the load generators (they share the cores).
  // In Elasticsearch mode the double's CPU too (it shares the cores).
  const cpuSplit = () => ({ primary: cpuSecondsOf([server.pid]), server: cpuSeconds(server.pid), generators: cpuSecondsOf(workers.map((w) => w.pid)), overflows: listenOverflows(),
    double: double ? cpuSecondsOf([double.pid]) : undefined });
  const splitText = (a, b) => {
    const d = (k) => b[k] - a[k];
    return `primary ${fmt(d('primary'))}, workers ${fmt(d('server') - d('primary'))}, load generators ${fmt(d('generators'))}${double ? `, the double ${fmt(d('double'))}` : ''}`;
  };
  const cpuEnroll0 = cpuSplit();
  const all = (cmd, type, perWorker = () => ({})) => Promise.all(workers.map((w, k) => new Promise((resolve, reject) => {
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

  const per = Math.ceil(AGENTS / WORKERS);
  // Rates are over the parent's own monotonic clock, from the first command sent to the last reply
  // received: the generators' start skew and the IPC delay count (the longest generator's own time is printed beside).
  const monoEnroll = process.hrtime.bigint() / 1000n;
  const enrolled = await all('enroll', 'enrolled', (k) => ({
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${PORT}`, token, count: Math.max(0, Math.min(per, AGENTS - k * per)), offset: k * per, concurrency: CONCURRENCY,
    localAddress: `127.0.0.${k + 2}`, gzipBodies: GZIP_BODIES, tls,
  }));
  const monoEnrollEnd = process.hrtime.bigint() / 1000n;
  const enrollS = monoS(monoEnroll, monoEnrollEnd);
  const enrollMs = Math.max(...enrolled.map((e) => e.ms));
  const cpuEnroll1 = cpuSplit();
  const cpuEnrolled = cpuEnroll1.server;
  const total = enrolled.reduce((s, e) => s + e.n, 0);
  const enrollDropped = enrolled.reduce((s, e) => s + e.dropped, 0);
  const enrollFailures = enrolled.reduce((s, e) => s + e.failures, 0);
  // Each agent's check-in body is compressed before the first check-ins are timed (agent-worker.mjs prepare).
  await all('prepare', 'prepared');
  const cpuFirst0 = cpuSplit();
  const monoFirst = process.hrtime.bigint() / 1000n;
  const checked = await all('first-checkin', 'checked-in', () => ({ concurrency: CONCURRENCY }));
  const monoFirstEnd = process.hrtime.bigint() / 1000n;
  const firstCheckinMs = Math.max(...checked.map((c) => c.ms));
  const firstS = monoS(monoFirst, monoFirstEnd);
  const firstBadKeys = checked.reduce((s, c) => s + c.badKeys, 0);
  const cpuFirst1 = cpuSplit();
  const cpuCheckedIn = cpuFirst1.server;
  // Each agent acknowledges the policy it took (POST /acks), as Elastic Agent does once it has applied it.
  const cpuAck0 = cpuSplit();
  const monoAck = process.hrtime.bigint() / 1000n;
  const acked = await all('ack', 'acked', () => ({ concurrency: CONCURRENCY }));
  const monoAckEnd = process.hrtime.bigint() / 1000n;
  const ackMs = Math.max(...acked.map((c) => c.ms));
  const ackS = monoS(monoAck, monoAckEnd);
  const ackedFirst = acked.reduce((n, c) => n + c.n, 0);
  const cpuAck1 = cpuSplit();
  // BENCH_HOLD_PAUSE_S: a pause before the agents start polling (the first check-ins' bookkeeping written first).
  await sleep(Number(process.env.BENCH_HOLD_PAUSE_S ?? 0) * 1000);
  const holdStarted = performance.now();
  const monoHold = process.hrtime.bigint() / 1000n;
  const cpuHoldStart = cpuSeconds(server.pid);
  const overflowsHold0 = listenOverflows();
  await all('hold', 'holding');
  // Every agent starts its poll at once: measure once the server holds them all (it may turn some away
  // and have them come back, or still be accepting them on a busy machine). Counted without a forced GC.
  const serverHeld = async () => (await statsNoGc().catch(() => undefined))?.fleet.checkin?.held ?? 0;
  let heldByServer = 0;
  for (let i = 0; i < 1200 && (heldByServer = await serverHeld()) < total; i++) await sleep(1000);
  const holdMs = performance.now() - holdStarted;
  const monoHeld = process.hrtime.bigint() / 1000n;
  const cpuHeld = cpuSeconds(server.pid);
  const overflowsHeld = listenOverflows();
  let status = await all('status', 'status', () => ({ rev: 99 }));
  const held = status.reduce((s, x) => s + x.pending, 0);
  // Let the check-in bookkeeping flush (10 s) and the server give back what the burst left (memory-trim.ts:
  // two looks 10 s apart without growth), so what is measured is the steady state of held polls.
  const quietSplit0 = cpuSplit();
  const quiet0 = performance.now();
  await sleep(25_000);
  const quietSplit1 = cpuSplit();
  const quietS = (performance.now() - quiet0) / 1000;
  // What holding alone costs (the check-in bookkeeping's last_checkin sweeps, timers): a rollout's CPU
  // includes it too.
  const cpuHoldingPerS = (quietSplit1.server - quietSplit0.server) / quietS;
  // Measured once the RSS has stopped falling (a look of every process's trim, 10 s, without a 1 % drop;
  // at most a minute more): a slow wave (Elasticsearch mode holds 30,000 polls over ~90 s) can leave a
  // worker inside its minute between trims at the 25 s mark. The idle reading took the same rule.
  const settledS = 25 + await rssSettled(server.pid);
  const rssHeld = rssKiB(server.pid);
  const rssHeldEach = rssEachKiB(server.pid);
  const pssHeld = pssKiB(server.pid);
  // Read without a forced GC, at once after the RSS: the polls the server holds (the per-agent divisor) and
  // its worker restarts so far (a worker replaced during the burst makes the reading invalid).
  const statsHeld = await statsNoGc();
  const atMemory = await all('status', 'status', () => ({ rev: 99 }));
  const pendingAtMemory = atMemory.reduce((s, x) => s + x.pending, 0);
  const serverHeldAtMemory = statsHeld.fleet.checkin?.held ?? 0;
  const perAgent = Math.min(serverHeldAtMemory, pendingAtMemory);
  const restartsAtMemory = statsHeld.fleet.cluster?.restarts;
  // The live heap: a forced GC in every process, after the RSS and PSS readings (as the idle heap's).
  const heapStats = await stats();

  let steady;
  if (store === 'elasticsearch') {
    const [d0, s0] = [await doubleStats(), await statsNoGc()];
    const t0 = performance.now();
    const split0 = cpuSplit();
    await sleep(STEADY_S * 1000);
    const [d1, s1] = [await doubleStats(), await statsNoGc()];
    const split1 = cpuSplit();
    // Over the measured time between the two readings, not the nominal STEADY_S.
    const seconds = (performance.now() - t0) / 1000;
    // Per 1,000 agents held (the memory reading's count), as the per-agent memory figures are.
    const scale = (n) => (n / (perAgent / 1000)) / (seconds / 60);
    const kinds = Object.keys(d1.requests).map((k) => [k, (d1.requests[k] ?? 0) - (d0.requests[k] ?? 0)]).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const hits = s1.fleet.auth_cache.hits - s0.fleet.auth_cache.hits;
    const misses = s1.fleet.auth_cache.misses - s0.fleet.auth_cache.misses;
    steady = { kinds, scale, seconds, cpu: splitText(split0, split1), docs: d1.docsWritten - d0.docsWritten, hits, misses, bulk: (d1.requests.bulk ?? 0) - (d0.requests.bulk ?? 0) };
  }

  writePolicy(join(dir, 'p2.json'), 8);
  const doubleBefore = store === 'elasticsearch' ? await doubleStats() : undefined;
  const cpuRollout0 = cpuSplit();
  // The monotonic clock (µs), as V8's --cpu-prof timestamps have it: a profile can be cut to the rollout.
  const monoStart = process.hrtime.bigint() / 1000n;
  const put = cli(['policy', 'put', join(dir, 'p2.json')]);
  const written = Date.parse(cli(['policy', 'show', 'default-policy'])['@timestamp']);
  // Counts every half second; the delivery times once at the end (14,000 of them per generator every
  // half second were a few per cent of the generators' CPU during the rollout).
  for (let i = 0; i < 240; i++) {
    await sleep(500);
    status = await all('status', 'status', () => ({ rev: put.revision }));
    if (status.reduce((n, s) => n + s.deliveredCount, 0) >= total && status.reduce((n, s) => n + s.ackedCount, 0) >= total) break;
  }
  const rolloutAckedS = (Date.now() - written) / 1000;
  const rolloutAcked = status.reduce((n, s) => n + s.ackedCount, 0);
  const monoEnd = process.hrtime.bigint() / 1000n;
  status = await all('status', 'status', () => ({ rev: put.revision, times: true }));
  const times = status.flatMap((s) => s.delivered);
  const cpuRollout1 = cpuSplit();
  // What the rollout asked of Elasticsearch: upstream reads no secret and writes nothing per agent for it.
  const doubleAfter = doubleBefore ? await doubleStats() : undefined;
  const rolloutRequests = doubleAfter ? Object.keys(doubleAfter.requests)
    .map((k) => [k, (doubleAfter.requests[k] ?? 0) - (doubleBefore.requests[k] ?? 0)]).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]) : [];
  const badKeys = status.reduce((s, x) => s + x.badKeys, 0);
  const lat = times.map((t) => t - written).sort((a, b) => a - b);
  // A percentile fewer agents reached than it needs is "not reached", not the slowest delivery seen.
  const pct = (p) => {
    const need = Math.max(1, Math.ceil((p / 100) * total));
    return lat.length >= need ? `${fmt(lat[need - 1] / 1000, 3)} s` : 'not reached';
  };
  const rssAfter = rssKiB(server.pid);
  const cpuEnd = cpuSeconds(server.pid);
  const reconnects = status.reduce((s, x) => ({ full: s.full + x.handshakes.full, resumed: s.resumed + x.handshakes.resumed }), { full: 0, resumed: 0 });

  // TLS: fresh clients, one status request per connection; first with full handshakes, then each offering
  // a session from the first pass. Per server CPU second, so the load generators' own CPU does not count.
  const handshakes = [];
  if (tls) {
    // Once every agent holds its poll again (and the check-in bookkeeping has flushed), the server is idle
    // but for these connections.
    for (let i = 0; i < 60 && status.reduce((s, x) => s + x.pending, 0) < total; i++) {
      await sleep(1000);
      status = await all('status', 'status', () => ({ rev: put.revision }));
    }
    await sleep(12_000);
    for (const resume of [false, true]) {
      const cpu0 = cpuSeconds(server.pid);
      const r = await all('handshakes', 'handshakes', () => ({ count: Math.ceil(HANDSHAKES / WORKERS), concurrency: 16, resume }));
      const cpu = cpuSeconds(server.pid) - cpu0;
      const sum = (k) => r.reduce((s, x) => s + x[k], 0);
      const failures = {};
      for (const [k, n] of r.flatMap((x) => Object.entries(x.failures))) failures[k] = (failures[k] ?? 0) + n;
      handshakes.push({ resume, n: sum('n'), resumed: sum('resumed'), failures, cpu, ms: Math.max(...r.map((x) => x.ms)) });
    }
  }

  const transport = tls ? `TLS ${TLS.slice(4)}, ECDSA P-256 certificate` : 'plain HTTP';
  console.log(`\nFleet Server benchmark (${store === 'sqlite' ? 'embedded store' : 'Elasticsearch mode on the double'}, ${transport}, loopback)`);
  console.log(`machine at start                ${machineStart}`);
  console.log(`server limits                   enroll and check-in rate limiters off (enroll_limit, checkin_limit: 0): the bench measures the server, not those throttles${tls ? '; status_limit raised for the handshake passes' : ''}`);
  console.log(`agents                          ${total} (requested ${AGENTS}, enrolled ${total}, given up after 30 failed tries ${enrollDropped}, held at the memory reading ${perAgent}; ${WORKERS} load-generator processes at nice ${agentNice}, the server's workers', ${WORKERS * CONCURRENCY} requests in flight while enrolling and taking the first policy)`);
  console.log(`enrollments/s                   ${fmt(total / enrollS)}  (${fmt(enrollS, 2)} s for ${total}, the parent's clock from first command to last reply; longest generator ${fmt(enrollMs / 1000, 2)} s; ${enrollFailures} failed tries retried, ${enrollDropped} agents given up; monotonic µs ${monoEnroll}–${monoEnrollEnd})`);
  console.log(`first check-ins/s               ${fmt(total / firstS)}  (${fmt(firstS, 2)} s, the parent's clock; longest generator ${fmt(firstCheckinMs / 1000, 2)} s; each answered with POLICY_CHANGE, output key present in ${total - firstBadKeys} of ${total}; monotonic µs ${monoFirst}–${monoFirstEnd})`);
  console.log(`policy acks/s                   ${fmt(ackedFirst / ackS)}  (${ackedFirst} of ${total} taken in ${fmt(ackS, 2)} s, the parent's clock; longest generator ${fmt(ackMs / 1000, 2)} s; one POST /acks per agent on a connection of its own; monotonic µs ${monoAck}–${monoAckEnd})`);
  console.log(`server CPU seconds              enroll ${fmt(cpuEnrolled - cpuStart)}, first check-ins ${fmt(cpuCheckedIn - cpuFirst0.server)}, acks ${fmt(cpuAck1.server - cpuAck0.server)}, whole run ${fmt(cpuEnd - cpuStart)}`);
  console.log(`  enroll                        ${splitText(cpuEnroll0, cpuEnroll1)}`);
  console.log(`  first check-ins               ${splitText(cpuFirst0, cpuFirst1)}`);
  console.log(`  acks                          ${splitText(cpuAck0, cpuAck1)}`);
  console.log(`listen-queue overflows          enroll ${cpuEnroll1.overflows - cpuEnroll0.overflows}, first check-ins ${cpuFirst1.overflows - cpuFirst0.overflows}, polls reaching the server ${overflowsHeld - overflowsHold0}  (${OVERFLOWS_MEANING})`);
  console.log(`check-in bodies                 ${GZIP_BODIES ? 'gzip (as Elastic Agent 9.4+)' : 'plain JSON'}`);
  console.log(`held long polls                 ${held} in flight at the agents, ${heldByServer} held by the server ${fmt(holdMs / 1000)} s after all agents started polling at once (server CPU ${fmt(cpuHeld - cpuHoldStart)} s; monotonic µs ${monoHold}–${monoHeld})`);
  console.log(`server CPU while holding        ${fmt(cpuHoldingPerS, 2)} s per second over the ${fmt(quietS)} s after all were held (bookkeeping, memory trim)`);
  console.log(`  over those ${fmt(quietS, 0)} s               ${splitText(quietSplit0, quietSplit1)}`);
  console.log(`server processes                ${statsHeld.fleet.cluster ? `${statsHeld.fleet.cluster.workers} workers + primary (inputs.0.server.workers)` : '1'}`);
  // Per held agent: over the polls held at the memory reading (the server's count, or the generators' if
  // fewer), not over the agents enrolled; marked when fewer than requested.
  const short = perAgent === 0 ? '   INVALID: no poll held at the reading' : perAgent < AGENTS ? `   [held ${perAgent} < requested ${AGENTS}]` : '';
  const restartsText = restartsAtMemory === undefined ? 'worker restarts n/a (one process)' : `worker restarts ${restartsAtMemory}${restartsAtMemory > 0 ? ' INVALID: a worker restarted before the measurement' : ''}`;
  console.log(`server RSS idle                 ${fmt(rssIdle / 1024)} MiB, ${idleSettledS} s after the enrollment token was made (the held reading's settle rule)`);
  console.log(`server RSS with polls held      ${fmt(rssHeld / 1024)} MiB${rssHeldEach.length > 1 ? `  (primary ${fmt(rssHeldEach[0] / 1024)}, workers ${rssHeldEach.slice(1).map((k) => fmt(k / 1024, 0)).join(' / ')})` : ''}, ${settledS} s after all were held; ${restartsText}`);
  const target = store === 'sqlite' ? 'target ≤ 25 KiB (embedded store, 100,000 agents)' : 'target ≤ 30 KiB (Elasticsearch mode)';
  console.log(`RSS per held agent (total)      ${fmt(rssHeld / perAgent)} KiB   ${target}; over ${perAgent} held (server ${serverHeldAtMemory}, generators ${pendingAtMemory} in flight)${short}`);
  console.log(`RSS per held agent (over idle)  ${fmt((rssHeld - rssIdle) / perAgent)} KiB${short}`);
  console.log(`PSS per held agent (total)      ${fmt(pssHeld / perAgent)} KiB  (${fmt(pssHeld / 1024)} MiB; idle ${fmt(pssIdle / 1024)} MiB: shared pages counted once over all processes)${short}`);
  const m = heapStats.beat.memstats;
  console.log(`live JS heap per held agent     ${fmt((m.heap_used - heapIdle) / 1024 / perAgent)} KiB  (heap ${fmt(m.heap_used / 1048576)} MiB after a forced GC in every process, read after the RSS, as idle's; ${fmt(statsHeld.beat.memstats.heap_used / 1048576)} MiB without; server counts ${heapStats.fleet.checkin?.held} held)${short}`);
  console.log(`  heap committed ${fmt(m.heap_total / 1048576)} MiB, external ${fmt(m.external / 1048576)} MiB, array buffers ${fmt(m.array_buffers / 1048576)} MiB`);
  if (steady) {
    console.log(`steady long-polling, ${fmt(steady.seconds)} s measured (${STEADY_S} s asked): Elasticsearch requests per 1,000 agents per minute`);
    for (const [k, n] of steady.kinds) console.log(`  ${k.padEnd(28)}  ${fmt(steady.scale(n))}`);
    console.log(`  documents written            ${fmt(steady.scale(steady.docs))}`);
    console.log(`  _bulk requests per ${CHECKIN_FLUSH_S} s flush ${fmt(steady.bulk / (steady.seconds / CHECKIN_FLUSH_S), 2)}   target ≤ 1 per flush interval per instance (interval: checkin_flush_interval as configured, not read from the server)`);
    console.log(`  CPU seconds                  ${steady.cpu}`);
    console.log(`  check-ins authenticated from cache ${fmt((100 * steady.hits) / Math.max(1, steady.hits + steady.misses))} % (${steady.hits} of ${steady.hits + steady.misses})   target ≥ 95 %`);
  }
  console.log(`policy revision ${put.revision} reached      ${lat.length}/${total} agents`);
  console.log(`  p50 / p99 / 100%              ${pct(50)} / ${pct(99)} / ${lat.length === total ? `${fmt(lat[lat.length - 1] / 1000, 3)} s` : 'not reached'}   target 100% ≤ 5 s at 10,000 agents, ≤ 20 s at 100,000`);
  console.log(`  acknowledged                  by ${rolloutAcked}/${total} agents ${fmt(rolloutAckedS, 1)} s after the revision was written (each agent's POST /acks as the policy arrives)`);
  console.log(`  CPU seconds in the rollout    ${splitText(cpuRollout0, cpuRollout1)}  (monotonic µs ${monoStart}–${monoEnd}, until all acknowledged)`);
  console.log(`  listen-queue overflows        ${cpuRollout1.overflows - cpuRollout0.overflows}`);
  if (doubleAfter) console.log(`  Elasticsearch requests        ${rolloutRequests.map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}  (during the rollout, all agents)`);
  console.log(`responses without an output key ${badKeys}`);
  console.log(`server RSS after the rollout    ${fmt(rssAfter / 1024)} MiB`);
  if (tls) {
    console.log(`TLS sessions resumed            ${reconnects.resumed} of ${reconnects.full + reconnects.resumed} agent connections (enrollments make full handshakes; every later connection offers its session)`);
    for (const h of handshakes) {
      console.log(`handshakes/s per server core    ${h.resume ? 'resumed' : 'full   '} ${fmt(h.n / h.cpu, 0)}  (${h.n} connections, one GET /api/status each: ${fmt(h.cpu, 2)} server CPU s, ${fmt(h.n / (h.ms / 1000), 0)}/s wall; resumed ${h.resumed} of ${h.n}${Object.keys(h.failures).length ? `; failed: ${JSON.stringify(h.failures)}` : ''})`);
    }
  }
  console.log('requests of the simulated agents so far');
  await printOutcomes(all);
  // BENCH_LINGER_S: time to look inside the server holding every poll (gdb, /proc) before the storms.
  const linger = Number(process.env.BENCH_LINGER_S ?? 0);
  if (linger > 0) {
    console.log(`lingering ${linger} s: server pid ${server.pid}`);
    await sleep(linger * 1000);
  }
  // A worker killed and the server restarted while every agent holds a poll (BENCH_STORM=0 skips them).
  if (STORMS.length > 0) server = await runStorms({ total, server, start: startServer, all, statsUrl: `http://127.0.0.1:${PORT + 2}/stats` });
  console.log(`machine at end                  ${machineText()}`);

  // Workers exit on 'exit'; wait for the processes, not for a reply.
  await Promise.all(workers.map((w) => new Promise((r) => {
    w.once('exit', r);
    w.send({ cmd: 'exit' });
  })));
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  process.off('exit', killServer);
  if (double) {
    double.kill('SIGTERM');
    await new Promise((r) => double.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
}

function writePolicy(file, inputs) {
  writeFileSync(file, JSON.stringify({
    id: 'default-policy',
    outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } },
    inputs: Array.from({ length: inputs }, (_, i) => ({ id: `logfile-${i}`, type: 'logfile', use_output: 'default', data_stream: { namespace: 'default' },
      streams: [{ id: `logfile-${i}-s`, data_stream: { dataset: `bench.${i}` }, paths: [`/var/log/bench-${i}/*.log`] }] })),
    agent: { monitoring: { enabled: false } },
    fleet: { hosts: [`http://127.0.0.1:${PORT}`] },
  }));
}

/** Start-up time (spawn → /api/status 200) and idle RSS of the packaged executable, beside the bundle on Node. */
async function startup() {
  const machineStart = machineText();
  const exe = new URL('../dist/fleet-server', import.meta.url).pathname;
  if (!existsSync(exe) || statSync(exe).mtimeMs < statSync(dist).mtimeMs) {
    execFileSync(process.execPath, [new URL('./package.mjs', import.meta.url).pathname], { stdio: 'ignore' });
  }
  const measure = async (cmd, args) => {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-start-'));
    const t0 = performance.now();
    const child = spawn(cmd, [...args, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1', '-E', `inputs.0.server.port=${PORT}`,
      '-E', `inputs.0.server.internal_port=${PORT + 1}`, '-E', 'logging.level=warn'], { cwd: dir, stdio: 'ignore' });
    // Polled every 5 ms: the time is late by at most that and one request's round trip.
    await waitFor('start-up', async () => (await fetch(`http://127.0.0.1:${PORT}/api/status`)).status === 200, 30_000, 5);
    const ms = performance.now() - t0;
    await sleep(1000);
    const rss = rssKiB(child.pid);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
    return { ms, rss };
  };
  const sea = await measure(exe, []);
  const bundle = await measure(process.execPath, [...pkg.fleetServer.nodeFlags, dist]);
  console.log('\nStart-up (embedded store, first start: creates the default policy; spawn → /api/status 200, polled every 5 ms)');
  console.log(`machine at start                ${machineStart}`);
  console.log(`packaged executable             ${fmt(sea.ms, 0)} ms, idle RSS ${fmt(sea.rss / 1024)} MiB`);
  console.log(`node dist/fleet-server.js       ${fmt(bundle.ms, 0)} ms, idle RSS ${fmt(bundle.rss / 1024)} MiB`);
  console.log(`machine at end                  ${machineText()}`);
}

if (RUNS.includes('startup')) await startup();
for (const store of STORES) await run(store);
// OpAMP: Collectors holding WebSockets, RSS per connection, a remote-configuration change reaching all (bench-opamp.mjs).
if (RUNS.includes('opamp')) {
  console.log('\nOpAMP (embedded store)');
  execFileSync(process.execPath, [new URL('./bench-opamp.mjs', import.meta.url).pathname], { stdio: 'inherit' });
}
