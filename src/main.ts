// fleet-server: the server (default command) and its admin commands.
// First: a server start re-executes itself into its start environment before anything else loads.
import './runtime/early-start';
import type { ConfigArgs } from './cli/load-config';
import { runServer } from './cli/run';
import { plainServerStart, type ServerStart } from './cli/server-args';
import { runWorker, workerConfig } from './runtime/cluster';
import { ensureNodeFlags, programArgs } from './runtime/node-flags';
import { describeError } from './util/error-text';
import { COMMIT, VERSION } from './version';

/** A command-line mistake (unknown option or command): its usage was already shown. */
class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  // A cluster worker runs the server with the configuration its primary built (worker-config.ts): the
  // command line and the admin commands (yargs and the CLI's modules, ~1 MiB a worker) are loaded only in
  // the process started. The primary checked that configuration's TLS files already.
  const config = workerConfig();
  if (config) return runWorker(await config);
  const plain = plainServerStart(argv);
  if (plain) return startServer(plain);
  const { default: yargs } = await import('yargs');
  const { registerAdminCommands } = await import('./cli/admin');
  const y = yargs(argv)
    .scriptName('fleet-server')
    .usage('$0 [command] [options]')
    // One value per -E: a greedy array would swallow the command after it (`-E path.data=/x policy list`
    // would run the server with "policy" and "list" as settings).
    .parserConfiguration({ 'greedy-arrays': false })
    .option('config', { alias: 'c', type: 'string', describe: 'configuration file (default ./fleet-server.yml if present)' })
    .option('E', { type: 'string', array: true, describe: 'configuration override key=value (repeatable)' })
    .option('json', { type: 'boolean', describe: 'admin commands: print one JSON document' })
    .option('show-secrets', { type: 'boolean', describe: 'admin commands: show credentials in policies and actions (redacted by default)' })
    .option('agent-mode', { type: 'boolean', describe: 'run under Elastic Agent: connection info on stdin, configuration from units' })
    .version(`fleet-server version ${VERSION} (commit ${COMMIT})`)
    .command(['run', '$0'], 'Run Fleet Server', {}, (a) => startServer({ ...(a as ConfigArgs), agentMode: a['agent-mode'] === true }))
    .strict()
    .recommendCommands()
    // yargs would print the usage for any failure and then run the command anyway; only a usage
    // mistake shows usage, and nothing runs after it.
    .fail((msg, err, cmd) => {
      if (err) throw err;
      cmd.showHelp((s: string) => process.stderr.write(`${s}\n\n`));
      throw new UsageError(msg);
    })
    .help();
  await registerAdminCommands(y as never).parseAsync();
}

async function startServer(start: ServerStart): Promise<void> {
  ensureNodeFlags();
  // The control protocol (gRPC, protobuf) is loaded only under Elastic Agent: ~15 MiB a standalone server does not need.
  if (start.agentMode) await (await import('./control/agent-mode')).runAgentMode(start.E ?? []);
  else await runServer({ config: start.config, E: start.E });
}

main(programArgs()).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fleet-server: ${describeError(err)}\n`);
  process.exit(1);
});
