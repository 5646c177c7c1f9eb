import { createServer } from 'node:net';

/** Ports this process has handed out: the kernel may give a port just closed again at the next call. */
const handedOut = new Set<number>();

function probe(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A port free on 127.0.0.1 right now, and not one this process was given before (two calls in a row
 * once returned the same port, and a server started with it as both its port and internal_port opened
 * one listener).
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; ; tries++) {
    const port = await probe();
    if (!handedOut.has(port) || tries >= 50) {
      handedOut.add(port);
      return port;
    }
  }
}
