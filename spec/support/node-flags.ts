// The V8 flags and start environment the program ships with (package.json fleetServer.nodeFlags and
// .env): tests start the server with both, as its shebang does (the CLI tests pass the flags only, and
// the server re-executes itself into the environment).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const shipped = (JSON.parse(readFileSync(resolve(__dirname, '../../package.json'), 'utf8')) as {
  fleetServer: { nodeFlags: string[]; env: Record<string, string> };
}).fleetServer;

export const NODE_FLAGS: string[] = shipped.nodeFlags;
export const START_ENV: Record<string, string> = shipped.env;

/** Each START_ENV setting missing from a process's environment (/proc/<pid>/environ). */
export function missingFromEnviron(pid: number): string[] {
  const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  return Object.entries(START_ENV).map(([k, v]) => `${k}=${v}`).filter((kv) => !environ.includes(kv));
}
