// Command-line mistakes (exit 2, the command's usage shown), kept apart from the commands' modules: the
// program's entry point tells them from failures without loading those.

/** A command-line mistake: an unknown command or option, or an option's value that is not one. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A yargs `coerce` for a count or size option: a whole number, 0 or more. yargs reads `--limit abc` as
 * NaN (type number) and hands it on; SQLite then refused it as a "datatype mismatch", a timeout was
 * stored as null.
 */
export function wholeNumber(option: string): (v: unknown) => number | undefined {
  return (v) => {
    if (v === undefined) return undefined;
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${option} ${Array.isArray(v) ? v.join(' ') : String(v)}: give a whole number, 0 or more`);
    return n;
  };
}
