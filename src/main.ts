// fleet-server: the server (default command) and its admin commands.
// First: a server start re-executes itself into its start environment before anything else loads.
import './runtime/early-start';
import { runServer } from './cli/run';
import { plainServerStart, WrittenUsageError, type ServerStart } from './cli/server-args';
import { UsageError } from './cli/usage-error';
import { runWorker, workerConfig } from './runtime/cluster';
import { ensureNodeFlags, programArgs } from './runtime/node-flags';
import { describeError } from './util/error-text';

async function main(argv: string[]): Promise<void> {
  // A cluster worker runs the server with the configuration its primary built (worker-config.ts): the
  // command line and the admin commands (yargs and the CLI's modules, ~1 MiB a worker) are loaded only in
  // the process started. The primary checked that configuration's TLS files already.
  const config = workerConfig();
  if (config) return runWorker(await config);
  const plain = plainServerStart(argv);
  if (plain) return startServer(plain);
  const [{ default: yargs }, { commandLine }] = await Promise.all([import('yargs'), import('./cli/command-line')]);
  await commandLine(yargs, argv, startServer).parseAsync();
}

async function startServer(start: ServerStart): Promise<void> {
  ensureNodeFlags();
  // The control protocol (gRPC, protobuf) is loaded only under Elastic Agent: ~15 MiB a standalone server does not need.
  if (start.agentMode) await (await import('./control/agent-mode')).runAgentMode(start.E ?? []);
  else await runServer({ config: start.config, E: start.E });
}

main(programArgs()).catch((err: unknown) => {
  // A command-line mistake: its reason was shown first already (command-line.ts), and a command's usage
  // after it; the reason is repeated below a usage.
  if (err instanceof UsageError) {
    if (!(err instanceof WrittenUsageError)) process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fleet-server: ${describeError(err)}\n`);
  process.exit(1);
});
