// Which agent versions may talk to this server: 7.13 ≤ agent ≤ server MAJOR.MINOR.∞ (newer patch only).
import { FleetError } from './errors';

const PREFIX = 'elastic agent ';

export interface Semver {
  major: number;
  minor: number;
  patch: number;
}

export function parseVersion(text: string): Semver | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0) };
}

function cmp(a: Semver, b: Semver): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

export class AgentVersionPolicy {
  private readonly max: Semver;
  private readonly min: Semver = { major: 7, minor: 13, patch: 0 };

  constructor(serverVersion: string) {
    const snapshot = /-snapshot/i.test(serverVersion);
    const v = parseVersion(serverVersion.split('-')[0]!) ?? { major: 9, minor: 6, patch: 0 };
    this.max = snapshot
      ? { major: v.major, minor: v.minor + 1, patch: v.patch }
      : { major: v.major, minor: v.minor, patch: 2147483647 };
  }

  /** The agent version from a User-Agent header ("Elastic Agent 8.6.0-SNAPSHOT" → "8.6.0"). */
  check(userAgent: string | undefined): string {
    const ua = (userAgent ?? '').toLowerCase();
    if (!ua.startsWith(PREFIX)) throw new FleetError('InvalidUserAgent');
    const raw = ua.slice(PREFIX.length).split('-')[0]!.trim();
    const v = parseVersion(raw);
    if (!v) throw new FleetError('InvalidUserAgent');
    if (cmp(v, this.min) < 0 || cmp(v, this.max) > 0) throw new FleetError('UnsupportedVersion');
    return `${v.major}.${v.minor}.${v.patch}`;
  }
}
