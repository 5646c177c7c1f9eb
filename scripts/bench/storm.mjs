// Reconnect storms (issue 11), run after the rollout while every agent holds a long poll: one server worker
// killed (the others and its replacement take its agents), and the whole server stopped with SIGTERM and
// started again on the same data and ports. Measured from both sides: the server's count of held polls
// (/stats) says when all agents are back; the load generators say what they met on the way (statuses,
// Retry-After values, resets, connections refused).
import { childPids, listenOverflows, OVERFLOWS_MEANING, sleep } from './common.mjs';
import { freshStats } from './fresh-stats.mjs';

/** An agent not holding a poll again this long after the event counts as lost (issue 11). */
const BACK_WITHIN_MS = 60_000;
/** How often the held count is sampled. */
const SAMPLE_MS = 250;
/** Held counts are printed at these seconds after the event. */
const MARKS_S = [1, 2, 5, 10, 20, 30, 60];
const RESET = /ECONNRESET|EPIPE|socket hang up/;
const REFUSED = /ECONNREFUSED/;

/** BENCH_STORM: which scenarios (crash, restart; default both); 0 skips them. */
export const STORMS = (process.env.BENCH_STORM ?? 'crash,restart').split(',').filter((s) => s && s !== '0');

/**
 * Runs the scenarios named in STORMS. ctx: total (agents), server (its process), start() (a new server with
 * the same arguments), all(cmd, type) (a command to every load generator, their replies), statsUrl (/stats
 * on the metrics listener). Resolves with the server process running at the end.
 */
export async function runStorms(ctx) {
  let server = ctx.server;
  if (STORMS.includes('crash')) await workerCrash({ ...ctx, server });
  if (STORMS.includes('restart')) server = await restart({ ...ctx, server });
  return server;
}

/** What the load generators' requests met so far besides 200s, by kind of request (enroll, first check-in, held poll). */
export async function printOutcomes(all) {
  const kinds = {};
  for (const reply of await all('outcomes', 'outcomes')) {
    for (const [kind, o] of Object.entries(reply.outcomes)) kinds[kind] = add(kinds[kind] ?? { status: {}, retryAfter: {}, errors: {}, okBySecond: {} }, o);
  }
  for (const [kind, o] of Object.entries(kinds)) {
    const d = summary(o);
    const statuses = Object.entries(o.status).filter(([k]) => k !== '200').map(([k, n]) => `${k} ×${n}`);
    const retry = Object.entries(o.retryAfter).map(([k, n]) => `${k} s ×${n}`);
    const others = Object.entries(o.errors).filter(([k]) => !RESET.test(k) && !REFUSED.test(k)).map(([k, n]) => `${k} ×${n}`);
    console.log(`  ${(LABEL[kind] ?? kind).padEnd(30)}  ${o.status[200] ?? 0} answered 200${statuses.length ? `; ${statuses.join(', ')}` : ''}`
      + `${retry.length ? `; Retry-After ${retry.join(', ')}` : ''}; resets ${describe(d.resets)}; refused ${d.refused.n}${others.length ? `; ${others.join(', ')}` : ''}`);
  }
}
const LABEL = { enroll: 'enrollments', checkin: 'first check-ins', poll: 'held polls' };

async function workerCrash(ctx) {
  const workers = childPids(ctx.server.pid);
  console.log(`\nWorker crash (SIGKILL one server worker while the agents hold polls)`);
  if (workers.length < 2) {
    console.log(`  skipped: the server runs ${workers.length === 0 ? 'one process' : 'one worker'} (BENCH_SERVER_WORKERS=2 or more)`);
    return;
  }
  const ready = await heldSamples(ctx, Date.now(), { untilAll: true });
  const before = await serverStats(ctx);
  const victim = workers[0];
  const victimHeld = before?.fleet.workers?.find((w) => w.pid === victim)?.checkin?.held;
  const o0 = await outcomes(ctx);
  const overflows0 = listenOverflows();
  const t0 = Date.now();
  process.kill(victim, 'SIGKILL');
  const back = await heldSamples(ctx, t0, { untilAll: true });
  const overflows = listenOverflows() - overflows0;
  const o1 = await outcomes(ctx);
  const after = await serverStats(ctx);
  const d = summary(diff(o0, o1));

  console.log(`  held before                     ${ready.last}/${ctx.total} on ${workers.length} workers; killed pid ${victim} holding ${victimHeld ?? '?'}`);
  printBack(ctx, back, 'after the kill');
  console.log(`  worker replaced                 ${after?.fleet.cluster ? `restarts ${after.fleet.cluster.restarts}, ${after.fleet.cluster.answering}/${after.fleet.cluster.workers} workers answering` : '?'}`);
  console.log(`  resets seen by clients          ${describe(d.resets)}   (the killed worker's own connections close with it)`);
  printAnswers(d);
  console.log(`  connections refused             ${d.refused.n}`);
  console.log(`  listen-queue overflows          ${overflows}   (${OVERFLOWS_MEANING})`);
  console.log(`  agents waiting to retry at end  ${back.waiting}`);
}

async function restart(ctx) {
  console.log(`\nRestart (SIGTERM while the agents hold polls, then a new server on the same data dir and ports)`);
  const ready = await heldSamples(ctx, Date.now(), { untilAll: true });
  const o0 = await outcomes(ctx);
  const overflows0 = listenOverflows();
  const t0 = Date.now();
  const exited = new Promise((r) => ctx.server.once('exit', (code, signal) => r(signal ?? code)));
  ctx.server.kill('SIGTERM');
  const exit = await exited;
  const tExit = Date.now();
  const o1 = await outcomes(ctx);
  const overflowsDrain = listenOverflows() - overflows0;

  const server = ctx.start();
  server.stdout?.resume();
  const tStart = Date.now();
  let healthy;
  const back = await heldSamples({ ...ctx, server }, tStart, {
    untilAll: true,
    onStats: async (s) => {
      if (!healthy && s.fleet.status === 'HEALTHY') healthy = { at: Date.now(), o: await outcomes(ctx) };
    },
  });
  if (server.exitCode !== null || server.signalCode !== null) throw new Error(`the restarted server exited (${server.signalCode ?? server.exitCode})`);
  const overflowsUp = listenOverflows() - overflows0 - overflowsDrain;
  const o3 = await outcomes(ctx);
  const drain = summary(diff(o0, o1));
  // No server accepting: from the old one's exit until the new one is healthy (all its workers ready).
  const down = summary(diff(o1, healthy?.o ?? o3));
  const up = summary(diff(healthy?.o ?? o3, o3));
  const whole = summary(diff(o0, o3));

  console.log(`  held before                     ${ready.last}/${ctx.total}`);
  console.log(`  drain (SIGTERM → exit)          ${fmtS(tExit - t0)}, exit ${exit}; polls answered ${drain.status[200] ?? 0}, refused ${drain.refused.n}, resets ${drain.resets.n}`);
  const spread = Array.from({ length: Math.floor(tExit / 1000) - Math.floor(t0 / 1000) + 1 }, (_, k) => drain.okBySecond[Math.floor(t0 / 1000) + k] ?? 0);
  console.log(`  drain's answers per second      ${spread.join(' ')}   (from SIGTERM's second to exit's)`);
  console.log(`  new server healthy after        ${healthy ? fmtS(healthy.at - tStart) : 'never'} (${fmtS(tStart - tExit)} from exit to spawn)`);
  printBack({ ...ctx, server }, back, "after the new server's start");
  // What an agent sees as the outage: from the SIGTERM (drain, exit, spawn and start-up included).
  console.log(`  all holding again, from SIGTERM ${back.allMs !== undefined ? `${fmtS(tStart - t0 + back.allMs)} after the SIGTERM (drain ${fmtS(tExit - t0)} + exit to spawn ${fmtS(tStart - tExit)} + ${fmtS(back.allMs)})` : 'not seen'}`);
  console.log(`                                  target: all agents back within 60 s with zero resets (stated for 50,000 agents; this run ${ctx.total})`);
  printAnswers(whole);
  console.log(`  resets seen by clients          ${describe(whole.resets)}   target 0 (drain ${drain.resets.n}, down ${down.resets.n}, up ${up.resets.n})`);
  console.log(`  refused, no server accepting    ${drain.refused.n + down.refused.n} (expected: drain ${drain.refused.n}, exit → healthy ${down.refused.n})`);
  console.log(`  refused, new server healthy     ${up.refused.n}`);
  console.log(`  listen-queue overflows          drain ${overflowsDrain}, new server ${overflowsUp}   (${OVERFLOWS_MEANING})`);
  // The new server's own count since its start: what it refused on the check-in route, by reason.
  const c = (await serverStats({ ...ctx, server }))?.http_server.routes?.checkin;
  if (c) console.log(`  server's check-in route         ${c.total} requests; rate-limited ${c.limit_rate}, over max ${c.limit_max}, failed ${c.fail}, dropped ${c.drop}`);
  console.log(`  agents waiting to retry at end  ${back.waiting}`);
  return server;
}

function printBack(ctx, back, since) {
  // Each mark shows the first reading taken between it and the next mark; a server that answered no
  // scrape in that span has no reading there, rather than a later one repeated under every mark.
  const marks = MARKS_S.filter((s) => back.samples.some((x) => x.ms >= s * 1000)).map((s) => {
    const until = (MARKS_S[MARKS_S.indexOf(s) + 1] ?? Infinity) * 1000;
    const reading = back.samples.find((x) => x.ms >= s * 1000 && x.ms < until);
    return `${s} s ${reading ? heldText(reading) : 'no reading'}`;
  });
  if (back.allMs !== undefined) console.log(`  all holding again               ${fmtS(back.allMs)} ${since} (${back.last}/${ctx.total}; lost 0)`);
  else if (back.lastPartial) console.log(`  all holding again               not seen: ≥ ${back.last}/${ctx.total} after ${fmtS(BACK_WITHIN_MS)} (${back.lastPartial} workers answered the last scrape)`);
  else console.log(`  all holding again               no: ${back.last}/${ctx.total} after ${fmtS(BACK_WITHIN_MS)}; lost ${ctx.total - back.last}`);
  console.log(`  held polls over time            ${marks.join(', ') || '-'}${back.unanswered ? `   (${back.unanswered} scrapes unanswered within 8 s)` : ''}`);
}

/** A held count; one summed over only the workers that answered is a lower bound, and says so. */
const heldText = (r) => (r.partial ? `≥ ${r.held} (${r.partial} workers)` : String(r.held));

function printAnswers(d) {
  const by = (pred) => Object.entries(d.status).filter(([k]) => pred(Number(k))).map(([k, n]) => `${k}: ${n}`).join(', ');
  const retry = Object.entries(d.retryAfter).sort((a, b) => Number(a[0]) - Number(b[0])).map(([k, n]) => `${k} s ×${n}`).join(', ');
  console.log(`  429s received                   ${d.status[429] ?? 0}${retry ? `   Retry-After ${retry}` : ''}`);
  console.log(`  5xx received                    ${sum(d.status, (k) => k >= 500)}${by((k) => k >= 500) ? ` (${by((k) => k >= 500)})` : ''}`);
  const others = by((k) => k !== 200 && k !== 429 && k < 500);
  if (others) console.log(`  other statuses                  ${others}`);
  const errors = Object.entries(d.errors).filter(([k]) => !RESET.test(k) && !REFUSED.test(k));
  if (errors.length) console.log(`  other connection errors         ${errors.map(([k, n]) => `${k}: ${n}`).join(', ')}`);
}

/**
 * The server's held polls sampled from `t0` until all agents hold one (untilAll) or BACK_WITHIN_MS pass.
 * A server not answering yet counts as none held.
 */
async function heldSamples(ctx, t0, { untilAll, onStats }) {
  const samples = [];
  let allMs;
  let unanswered = 0;
  for (;;) {
    const s = await serverStats(ctx);
    if (s && onStats) await onStats(s);
    const ms = Date.now() - t0;
    // A scrape the server did not answer in time (busy, or down) is no reading, not "none held"; a
    // server that never answered counts as none.
    const count = s?.fleet?.checkin?.held;
    // Workers that did not answer the primary within its 5 s are left out of the sum: a lower bound.
    const c = s?.fleet?.cluster;
    const partial = c && c.answering < c.workers ? `${c.answering}/${c.workers}` : undefined;
    if (count !== undefined) samples.push({ ms, held: count, partial });
    else unanswered++;
    const held = samples.at(-1)?.held ?? 0;
    if (untilAll && held >= ctx.total) {
      allMs = ms;
      break;
    }
    if (ms >= BACK_WITHIN_MS) break;
    await sleep(SAMPLE_MS);
  }
  const o = await ctx.all('outcomes', 'outcomes');
  const waiting = o.reduce((n, x) => n + x.n - x.pending, 0);
  if (samples.length === 0) samples.push({ ms: Date.now() - t0, held: 0 });
  return { samples, allMs, last: samples.at(-1).held, lastPartial: samples.at(-1).partial, waiting, unanswered };
}

async function serverStats(ctx) {
  try {
    // The primary waits up to 5 s for each worker's figures: a busy worker's answer is late, not missing.
    const res = await freshStats(ctx.statsUrl, { signal: AbortSignal.timeout(8000) });
    return res.ok ? await res.json() : undefined;
  } catch {
    return undefined;
  }
}

/** Every load generator's outcomes, summed over processes and request kinds. */
async function outcomes(ctx) {
  let total = { status: {}, retryAfter: {}, errors: {}, okBySecond: {} };
  for (const reply of await ctx.all('outcomes', 'outcomes')) {
    for (const kind of Object.values(reply.outcomes)) total = add(total, kind);
  }
  return total;
}

/** Two sets of outcomes added, count by count. */
function add(a, b) {
  const out = {};
  for (const part of Object.keys(a)) {
    out[part] = { ...a[part] };
    for (const [k, n] of Object.entries(b[part] ?? {})) out[part][k] = (out[part][k] ?? 0) + n;
  }
  return out;
}

function diff(a, b) {
  const out = {};
  for (const part of Object.keys(b)) {
    out[part] = {};
    for (const [k, n] of Object.entries(b[part])) if (n - (a[part][k] ?? 0) > 0) out[part][k] = n - (a[part][k] ?? 0);
  }
  return out;
}

/** Outcomes with the connection errors grouped: resets and refusals, each with its messages. */
function summary(d) {
  const group = (re) => {
    const by = Object.fromEntries(Object.entries(d.errors).filter(([k]) => re.test(k)));
    return { n: Object.values(by).reduce((s, n) => s + n, 0), by };
  };
  return { ...d, resets: group(RESET), refused: group(REFUSED) };
}

function describe(g) {
  const parts = Object.entries(g.by).map(([k, n]) => `${k} ${n}`);
  return `${g.n}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

const sum = (counts, pred) => Object.entries(counts).filter(([k]) => pred(Number(k))).reduce((s, [, n]) => s + n, 0);
const fmtS = (ms) => `${(ms / 1000).toFixed(1)} s`;
