// Imported first by main.ts, so it runs before the rest of the bundle's modules are evaluated: a server
// started without its V8 flags or start environment (`node dist/fleet-server.js`, the single executable)
// re-executes itself before loading the program it would throw away — ~150 ms of start-up when it did so
// from the run command. The run command still checks (node-flags.ts).
import { ensureNodeFlags, isServerStart, programArgs } from './node-flags';
import { nodeVersionProblem } from './node-version';

const tooOld = nodeVersionProblem();
if (tooOld !== undefined) {
  process.stderr.write(`${tooOld}\n`);
  process.exit(1);
}
if (isServerStart(programArgs())) ensureNodeFlags();
