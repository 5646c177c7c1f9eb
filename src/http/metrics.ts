// The optional metrics listener (http.enabled, localhost:5066): GET /stats, libbeat-style JSON with
// process memory and the server's own counters.
import { rmSync } from 'node:fs';
import http from 'node:http';
import type { Logger } from 'pino';
import type { Fleet } from '../fleet/fleet';
import type { HttpService } from './server';

export function statsDocument(fleet: Fleet, service: HttpService): Record<string, unknown> {
  const mem = process.memoryUsage();
  return {
    beat: {
      memstats: { rss: mem.rss, heap_used: mem.heapUsed, heap_total: mem.heapTotal, external: mem.external, array_buffers: mem.arrayBuffers },
      info: { uptime: { ms: Math.round(process.uptime() * 1000) } },
    },
    fleet: {
      status: fleet.health.current.state,
      checkin: { held: fleet.checkins.heldCount },
      policy: { waiting: fleet.policies.waiting() },
      bookkeeping: { pending: fleet.bookkeeper.size },
      auth_cache: { hits: fleet.auth.stats.hits, misses: fleet.auth.stats.misses },
      http: { in_flight: service.inFlightRequests, connections: service.openConnections },
    },
  };
}

export async function startMetrics(host: string, port: number, fleet: Fleet, service: HttpService, log: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/stats' || req.url === '/' || req.url === '/stats?gc=1')) {
      // Only a process started with --expose-gc (benchmarks) can be asked to collect first.
      const gc = (globalThis as { gc?: () => void }).gc;
      if (req.url === '/stats?gc=1' && gc) gc();
      const text = JSON.stringify(statsDocument(fleet, service));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('404 page not found\n');
  });
  // Elastic Agent asks for a unix socket (http.host: unix:///…/x.sock) to collect metrics from.
  const socketPath = host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
  if (socketPath) rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (socketPath) server.listen(socketPath, () => resolve());
    else server.listen(port, host, () => resolve());
  });
  server.unref();
  log.info({ 'server.address': socketPath ?? `${host}:${port}` }, 'metrics listener');
  return server;
}
