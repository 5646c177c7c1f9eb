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

/** Config values may be Go duration strings or bare numbers (seconds, as go-ucfg reads them); never negative. */
export function durationValue(value: unknown, key: string): number {
  let ms: number;
  if (typeof value === 'number') ms = value * 1000;
  else if (typeof value === 'string') {
    try {
      ms = parseDuration(value);
    } catch {
      throw new Error(`config key ${key}: invalid duration "${value}"`);
    }
  } else {
    throw new Error(`config key ${key}: expected a duration, got ${JSON.stringify(value)}`);
  }
  if (!Number.isFinite(ms)) throw new Error(`config key ${key}: invalid duration ${JSON.stringify(value)}`);
  if (ms < 0) throw new Error(`config key ${key}: a duration cannot be negative (got ${JSON.stringify(value)})`);
  return ms;
}

/** Node's timers hold at most 2^31 - 1 ms (about 24.8 days); a longer one fires after 1 ms instead. */
export const MAX_TIMER_MS = 2_147_483_647;
/**
 * The longest duration a timer-driving setting keeps: Node's limit less a minute, because some uses
 * add a margin (the monitor's request timeout is poll_timeout + 1 min, the hard stop is drain + 10 s,
 * long polls round up to whole seconds).
 */
export const TIMER_CEILING_MS = MAX_TIMER_MS - 60_000;

/**
 * A duration that drives a timer. Where 0 means nothing sensible (a schedule, a poll), it is refused;
 * one longer than a timer can hold is clamped to TIMER_CEILING_MS (about 24.8 days), which keeps the
 * setting's meaning (upstream's Go timers take e.g. 720h): "rarely" or "practically never".
 */
export function timerDuration(ms: number, key: string, opts: { positive: boolean }): number {
  if (opts.positive && ms <= 0) throw new Error(`config key ${key}: must be a duration greater than 0`);
  return Math.min(ms, TIMER_CEILING_MS);
}
