// The command line read by yargs: the server (default command) and the admin commands. Loaded only by
// the process started, never by a cluster worker, and not for a plain server start (server-args.ts).
import type { Argv } from 'yargs';
import type yargsFactory from 'yargs';
import { describeError } from '../util/error-text';
import { COMMIT, VERSION } from '../version';
import { registerAdminCommands } from './admin';
import type { ConfigArgs } from './load-config';
import { flagWithoutValue, HELP_HINT, WrittenUsageError, type ServerStart } from './server-args';
import { UsageError } from './usage-error';

/** The program's own usage line: a mistake made outside any command. */
const TOP_USAGE = '$0 [command] [options]';

/** A mistake with no command's usage to show: its reason, and where help is. */
function usageFailure(reason: string): WrittenUsageError {
  process.stderr.write(`${reason}\n${HELP_HINT}\n`);
  return new WrittenUsageError(reason);
}

/**
 * `fleet-server policy show big | head -1`: once the reader has gone, a write fails with EPIPE. Nothing
 * more of the output is wanted, so the command ends quietly (exit 0) instead of with a stack trace.
 */
export function stdoutFailed(err: NodeJS.ErrnoException, exit: (code: number) => void = (code) => process.exit(code)): void {
  if (err.code === 'EPIPE') return exit(0);
  process.stderr.write(`fleet-server: cannot write to standard output: ${describeError(err)}\n`);
  exit(1);
}

/**
 * The parser for `argv`; `.parseAsync()` runs the command. A server started through it gets `start`.
 * `yargs` is the caller's to load (an ES module, a file of its own beside the bundle: scripts/build.mjs).
 */
export function commandLine(yargs: typeof yargsFactory, argv: string[], start: (s: ServerStart) => Promise<void>): Argv {
  const missing = flagWithoutValue(argv);
  if (missing) throw usageFailure(missing);
  // For the admin commands only: a server's standard output carries nothing but its first start's notice.
  if (!process.stdout.listeners('error').includes(stdoutFailed)) process.stdout.on('error', stdoutFailed);
  const y = yargs(argv)
    .scriptName('fleet-server')
    .usage(TOP_USAGE)
    // One value per -E: a greedy array would swallow the command after it (`-E path.data=/x policy list`
    // would run the server with "policy" and "list" as settings).
    .parserConfiguration({ 'greedy-arrays': false })
    .option('config', { alias: 'c', type: 'string', describe: 'configuration file (default ./fleet-server.yml if present)' })
    .option('E', { type: 'string', array: true, describe: 'configuration override key=value (repeatable)' })
    .option('json', { type: 'boolean', describe: 'admin commands: print one JSON document' })
    .option('show-secrets', { type: 'boolean', describe: 'admin commands: show credentials in policies, agents and actions (redacted by default)' })
    .option('agent-mode', { type: 'boolean', describe: 'run under Elastic Agent: connection info on stdin, configuration from units' })
    .version(`fleet-server version ${VERSION} (commit ${COMMIT})`)
    .command(['run', '$0'], 'Run Fleet Server', {}, (a) => {
      process.stdout.off('error', stdoutFailed);
      return start({ ...(a as ConfigArgs), agentMode: a['agent-mode'] === true });
    })
    .strict()
    .recommendCommands()
    // yargs would print the usage for any failure and then run the command anyway; only a usage
    // mistake shows usage, and nothing runs after it. yargs's own errors (YError) are usage mistakes: an
    // option's coerce refusing its value (wholeNumber) reaches here as one, its UsageError rewrapped.
    // The reason comes first. Outside a command the usage would be the whole program's (25 lines that
    // say nothing of the mistake): a pointer to --help instead. A command's usage lists the options the
    // mistake is about; it follows, and the reason is repeated last (main.ts), where a terminal leaves it.
    .fail((msg, err, cmd) => {
      if (err && !(err instanceof UsageError) && err.name !== 'YError') throw err;
      const reason = err?.message ?? msg;
      let usage = '';
      cmd.showHelp((s: string) => (usage = s));
      if (usage.startsWith(TOP_USAGE.replace('$0', 'fleet-server'))) throw usageFailure(reason);
      process.stderr.write(`${reason}\n\n${usage}\n\n`);
      throw new UsageError(reason);
    })
    // -h as well as --help, as Go's (cobra's) flags have it.
    .help()
    .alias('help', 'h');
  return registerAdminCommands(y as never, argv);
}
