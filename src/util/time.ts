/** RFC3339 UTC with second precision, the format fleet-server writes into documents. */
export function rfc3339(ms: number = Date.now()): string {
  return isoTime(Math.floor(ms / 1000) * 1000).replace('.000Z', 'Z');
}

const DAY_MS = 86_400_000;
/** 9999-12-31T23:59:59.999Z: the last instant toISOString writes with a four-digit year. */
const LAST_FOUR_DIGIT_YEAR_MS = 253_402_300_799_999;

/**
 * What Date.prototype.toISOString returns (`2026-12-04T19:12:07.951Z`), computed here. V8's own asks for
 * the local time zone's display name on its first call, though the string never shows it, and that
 * loads ICU's time-zone tables and names: 0.6 MiB more RSS in every process that writes a timestamp
 * (measured on Node 24.21 with gdb and /proc/PID/pagemap). Dates before 1970 or past year 9999, and
 * invalid ones, are left to toISOString (its six-digit years, its RangeError).
 */
export function isoTime(ms: number = Date.now()): string {
  if (!(ms >= 0 && ms <= LAST_FOUR_DIGIT_YEAR_MS)) return new Date(ms).toISOString();
  const t = Math.floor(ms);
  const days = Math.floor(t / DAY_MS);
  let rest = t - days * DAY_MS;
  // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted), in eras of 400 years from 0000-03-01.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1_460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  const millis = rest - seconds * 1000;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hours, 2)}:${pad(minutes, 2)}:${pad(seconds, 2)}.${pad(millis, 3)}Z`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

export function isoToMs(value: unknown): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}
