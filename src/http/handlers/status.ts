import { BUILD_TIME, COMMIT, VERSION } from '../../version';
import type { RequestContext } from '../route';
import { writeJson } from '../respond';

/** GET /api/status: 200 only when HEALTHY; the version only for a caller with a valid API key. */
export async function handleStatus(ctx: RequestContext<'optional'>): Promise<void> {
  const state = ctx.fleet.health.current.state;
  const body: Record<string, unknown> = { name: 'fleet-server', status: state };
  if (ctx.authenticated) body['version'] = { number: VERSION, build_hash: COMMIT, build_time: BUILD_TIME };
  writeJson(ctx.res, state === 'HEALTHY' ? 200 : 503, body);
}
