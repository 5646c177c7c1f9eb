// More accept queues for a cluster worker's listener. The kernel keeps one accept queue per listening
// socket, at most net.core.somaxconn long (4,096 on the development machine), and drops a connection
// attempt that finds it full: the client tries again only after its SYN retransmission timer (1 s, then
// 3, 7, 15 s…). A worker busy with a burst (every agent starting its poll at once, or reconnecting
// after a restart) returns to accept only between batches of work, so at 100,000 agents on six workers
// the kernel dropped 59,154 attempts as the polls started and 87,687 after a restart.
//
// With SO_REUSEPORT the kernel deals connections over every socket bound to the port, each with its own
// queue. So a worker binds a few more sockets on its port and passes what they accept to its listener's
// accept callback, as if its own socket had accepted it (the connection guard, handoffs and TLS apply as
// for any other): the same work, with room in the kernel to wait for it.
import net from 'node:net';
import type { ListenHandle } from './handoff';

/** At most this many sockets per worker and port (the listener's own included). */
const MAX_QUEUES = 8;

/** How many sockets give a worker's `cap` connections a place in the kernel's queues, `backlog` each. */
export function acceptQueueCount(cap: number, backlog: number): number {
  return Math.max(1, Math.min(MAX_QUEUES, Math.ceil(cap / backlog)));
}

/**
 * Binds `extra` more sockets beside `server`'s (SO_REUSEPORT, host and port as it), each accepting into
 * `server`'s accept callback; resolves with them, to be closed with it. One that cannot bind is left out.
 */
export async function addAcceptQueues(server: net.Server, host: string, port: number, backlog: number, extra: number,
  onError: (err: Error) => void): Promise<net.Server[]> {
  const main = (server as unknown as { _handle?: ListenHandle })._handle;
  if (!main || typeof main.onconnection !== 'function') return [];
  const queues: net.Server[] = [];
  for (let i = 0; i < extra; i++) {
    const queue = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        queue.once('error', reject);
        queue.listen({ port, host, backlog, reusePort: true, exclusive: true }, () => {
          queue.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      onError(err as Error);
      break;
    }
    queue.on('error', onError);
    const handle = (queue as unknown as { _handle: ListenHandle })._handle;
    // Read at each call: a handoff (handoff.ts) may have wrapped the listener's callback since.
    handle.onconnection = (status, client) => main.onconnection(status, client);
    queues.push(queue);
  }
  return queues;
}
