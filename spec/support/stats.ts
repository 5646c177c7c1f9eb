// Reading /stats after acting: the metrics listener answers requests within STATS_REUSE_MS of a
// document's start with that document (src/http/metrics.ts shared()), so each read here comes after
// that window has passed since the previous one.
import { STATS_REUSE_MS } from '../../src/http/metrics';
import { request } from './http';

const lastAsked = new Map<string, number>();

export async function freshStats(url: string): Promise<any> {
  const wait = (lastAsked.get(url) ?? 0) + STATS_REUSE_MS + 50 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  lastAsked.set(url, Date.now());
  return (await request(url)).json;
}
