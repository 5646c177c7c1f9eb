// Command-line mistakes (exit 2, the command's usage shown), kept apart from the commands' modules: the
// program's entry point tells them from failures without loading those.

/** A command-line mistake: an unknown command or option, or an option's value that is not one. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A yargs `coerce` for a count or size option: a whole number from `min` (0 unless given) up to `max`
 * (if any). yargs reads `--limit abc` as NaN (type number) and hands it on; SQLite then refused it as a
 * "datatype mismatch", a timeout was stored as null. A value out of range is refused here too, before
 * any store is opened: `--limit 0` listed nothing, `--chunk-size 0` failed only once the store was open.
 */
export function wholeNumber(option: string, range: { min?: number; max?: number } = {}): (v: unknown) => number | undefined {
  const min = range.min ?? 0;
  const wanted = range.max === undefined ? `${min} or more` : `from ${min} to ${range.max}`;
  return (v) => {
    if (v === undefined) return undefined;
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || (range.max !== undefined && n > range.max)) {
      throw new UsageError(`--${option} ${Array.isArray(v) ? v.join(' ') : String(v)}: give a whole number, ${wanted}`);
    }
    return n;
  };
}
