// The server's start read without yargs when its command line is nothing but what a start takes: yargs
// brings cliui, whose width tables build an Intl.Segmenter and Unicode property expressions when loaded —
// ICU's break data and code — and a serving process (a single one, or a cluster's primary) kept 1.4 MiB of
// RSS more for them all its life (measured idle). Anything else (a command, --help, --version, an option or form this does not
// know) is yargs's to read, with its usage and its errors.
import type { ConfigArgs } from './load-config';
import { UsageError } from './usage-error';

export interface ServerStart extends ConfigArgs {
  agentMode: boolean;
}

/** A start's options (`[run] [-c FILE] [-E KEY=VALUE]… [--agent-mode]`), or undefined: yargs reads the line. */
export function plainServerStart(args: readonly string[]): ServerStart | undefined {
  const start: ServerStart = { agentMode: false };
  const E: string[] = [];
  // An empty value (`-c "$UNSET"`) is yargs's path too, where it is refused (flagWithoutValue).
  const value = (i: number): string | undefined => {
    const v = args[i + 1];
    return v === undefined || v === '' || v.startsWith('-') ? undefined : v;
  };
  for (let i = args[0] === 'run' ? 1 : 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--agent-mode' && !start.agentMode) {
      start.agentMode = true;
    } else if ((a === '-c' || a === '--config') && value(i) !== undefined) {
      // Given twice, the last wins, as Go's flag package has it.
      start.config = value(i++);
    } else if ((a === '-E' || a === '--E') && value(i) !== undefined) {
      E.push(value(i++)!);
    } else if (/^-E=?[^=\s-]/.test(a)) {
      // pflag's attached forms: -Ekey=value and -E=key=value.
      E.push(a.slice(a[2] === '=' ? 3 : 2));
    } else {
      return undefined;
    }
  }
  if (E.length > 0) start.E = E;
  return start;
}

/** Where a command-line mistake sends the operator, after its reason (the whole usage is 25 lines). */
export const HELP_HINT = "Run 'fleet-server --help' for the commands and options, 'fleet-server COMMAND --help' for a command's.";

/** A usage error whose reason (and any usage) is on stderr already: the entry point only exits 2. */
export class WrittenUsageError extends UsageError {}

/**
 * `-c` or `-E` with no value after it, as Go's flag package reads a command line: `flag needs an
 * argument: 'c' in -c`. yargs read `-c` as an empty file name, and the server started on its defaults
 * (./fleet-server.yml ignored too); a last `-E` was dropped. An empty file name (`-c "$UNSET"`) is none.
 */
export function flagWithoutValue(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return undefined;
    const config = a === '-c' || a === '--config';
    if (config && args[i + 1] === '') return `${a} '': give a configuration file`;
    if (a === '-c=' || a === '--config=') return `${a.slice(0, -1)} '': give a configuration file`;
    if (!config && a !== '-E' && a !== '--E') continue;
    const v = args[i + 1];
    // A lone `-` is a value (yargs's positional), never a flag.
    if (v === undefined || (v.startsWith('-') && v !== '-')) {
      return a.startsWith('--') ? `flag needs an argument: ${a}` : `flag needs an argument: '${a.slice(1)}' in ${a}`;
    }
  }
  return undefined;
}
