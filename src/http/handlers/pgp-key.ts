import type { TLSSocket } from 'node:tls';
import { HttpError } from '../errors';
import { readPgpKey } from '../pgp-key';
import type { RequestContext } from '../route';

const VERSION = /^\d+\.\d+\.\d+$/;

/**
 * GET /api/agents/upgrades/{major}.{minor}.{patch}/pgp-public-key: the version is checked, then
 * ignored (upstream binds it as three integers before the TLS check).
 */
export async function handlePgpKey(ctx: RequestContext<'none'>): Promise<void> {
  const version = ctx.params['version']!;
  if (!VERSION.test(version)) {
    throw new HttpError('MalformedUrl', `Bad request: version must be <major>.<minor>.<patch> integers, got "${version.slice(0, 64)}"`);
  }
  if ((ctx.req.socket as TLSSocket).encrypted !== true) throw new HttpError('TlsRequired');
  const bytes = await readPgpKey(ctx.config.server.pgp.dir);
  // Upstream's openapi names application/octet-stream (its handler sets none and Go would sniff text/plain).
  ctx.res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': bytes.length });
  ctx.res.end(bytes);
}
