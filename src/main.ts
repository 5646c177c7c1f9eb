// fleet-server: the server (default command) and its admin commands.
import yargs from 'yargs';
import { registerAdminCommands } from './cli/admin';
import type { ConfigArgs } from './cli/load-config';
import { runServer } from './cli/run';
import { runAgentMode } from './control/agent-mode';
import { COMMIT, VERSION } from './version';

async function main(argv: string[]): Promise<void> {
  const y = yargs(argv)
    .scriptName('fleet-server')
    .usage('$0 [command] [options]')
    .option('config', { alias: 'c', type: 'string', describe: 'configuration file (default ./fleet-server.yml if present)' })
    .option('E', { type: 'string', array: true, describe: 'configuration override key=value (repeatable)' })
    .option('json', { type: 'boolean', describe: 'admin commands: print one JSON document' })
    .option('agent-mode', { type: 'boolean', describe: 'run under Elastic Agent: connection info on stdin, configuration from units' })
    .version(`fleet-server version ${VERSION} (commit ${COMMIT})`)
    .command(['run', '$0'], 'Run Fleet Server', {}, async (a) => {
      if (a['agent-mode']) await runAgentMode((a as ConfigArgs).E ?? []);
      else await runServer(a as ConfigArgs);
    })
    .strict()
    // A command that fails (a refused start, a missing policy) says why in one line, below; usage is
    // shown for mistakes on the command line only.
    .fail((msg, err, yy) => {
      if (err && err.name !== 'YError') throw err;
      yy.showHelp();
      process.stderr.write(`\n${msg || err?.message}\n`);
      process.exit(1);
    })
    .help();
  await registerAdminCommands(y as never).parseAsync();
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`fleet-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
