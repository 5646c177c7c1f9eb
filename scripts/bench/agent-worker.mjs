// One load-generator process: plays many Elastic Agents with the requests real agents send
// (enroll, long-poll check-in with gzip accepted, policy acks). Driven by the parent over IPC.
import http from 'node:http';
import https from 'node:https';
import tlsLib from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { runAtNice, sleep } from './common.mjs';
import { deflatedPart, gzipOf } from './gzip-parts.mjs';
import { answer, rawPost } from './raw-http.mjs';

if (process.env.BENCH_AGENT_NICE) runAtNice(Number(process.env.BENCH_AGENT_NICE));

const UA = 'Elastic Agent 9.6.0';
let url;
/** This process's own loopback source address: 28,000 ephemeral ports each, so 100,000 agents fit. */
let localAddress;
/** Check-in bodies gzip'd, as Elastic Agent 9.4+ sends them. */
let gzipBodies = true;
/** Over TLS: { ca, version } (the server's self-signed certificate, the one protocol version offered). */
let tls;
/** TLS connections made, and how many of them resumed a session. */
const handshakes = { full: 0, resumed: 0 };
const agents = [];
/**
 * Check-ins on kept-alive connections, as Elastic Agent's Go client sends them (a poll answered, the next
 * goes on the same socket, over TLS too); BENCH_KEEPALIVE=0: a connection per request. A new TLS
 * connection offers the session the agent kept, as Elastic Agent's client does.
 */
const keepAlive = process.env.BENCH_KEEPALIVE !== '0';

/**
 * TLS options for one connection of `holder` (an agent, or one simulated fresh client): it offers the
 * session it kept, as Elastic Agent's client does on reconnect, and keeps the newest one the server sends.
 */
function tlsOptions(holder) {
  return tls ? { ca: tls.ca, servername: 'localhost', minVersion: tls.version, maxVersion: tls.version, session: holder?.session } : {};
}

function watchSession(socket, holder) {
  socket.once('secureConnect', () => {
    handshakes[socket.isSessionReused() ? 'resumed' : 'full']++;
    if (holder) holder.reused = socket.isSessionReused();
  });
  if (holder) socket.on('session', (session) => (holder.session = session));
}

/** `keep`: on the holder's kept-alive connection (check-ins). */
function post(path, headers, body, holder, method = 'POST', keep = false) {
  // The bare client, cheaper by far (raw-http.mjs); over TLS on its own tls.connect.
  if (method === 'POST') {
    const u = new URL(url);
    const secure = tls ? (opts) => {
      const socket = tlsLib.connect({ ...opts, ...tlsOptions(holder) });
      watchSession(socket, holder);
      return socket;
    } : undefined;
    return rawPost({ host: u.hostname, port: u.port, path, localAddress, body, secure, holder: keep && keepAlive ? holder : undefined, headers: {
      'User-Agent': UA, 'Content-Type': 'application/json', 'Accept-Encoding': 'gzip', ...headers,
    } });
  }
  return new Promise((resolve, reject) => {
    const u = new URL(path, url);
    const req = (tls ? https : http).request({ host: u.hostname, port: u.port, path: u.pathname, method, agent: false, localAddress, ...tlsOptions(holder), headers: {
      'User-Agent': UA, 'Content-Type': 'application/json', 'Accept-Encoding': 'gzip', ...headers,
    } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        let buf = Buffer.concat(chunks);
        if (res.headers['content-encoding'] === 'gzip') buf = gunzipSync(buf);
        resolve(answer(res.statusCode, res.headers['retry-after'], buf.toString()));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (tls) req.on('socket', (socket) => watchSession(socket, holder));
    req.end(body);
  });
}

/**
 * What the requests met, by kind (enroll, checkin = first check-in, poll = held check-in): HTTP statuses,
 * Retry-After values, 200s by wall-clock second (how a drain spread its answers), and connection errors by message ('socket hang up', 'read ECONNRESET', 'write EPIPE'
 * are resets; 'connect ECONNREFUSED' is no server listening). Cumulative; the parent takes differences.
 */
const outcomes = {};
const bump = (counts, key) => (counts[key] = (counts[key] ?? 0) + 1);
const outcomesOf = (kind) => (outcomes[kind] ??= { status: {}, retryAfter: {}, errors: {}, okBySecond: {} });

function tally(kind, r) {
  const o = outcomesOf(kind);
  bump(o.status, r.status);
  if (r.status === 200) bump(o.okBySecond, Math.floor(Date.now() / 1000));
  if (r.retryAfter !== undefined) bump(o.retryAfter, r.retryAfter);
  return r;
}

/** A failed request counted; what the caller gets instead of a response (status 0: back off as after an error). */
function tallyError(kind, err) {
  // Node names the local address in some messages ('… - Local (127.0.0.2:61622)'): one key per kind of error.
  bump(outcomesOf(kind).errors, String(err?.message ?? err).replace(/ - Local \(.*\)$/, '').slice(0, 60));
  return NO_ANSWER;
}
const NO_ANSWER = { status: 0 };
const counted = (kind) => (r) => tally(kind, r);
const failed = (kind) => (err) => tallyError(kind, err);

/**
 * How long a real agent waits before its next try: Retry-After on 429 and 503, else a second (a connection
 * refused or reset, another status); plus up to a second of jitter so that agents told the same thing do not
 * all come back in the same instant.
 */
function backoffMs(r) {
  const s = r.status === 429 || r.status === 503 ? Number(r.retryAfter) : NaN;
  return (Number.isFinite(s) && s >= 0 ? s * 1000 : 1000) + Math.random() * 1000;
}
/** Tries of an enrollment or first check-in before the agent counts as failed (each after its back-off). */
const ATTEMPTS = 30;

/**
 * `id`: the agent's id as it knows it; a real agent enrolls with one of its own (which the server
 * replaces with the enrolled one) and checks in with the enrolled one, so that its metadata is unchanged
 * and not written again at each check-in.
 */
const localMetadata = (i, id = 'x') => ({
  elastic: { agent: { id, version: '9.6.0', snapshot: false, build: { original: '9.6.0 (build: abcdef)' }, upgradeable: true, log_level: 'info' } },
  host: { hostname: `bench-host-${i}`, name: `bench-host-${i}`, id: `host-${i}`, architecture: 'x86_64', ip: ['10.0.0.1/24', 'fe80::1/64'], mac: ['00:00:00:00:00:01'] },
  os: { family: 'debian', kernel: '6.1.0', full: 'Debian GNU/Linux 12 (bookworm)', name: 'Debian GNU/Linux', platform: 'debian', version: '12 (bookworm)' },
});
/**
 * The agent's components as it reports them running policy revision `rev`: a policy change restarts
 * them (new pids), so the first check-in after one carries changed components, as Elastic Agent's does,
 * and the server writes them to the agent's document (not a plain refresh).
 */
const componentsAt = (rev) => [
  { id: 'filestream-default', type: 'filestream', status: 'HEALTHY', message: `Healthy: communicating with pid ${1000 + 2 * rev}`, units: [
    { id: 'filestream-default', type: 'output', status: 'HEALTHY', message: 'Healthy' },
    { id: 'filestream-default-logs-1', type: 'input', status: 'HEALTHY', message: 'Healthy' }] },
  { id: 'system/metrics-default', type: 'system/metrics', status: 'HEALTHY', message: `Healthy: communicating with pid ${1001 + 2 * rev}`, units: [
    { id: 'system/metrics-default', type: 'output', status: 'HEALTHY', message: 'Healthy' },
    { id: 'system/metrics-default-metrics-1', type: 'input', status: 'HEALTHY', message: 'Healthy' }] },
];

async function pool(items, concurrency, fn) {
  let i = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (i < items.length) {
      const idx = i++;
      await fn(items[idx], idx);
    }
  }));
}

/**
 * Enrolls `count` agents. failures: tries that failed (each retried after its back-off); dropped: agents
 * given up after ATTEMPTS failed tries (the parent prints them beside the agents requested).
 */
async function enroll({ token, count, concurrency, offset }) {
  const t0 = performance.now();
  let failures = 0;
  let dropped = 0;
  await pool(Array.from({ length: count }, (_, k) => offset + k), concurrency, async (i) => {
    const tlsSession = {};
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const r = await post('/api/fleet/agents/enroll', { Authorization: `ApiKey ${token}` },
        JSON.stringify({ type: 'PERMANENT', metadata: { local: localMetadata(i), user_provided: {}, tags: ['bench'] } }), tlsSession).then(counted('enroll'), failed('enroll'));
      if (r.status === 200) {
        agents.push({ i, id: r.json.item.id, key: r.json.item.access_api_key, rev: 0, ackedRev: 0, ackToken: '', deliveredAt: 0, session: tlsSession.session });
        return;
      }
      failures++;
      await sleep(backoffMs(r));
    }
    dropped++;
  });
  return { n: agents.length, ms: performance.now() - t0, failures, dropped };
}

/** The agent's own part of its check-in body, deflated. */
function agentPart(a, rev = a.rev) {
  return deflatedPart(JSON.stringify({ status: 'online', message: 'Running', local_metadata: localMetadata(a.i, a.id), components: componentsAt(rev) }).slice(0, -1));
}

/**
 * An agent's check-in body: its own part (status, metadata, components) and the part that changes with
 * the policy (ack token, policy id and revision), each encoded once (gzip-parts.mjs).
 */
const tails = new Map();
function checkinBody(a, extra) {
  // Made again once the agent runs another revision (its components restarted): taken from the part made
  // ahead while the generator was idle (precomputeHeads), or made now.
  if (a.headRev !== a.rev) {
    a.head = a.next?.rev === a.rev ? a.next.head : agentPart(a);
    a.headRev = a.rev;
    a.next = undefined;
    headsDue.push(a);
  }
  const tailText = `,${JSON.stringify({ ack_token: a.ackToken, ...extra }).slice(1)}`;
  let tail = tails.get(tailText);
  if (!tail) tails.set(tailText, (tail = deflatedPart(tailText)));
  return gzipBodies ? gzipOf(a.head, tail) : Buffer.concat([a.head.raw, tail.raw]);
}

/**
 * Each agent's part for the revision after the one it runs, made ahead while no agent of this generator
 * has taken a policy for IDLE_MS: a real agent compresses its body on its own machine, and here the
 * generators share the cores with the server, so deflating 100,000 new parts during a rollout (~6 s of
 * CPU) was the server's loss. A part not made in time is made when it is needed, as before.
 */
const headsDue = [];
const IDLE_MS = 15_000;
let lastPolicyAt = 0;
setInterval(() => {
  if (Date.now() - lastPolicyAt < IDLE_MS) return;
  for (let n = 0; n < 1000 && headsDue.length > 0; n++) {
    const a = headsDue.pop();
    if (a.next?.rev === a.rev + 1) continue;
    a.next = { rev: a.rev + 1, head: agentPart(a, a.rev + 1) };
  }
}, 500).unref();

function checkin(a, extra) {
  const headers = gzipBodies ? { Authorization: `ApiKey ${a.key}`, 'Content-Encoding': 'gzip' } : { Authorization: `ApiKey ${a.key}` };
  return post(`/api/fleet/agents/${a.id}/checkin`, headers, checkinBody(a, extra), a, 'POST', true);
}

/**
 * A held poll's POLICY_CHANGE: its revision and output key, found in the text as the server renders it (a
 * template: the policy's id, then its revision; one output). Parsing every 3.5 KB policy was a seventh of
 * the generators' CPU in a rollout. An answer in another shape is parsed.
 */
const POLICY_HEAD = /"data":\{"policy":\{"id":"[^"]*","revision":(\d+),"outputs":\{"default":\{[^{}]*?"api_key":"([^"]*)"/;
function policyOf(r) {
  const at = r.text.indexOf('"type":"POLICY_CHANGE"');
  if (at < 0) return undefined;
  const actionId = POLICY_ACTION_ID.exec(r.text)?.[1];
  const m = POLICY_HEAD.exec(r.text.slice(at));
  if (m && actionId) return { revision: Number(m[1]), apiKey: m[2], actionId };
  const a = r.json.actions.find((x) => x.type === 'POLICY_CHANGE');
  return { revision: a.data.policy.revision, apiKey: a.data.policy.outputs.default.api_key, actionId: a.id };
}
/** A POLICY_CHANGE's action id, `policy:<policy id>:<revision>` (the policy's own id has no such prefix). */
const POLICY_ACTION_ID = /"id":"(policy:[^"]+)"/;

/**
 * The agent acknowledges a policy it took, as Elastic Agent does once it has applied it (the policy change's
 * Ack and Commit: one POST /acks, on a connection of its own beside the held poll's). Retried after each
 * back-off; resolves to whether it was taken.
 */
async function ackPolicy(a, actionId) {
  const body = JSON.stringify({ events: [{
    type: 'ACTION_RESULT', subtype: 'ACKNOWLEDGED', agent_id: a.id, action_id: actionId,
    message: `Action '${actionId}' of type 'POLICY_CHANGE' acknowledged.`, timestamp: new Date().toISOString(),
  }] });
  for (let attempt = 1; ; attempt++) {
    await ackSlot();
    const r = await post(`/api/fleet/agents/${a.id}/acks`, { Authorization: `ApiKey ${a.key}` }, body, a)
      .then(counted('ack'), failed('ack')).finally(releaseAckSlot);
    if (r.status === 200) return true;
    if (attempt >= ATTEMPTS || stopping) return false;
    await sleep(backoffMs(r));
  }
}

/**
 * At most ACK_SLOTS acks in flight per generator: each is a connection of its own beside the agents' held
 * polls, and a generator may open 20,000 files (16,000 agents each at 100,000). Real agents are on
 * machines of their own; without this a rollout's acks ran the generators out of descriptors (EMFILE).
 */
const ACK_SLOTS = 2000;
let acksInFlight = 0;
const ackWaiters = [];
function ackSlot() {
  if (acksInFlight < ACK_SLOTS) {
    acksInFlight++;
    return undefined;
  }
  return new Promise((resolve) => ackWaiters.push(resolve));
}
function releaseAckSlot() {
  const next = ackWaiters.shift();
  if (next) next();
  else acksInFlight--;
}

let pendingHeld = 0;
/** A held poll; answered, the agent polls again at once, refused or cut off after its back-off. */
function hold(a) {
  pendingHeld++;
  checkin(a, { agent_policy_id: a.policyId, policy_revision_idx: a.rev }).then((r) => {
    pendingHeld--;
    tally('poll', r);
    if (r.status !== 200) {
      if (!stopping) setTimeout(hold, backoffMs(r), a);
      return;
    }
    const policy = policyOf(r);
    if (policy) {
      a.deliveredAt = Date.now();
      lastPolicyAt = a.deliveredAt;
      a.rev = policy.revision;
      if (!policy.apiKey) a.badKey = true;
      // Acknowledged while the next poll is already held, as Elastic Agent's coordinator acks it.
      ackPolicy(a, policy.actionId).then((ok) => { if (ok) a.ackedRev = Math.max(a.ackedRev, policy.revision); });
    }
    if (!stopping) hold(a);
  }, (err) => {
    pendingHeld--;
    tallyError('poll', err);
    if (!stopping) setTimeout(hold, backoffMs(NO_ANSWER), a);
  });
}

/** The first check-in: answered with the policy; retried after each back-off. */
async function firstCheckin(a) {
  for (let attempt = 1; ; attempt++) {
    const r = await checkin(a, {}).then(counted('checkin'), failed('checkin'));
    const p = r.status === 200 ? r.json.actions.find((x) => x.type === 'POLICY_CHANGE') : undefined;
    if (p) {
      lastPolicyAt = Date.now();
      a.policyId = p.data.policy.id;
      a.rev = p.data.policy.revision;
      a.policyAction = p.id;
      // The output key the server minted for the agent, looked for as the held polls look (policyOf).
      if (!p.data.policy.outputs?.default?.api_key) a.firstBadKey = true;
      return;
    }
    if (attempt >= ATTEMPTS) throw new Error(`first check-in of ${a.id}: ${r.status === 0 ? 'no answer' : `status ${r.status}`} ${ATTEMPTS} times`);
    await sleep(backoffMs(r));
  }
}

let stopping = false;
// The parent gone (a bench that failed): leave with it rather than poll on unattended.
process.on('disconnect', () => process.exit(0));

/**
 * `count` new clients, each one connection with one GET /api/status: full handshakes, or (resume) each
 * offering a session one of the full pass's clients kept.
 */
const kept = [];
async function freshConnections({ count, concurrency, resume }) {
  const t0 = performance.now();
  const failures = {};
  let resumed = 0;
  await pool(Array.from({ length: count }, (_, k) => k), concurrency, async (k) => {
    const holder = resume ? { session: kept[k % kept.length] } : {};
    const r = await post('/api/status', {}, undefined, holder, 'GET').catch((err) => ({ status: err.code ?? err.message }));
    if (r.status !== 200) failures[r.status] = (failures[r.status] ?? 0) + 1;
    if (holder.reused) resumed++;
    if (!resume && holder.session) kept.push(holder.session);
  });
  return { n: count, ms: performance.now() - t0, failures, resumed };
}

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'enroll') {
      url = msg.url;
      localAddress = msg.localAddress;
      gzipBodies = msg.gzipBodies !== false;
      tls = msg.tls;
      process.send({ type: 'enrolled', ...(await enroll(msg)) });
    } else if (msg.cmd === 'prepare') {
      // Every agent's own part compressed now, between the timed phases: a real agent compresses its body on
      // its own CPU, while these generators share the server's cores — inside the first check-ins this was a
      // quarter of a generator's busy time (30,000 agents), CPU the server then did not get.
      // And the part for the first policy's revision, which the first held poll sends.
      for (const a of agents) {
        if (a.headRev !== a.rev) {
          a.head = agentPart(a);
          a.headRev = a.rev;
        }
        a.next ??= { rev: a.rev + 1, head: agentPart(a, a.rev + 1) };
      }
      process.send({ type: 'prepared' });
    } else if (msg.cmd === 'first-checkin') {
      const t0 = performance.now();
      await pool(agents, msg.concurrency, firstCheckin);
      process.send({ type: 'checked-in', n: agents.length, ms: performance.now() - t0, badKeys: agents.filter((a) => a.firstBadKey).length });
    } else if (msg.cmd === 'ack') {
      // The first policy acknowledged, each agent once, timed on its own (between the first check-ins and the polls).
      const t0 = performance.now();
      await pool(agents, msg.concurrency, async (a) => { if (await ackPolicy(a, a.policyAction)) a.ackedRev = Math.max(a.ackedRev, a.rev); });
      process.send({ type: 'acked', n: agents.filter((a) => a.ackedRev >= a.rev).length, ms: performance.now() - t0 });
    } else if (msg.cmd === 'hold') {
      for (const a of agents) hold(a);
      process.send({ type: 'holding', n: agents.length });
    } else if (msg.cmd === 'status') {
      const delivered = agents.filter((a) => a.rev >= msg.rev);
      process.send({ type: 'status', pending: pendingHeld, handshakes, deliveredCount: delivered.length, delivered: msg.times ? delivered.map((a) => a.deliveredAt) : undefined,
        ackedCount: agents.filter((a) => a.ackedRev >= msg.rev).length,
        badKeys: agents.filter((a) => a.badKey).length });
    } else if (msg.cmd === 'outcomes') {
      process.send({ type: 'outcomes', outcomes, pending: pendingHeld, n: agents.length });
    } else if (msg.cmd === 'handshakes') {
      process.send({ type: 'handshakes', ...(await freshConnections(msg)) });
    } else if (msg.cmd === 'exit') {
      stopping = true;
      process.exit(0);
    }
  } catch (err) {
    process.send({ type: 'error', message: String(err?.stack ?? err) });
  }
});
