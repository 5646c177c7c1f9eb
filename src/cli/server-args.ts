// The server's start read without yargs when its command line is nothing but what a start takes: yargs
// brings cliui, whose width tables build an Intl.Segmenter and Unicode property expressions when loaded —
// ICU's break data and code — and a serving process (a single one, or a cluster's primary) kept 1.4 MiB of
// RSS more for them all its life (measured idle). Anything else (a command, --help, --version, an option or form this does not
// know) is yargs's to read, with its usage and its errors.
import type { ConfigArgs } from './load-config';

export interface ServerStart extends ConfigArgs {
  agentMode: boolean;
}

/** A start's options (`[run] [-c FILE] [-E KEY=VALUE]… [--agent-mode]`), or undefined: yargs reads the line. */
export function plainServerStart(args: readonly string[]): ServerStart | undefined {
  const start: ServerStart = { agentMode: false };
  const E: string[] = [];
  const value = (i: number): string | undefined => {
    const v = args[i + 1];
    return v === undefined || v.startsWith('-') ? undefined : v;
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
