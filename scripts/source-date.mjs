// The time a build is dated, so that building the same commit twice gives the same bytes: the build time
// the program reports (/api/status, the control protocol's version info, the Elasticsearch User-Agent) and
// the tarball's entry times. SOURCE_DATE_EPOCH when set (reproducible-builds.org's convention), else the
// time of the commit built, else (outside a git checkout) now.
import { execFileSync } from 'node:child_process';

const ROOT = new URL('..', import.meta.url).pathname;

/**
 * Seconds since the epoch. A SOURCE_DATE_EPOCH that is not whole seconds fails the build, as the
 * convention asks: a build dated otherwise would not be the one asked for.
 */
export function sourceDateEpoch({ env = process.env, cwd = ROOT, now = Date.now() } = {}) {
  const given = env.SOURCE_DATE_EPOCH;
  if (given !== undefined && given !== '') {
    if (!/^\d+$/.test(given)) throw new Error(`SOURCE_DATE_EPOCH=${given}: give whole seconds since 1970-01-01T00:00:00Z`);
    return Number(given);
  }
  try {
    const commit = execFileSync('git', ['log', '-1', '--format=%ct'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    if (/^\d+$/.test(commit)) return Number(commit);
  } catch { /* not a git checkout, or no git */ }
  return Math.floor(now / 1000);
}

/** RFC 3339 in UTC to the second, as the program reports its build time. */
export function buildTime(epoch) {
  return new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
