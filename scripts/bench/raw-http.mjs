// A bare HTTP/1.1 client for the load generators: one connection per request (Connection: close), the
// request written in one go, the answer read until the server closes. Node's http client costs several
// times more CPU and memory per request (a ClientRequest, a parser, an IncomingMessage); with 14,000+
// agents per process on the cores the server also runs on, it starved its own sockets and the server saw
// connections that never sent their request.
import net from 'node:net';
import { gunzipSync } from 'node:zlib';

const HEAD_END = Buffer.from('\r\n\r\n');
/**
 * Connections of this process opened and not yet written to. A real agent writes its request as soon as it
 * is connected; a load generator with 14,000 agents on a starved core would otherwise open thousands of
 * connections it takes seconds to write to, which a server rightly turns away as unfinished.
 */
const MAX_CONNECTING = 256;
let connecting = 0;
const waiting = [];

function release() {
  connecting--;
  const next = waiting.shift();
  if (next) next();
}

/**
 * POSTs `body` and resolves with { status, retryAfter, json }; rejects with Node's socket errors
 * ('connect ECONNREFUSED …', 'read ECONNRESET', 'write EPIPE') or 'socket hang up' when the connection
 * closed before a whole answer, as Node's client names them.
 */
export function rawPost({ host, port, path, headers, body, localAddress }) {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return new Promise((resolve, reject) => {
    let head = `POST ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\nContent-Length: ${bytes.length}\r\n`;
    for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
    const open = () => {
      connecting++;
      let slot = true;
      const done = () => {
        if (slot) release();
        slot = false;
      };
      const socket = net.connect({ host, port, localAddress });
      const chunks = [];
      let failed;
      // write, not end: a half-closed request is one the server aborts (a client gone).
      socket.once('connect', () => {
        socket.write(Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), bytes]));
        done();
      });
      socket.on('data', (c) => chunks.push(c));
      socket.once('error', (err) => (failed = err));
      socket.once('close', () => {
        done();
        try {
          const answer = parse(Buffer.concat(chunks));
          if (answer) resolve(answer);
          else reject(failed ?? new Error('socket hang up'));
        } catch (err) {
          reject(err);
        }
      });
    };
    if (connecting < MAX_CONNECTING) open();
    else waiting.push(open);
  });
}

function parse(buf) {
  const end = buf.indexOf(HEAD_END);
  if (end < 0) return undefined;
  const head = buf.toString('latin1', 0, end);
  const status = Number(head.slice(9, 12));
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? buf.length - end - 4);
  let body = buf.subarray(end + 4, end + 4 + length);
  if (body.length < length) return undefined;
  if (/\r\ncontent-encoding: *gzip/i.test(head)) body = gunzipSync(body);
  return { status, retryAfter: /\r\nretry-after: *(\d+)/i.exec(head)?.[1], json: body.length ? JSON.parse(body.toString()) : undefined };
}
