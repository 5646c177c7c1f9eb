// Runs admin commands of the bundled program against a data directory.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DIST } from './fleet-server';

const execFileAsync = promisify(execFile);

/** `overrides` are extra -E settings (e.g. an Elasticsearch output). */
export async function cli(dataDir: string, args: string[], overrides: string[] = []): Promise<any> {
  const extra = overrides.flatMap((o) => ['-E', o]);
  const { stdout } = await execFileAsync(process.execPath, [DIST, ...args, '--json', '-E', `path.data=${dataDir}`, ...extra], { cwd: dataDir });
  return JSON.parse(stdout);
}

export async function cliFails(dataDir: string, args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await execFileAsync(process.execPath, [DIST, ...args, '-E', `path.data=${dataDir}`], { cwd: dataDir });
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
  throw new Error(`expected ${args.join(' ')} to fail`);
}
