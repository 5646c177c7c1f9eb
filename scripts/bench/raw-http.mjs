// A bare HTTP/1.1 client for the load generators: the request written in one go, the answer parsed from
// its head and Content-Length. Node's http client costs several times more CPU and memory per request (a
// ClientRequest, a parser, an IncomingMessage); with 14,000+ agents per process on the cores the server
// also runs on, it starved its own sockets and the server saw connections that never sent their request.
// An agent (`holder`) keeps its connection alive between requests, as Elastic Agent's Go client does;
// without one, each request has its own connection (Connection: close).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { gunzipSync } from 'node:zlib';

const HEAD_END = Buffer.from('\r\n\r\n');
/**
 * A kept connection idle longer than this is closed and a new one opened, as HTTP clients do with an idle
 * timeout below the server's (35 s here). Go's client also drops a pooled connection as soon as its read
 * loop sees the server close it; a generator that tells 12,000 agents to poll in one tick writes to
 * connections whose close it has not read yet, and would count the server's idle timeout as resets.
 */
const CLIENT_IDLE_MS = 30_000;
/**
 * Connections of this process opened and not yet written to. A real agent writes its request as soon as it
 * is connected; a load generator with 14,000 agents on a starved core would otherwise open thousands of
 * connections it takes seconds to write to, which a server rightly turns away as unfinished.
 */
const MAX_CONNECTING = 256;
let connecting = 0;
const waiting = [];

/**
 * Source ports of this process's own loopback address, chosen here rather than by the kernel. Binding
 * `localAddress` with port 0 makes Linux search its bind table for a free port, linearly in the ports in use:
 * at 14,000 connections per generator that search took ~75 % of its CPU (perf: inet_csk_get_port) and a
 * 100,000-agent run needed 14 minutes to connect. A named port is one hash lookup. A port the kernel still
 * holds (another socket, TIME_WAIT) fails the connect with EADDRINUSE / EADDRNOTAVAIL and the next is tried.
 */
// Outside the kernel's ephemeral range: a port bound here is one no other socket on the machine may
// take for an outgoing connection (Linux keeps bound ports per port, whatever the address), so the
// generators leave that range to everyone else: a run that took it made the bench's own fetch of /stats
// fail with EADDRNOTAVAIL.
const [EPHEMERAL_LOW, EPHEMERAL_HIGH] = ephemeralRange();
const FIRST_PORT = 1024;
const LAST_PORT = 65535;
let lastPort = FIRST_PORT + Math.floor(Math.random() * (EPHEMERAL_LOW - FIRST_PORT));
const portsInUse = new Set();
function takePort() {
  for (let tried = 0; ; tried++) {
    if (tried > LAST_PORT) throw new Error('no source port left outside the ephemeral range');
    lastPort = lastPort >= LAST_PORT ? FIRST_PORT : lastPort + 1;
    if (lastPort >= EPHEMERAL_LOW && lastPort <= EPHEMERAL_HIGH) lastPort = EPHEMERAL_HIGH + 1;
    if (lastPort > LAST_PORT) continue;
    if (!portsInUse.has(lastPort)) {
      portsInUse.add(lastPort);
      return lastPort;
    }
  }
}

function ephemeralRange() {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch { /* not Linux */ }
  return [32768, 60999];
}
const PORT_TAKEN = new Set(['EADDRINUSE', 'EADDRNOTAVAIL']);

function release() {
  connecting--;
  const next = waiting.shift();
  if (next) next();
}

/** One connection; at most one request on it at a time. */
class Connection {
  constructor(socket) {
    this.socket = socket;
    this.chunks = [];
    this.request = undefined;
    this.reusable = true;
    this.failed = undefined;
    socket.on('data', (c) => {
      this.chunks.push(c);
      this.tryAnswer(false);
    });
    socket.once('error', (err) => (this.failed = err));
    socket.once('close', () => {
      this.reusable = false;
      this.tryAnswer(true);
    });
  }

  send(bytes, request) {
    this.lastUsed = performance.now();
    this.request = request;
    this.chunks = [];
    this.socket.write(bytes);
  }

  /** Settles the request once its whole answer is in (or the connection closed). */
  tryAnswer(closed) {
    const request = this.request;
    if (!request || this.abandoned?.()) return;
    let answer;
    try {
      answer = parse(Buffer.concat(this.chunks), closed);
    } catch (err) {
      this.request = undefined;
      request.reject(err);
      return;
    }
    if (!answer) {
      if (closed) {
        this.request = undefined;
        request.reject(this.failed ?? new Error('socket hang up'));
      }
      return;
    }
    this.request = undefined;
    this.chunks = [];
    this.lastUsed = performance.now();
    if (answer.close) this.reusable = false;
    request.resolve(answer.response);
  }
}

/**
 * POSTs `body` and resolves with an answer ({ status, retryAfter, text, json }); rejects with Node's socket errors
 * ('connect ECONNREFUSED …', 'read ECONNRESET', 'write EPIPE') or 'socket hang up' when the connection
 * closed before a whole answer, as Node's client names them. With `holder`, on its kept-alive connection.
 * `secure`: opens a TLS connection instead (tls.connect with the caller's options added).
 */
export function rawPost({ host, port, path, headers, body, localAddress, holder, secure }) {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  let head = `POST ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n${holder ? '' : 'Connection: close\r\n'}Content-Length: ${bytes.length}\r\n`;
  for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
  const message = Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), bytes]);
  return new Promise((resolve, reject) => {
    const request = { resolve, reject };
    const kept = holder?.connection;
    if (kept && kept.reusable && !kept.socket.destroyed) {
      if (performance.now() - kept.lastUsed < CLIENT_IDLE_MS) {
        kept.send(message, request);
        return;
      }
      kept.reusable = false;
      kept.socket.destroy();
    }
    const open = (tries = 0) => {
      connecting++;
      const localPort = localAddress ? takePort() : undefined;
      const socket = secure ? secure({ host, port, localAddress, localPort }) : net.connect({ host, port, localAddress, localPort });
      let slot = true;
      const done = () => {
        if (slot) release();
        slot = false;
      };
      let connected = false;
      let retried = false;
      socket.once('close', () => {
        if (localPort) portsInUse.delete(localPort);
        done();
      });
      socket.once('error', (err) => {
        // The port named was not free after all: the next one, without counting a failure.
        if (connected || !localPort || !PORT_TAKEN.has(err.code) || tries >= 100) return;
        retried = true;
        done();
        open(tries + 1);
      });
      const connection = new Connection(socket);
      if (holder) holder.connection = connection;
      // write, not end: a half-closed request is one the server aborts (a client gone). Over TLS, once
      // the handshake is done: until then the connection is still being made.
      socket.once(secure ? 'secureConnect' : 'connect', () => {
        connected = true;
        connection.send(message, request);
        done();
      });
      // A refused or reset connect settles the request through the connection's close, unless retried.
      connection.request = request;
      connection.abandoned = () => retried;
    };
    if (connecting < MAX_CONNECTING) open();
    else waiting.push(open);
  });
}

/** The answer in `buf`, or undefined while incomplete; `closed`: the connection ended (no more will come). */
function parse(buf, closed) {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return undefined;
  const head = buf.toString('latin1', 0, end);
  const status = Number(head.slice(9, 12));
  const declared = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
  if (declared === undefined && !closed) return undefined;
  const length = declared === undefined ? buf.length - end - 4 : Number(declared);
  let body = buf.subarray(end + 4, end + 4 + length);
  if (body.length < length) return undefined;
  // An output buffer near the answer's size: zlib's 16 KiB default costs more than the inflating.
  if (/\r\ncontent-encoding: *gzip/i.test(head)) body = gunzipSync(body, { chunkSize: Math.max(1024, body.length * 8) });
  return {
    close: /\r\nconnection: *close/i.test(head),
    response: answer(status, /\r\nretry-after: *(\d+)/i.exec(head)?.[1], body.toString()),
  };
}

/**
 * An answer: its status, Retry-After and body text; `json` parsed when first asked for (a held poll's
 * answer is read without it: see agent-worker.mjs policyOf).
 */
export function answer(status, retryAfter, text) {
  let json;
  return {
    status, retryAfter, text,
    get json() {
      return (json ??= text.length ? JSON.parse(text) : undefined);
    },
  };
}
