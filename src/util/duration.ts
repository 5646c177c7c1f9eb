// Go's time.ParseDuration grammar ("5m", "14m30s", "0.5ms", "1h2m"), because fleet-server.yml files
// and agents' poll_timeout values are written for the Go server.
const UNIT_MS: Record<string, number> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};
const PART = /([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)/y;
/** Go durations are int64 nanoseconds: about 292 years; longer strings are an error there, and here. */
const MAX_MS = 9_223_372_036_854.775;

/** Milliseconds for a Go duration string; throws on anything Go would reject. */
export function parseDuration(text: string): number {
  let s = text.trim();
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new Error(`invalid duration "${text}"`);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex;
    const m = PART.exec(s);
    if (!m || m.index !== start || m[1] === '' || m[1] === '.') throw new Error(`invalid duration "${text}"`);
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    if (!(total <= MAX_MS)) throw new Error(`invalid duration "${text}"`);
  }
  return sign * total;
}

/** Config values may be Go duration strings or bare numbers (seconds, as go-ucfg reads them). */
export function durationValue(value: unknown, key: string): number {
  if (typeof value === 'number') return value * 1000;
  if (typeof value === 'string') {
    try {
      return parseDuration(value);
    } catch {
      throw new Error(`config key ${key}: invalid duration "${value}"`);
    }
  }
  throw new Error(`config key ${key}: expected a duration, got ${JSON.stringify(value)}`);
}
