// OpAMP's WebSocket transport on /v1/opamp (beyond upstream, which serves plain HTTP only): binary
// frames of a varint header (0) and a protobuf message, answered in order; the server may push at any
// time. A message over the route's decompressed body limit closes with 1009; a text frame is dropped
// and the connection kept (opamp-go); an undecodable message is answered with error_response. One
// message is handled at a time, and nothing more is read meanwhile (TCP holds what a client pipelines).
import type { OpampMessage, OpampReply } from '../fleet/opamp';
import type { UpgradeContext } from '../http/route';
import { CLOSE, handshakeProblem, handshakeResponse, refuseHandshake, WebSocketConnection } from '../http/websocket';
import { decodeAgentToServer, encodeServerToAgent } from './codec';

/** The default limit when the route has none (the OpAMP spec's recommendation). */
const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;

/** How long a connection may be silent before it is pinged (and dropped if still silent a sweep later). */
const IDLE_MS = 60_000;
const live = new Set<WebSocketConnection>();
let sweeper: NodeJS.Timeout | undefined;

/** One timer for every connection's liveness, running while there are connections. */
function watch(ws: WebSocketConnection): void {
  live.add(ws);
  sweeper ??= setInterval(() => {
    const now = Date.now();
    for (const c of live) c.checkAlive(now, IDLE_MS);
    if (live.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }, IDLE_MS / 2).unref();
}

/** The frame's message: after a 0 header byte, or (opamp-go's legacy tolerance) the whole frame. */
function payloadOf(frame: Buffer): Buffer {
  return frame.length > 0 && frame[0] === 0 ? frame.subarray(1) : frame;
}

function framed(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(message.length + 1);
  out[0] = 0;
  out.set(message, 1);
  return out;
}

export function handleOpampWebSocket(ctx: UpgradeContext<'enrollment'>): Promise<void> {
  const { req, socket, fleet, log } = ctx;
  const problem = handshakeProblem(req);
  if (problem) {
    const extra = Object.entries(ctx.responseHeaders).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    refuseHandshake(socket, `HTTP/1.1 400 Bad Request\r\nConnection: close\r\n${extra}Content-Type: text/plain\r\nContent-Length: ${problem.length}\r\n\r\n${problem}`);
    return Promise.resolve();
  }
  socket.write(handshakeResponse(req, ctx.responseHeaders));
  const limit = ctx.config.server.limits.routes.opamp.maxBodyDecompressed || DEFAULT_MAX_MESSAGE;
  return new Promise<void>((resolve) => {
    let first = true;
    /** Set at close: a push or a message still queued then is dropped, not handled for a dead connection. */
    let closed = false;
    let queue: Promise<void> = Promise.resolve();
    // Pushes (a new configuration) go in the same order as answers.
    const push = (uid: Uint8Array, r: OpampReply): void => {
      if (!closed) queue = queue.then(() => reply(uid, r));
    };
    const reply = (uid: Uint8Array, r: OpampReply): void => {
      if (closed) return;
      const bytes = encodeServerToAgent(uid, r, { customCapabilities: first });
      first = false;
      ctx.counters.body_out += bytes.length + 1;
      ws.send(framed(bytes));
    };
    const handle = async (data: Buffer): Promise<void> => {
      if (closed) return;
      let msg: OpampMessage;
      try {
        msg = decodeAgentToServer(payloadOf(data));
      } catch (err) {
        log.debug({ err }, 'OpAMP WebSocket message is not an AgentToServer');
        reply(new Uint8Array(0), { error: { type: 'BadRequest', message: 'failed to decode message' } });
        return;
      }
      const r = await fleet.opamp.handle(ctx.enrollment, msg, push);
      reply(msg.instanceUid, r);
      if (msg.disconnect && !r.error) ws.close(CLOSE.normal);
    };
    const ws = new WebSocketConnection(socket, limit, {
      onMessage: (data) => {
        ctx.counters.body_in += data.length;
        // In order, one at a time: a Collector's reports must not overtake each other. The connection
        // reads nothing more until this settles, so a pipelining client cannot queue decoded messages here.
        queue = queue.then(() => handle(data)).catch((err: unknown) => {
          log.warn({ err }, 'OpAMP WebSocket message failed');
          ws.close(CLOSE.internal);
        });
        return queue;
      },
      onText: () => log.debug('OpAMP WebSocket text frame dropped'),
      onClose: () => {
        closed = true;
        live.delete(ws);
        fleet.opamp.detach(push);
        ctx.stopping.removeEventListener('abort', stop);
        resolve();
      },
    }, ctx.head, { budget: ctx.bodyBudget });
    watch(ws);
    const stop = (): void => ws.close(CLOSE.goingAway);
    ctx.stopping.addEventListener('abort', stop);
  });
}
