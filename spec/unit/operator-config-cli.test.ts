// The command line as an operator meets it (src/cli through yargs, in process, as main.ts runs it): a
// `-c` or `-E` without its value is a usage error, not a start on defaults; -h is help; a mistake's
// reason comes first.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { commandLine } from '../../src/cli/command-line';
import { flagWithoutValue, plainServerStart, WrittenUsageError } from '../../src/cli/server-args';
import { UsageError } from '../../src/cli/usage-error';
import { describeError } from '../../src/util/error-text';
import { removeDir, tempDir } from '../support/fleet-server';
import { yargsForTests } from '../support/yargs-cjs';

const yargs = yargsForTests();
const scratch = tempDir('fleet-cli-');
afterAll(() => removeDir(scratch));
afterEach(() => jest.restoreAllMocks());

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** The configuration a server start was given, if one was started. */
  started?: { config?: string; E?: string[] };
}

/** Runs the command line as main.ts does, capturing what it writes; stderr and exit codes as main.ts gives them. */
async function run(args: string[]): Promise<Ran> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  // yargs prints help with console.log, which a jest worker does not send to process.stdout.
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (stdout += `${a.join(' ')}\n`));
  // yargs exits after --help: recorded here, as main.ts's process would end.
  let exited: number | undefined;
  const exit = jest.spyOn(process, 'exit').mockImplementation(((c?: number) => {
    exited ??= c ?? 0;
  }) as never);
  let code = 0;
  let started: Ran['started'];
  try {
    await commandLine(yargs(), args, async (s) => {
      started = { config: s.config, E: s.E };
    }).parseAsync();
  } catch (e) {
    code = e instanceof UsageError ? 2 : 1;
    if (!(e instanceof WrittenUsageError)) stderr += e instanceof UsageError ? `${e.message}\n` : `fleet-server: ${describeError(e)}\n`;
  } finally {
    out.mockRestore();
    err.mockRestore();
    log.mockRestore();
    exit.mockRestore();
  }
  return { code: exited ?? code, stdout, stderr, ...(started ? { started } : {}) };
}

describe('-c and -E need a value (Go: flag needs an argument, exit 2)', () => {
  test('-c alone, or followed by another option, is a usage error with the reason first; nothing starts', async () => {
    for (const [args, reason] of [
      [['-c'], "flag needs an argument: 'c' in -c"],
      [['-c', '-E', 'logging.level=debug'], "flag needs an argument: 'c' in -c"],
      [['--config'], 'flag needs an argument: --config'],
      [['run', '-c'], "flag needs an argument: 'c' in -c"],
      [['policy', 'list', '-c'], "flag needs an argument: 'c' in -c"],
      [['-c', ''], "-c '': give a configuration file"],
      [['--config='], "--config '': give a configuration file"],
    ] as [string[], string][]) {
      const r = await run(args);
      expect({ args, code: r.code, first: r.stderr.split('\n')[0], started: r.started }).toEqual({ args, code: 2, first: reason, started: undefined });
      expect(r.stderr).toContain('--help');
    }
  });

  test('a last -E (or one followed by another option) is a usage error, not dropped', async () => {
    for (const args of [['-E'], ['-E', 'path.data=/x', '-E'], ['-E', '-c', 'x.yml'], ['--agent-mode', '-E']]) {
      const r = await run(args);
      expect({ args, code: r.code, first: r.stderr.split('\n')[0], started: r.started })
        .toEqual({ args, code: 2, first: args.includes('--E') ? 'flag needs an argument: --E' : "flag needs an argument: 'E' in -E", started: undefined });
    }
    expect(flagWithoutValue(['--E'])).toBe('flag needs an argument: --E');
  });

  test('values given are taken; after -- nothing is an option; the fast path leaves an empty -c to yargs', async () => {
    expect(flagWithoutValue(['-c', 'a.yml', '-E', 'x=1', '-Ey=2'])).toBeUndefined();
    expect(flagWithoutValue(['-c', '-'])).toBeUndefined();
    expect(flagWithoutValue(['--', '-c'])).toBeUndefined();
    expect(plainServerStart(['-c', ''])).toBeUndefined();
    const r = await run(['-c', 'a.yml', '-E', 'path.data=/x']);
    expect(r).toMatchObject({ code: 0, stderr: '', started: { config: 'a.yml', E: ['path.data=/x'] } });
  });
});

test('-h shows the help, as --help does (Go accepts -h)', async () => {
  const long = await run(['--help']);
  const short = await run(['-h']);
  expect(short).toEqual({ code: 0, stdout: long.stdout, stderr: '' });
  expect(short.stdout).toContain('fleet-server enrollment-token');
  expect(short.stdout).toMatch(/-h, --help/);
  expect((await run(['policy', 'list', '-h'])).stdout).toContain('fleet-server policy list');
});

test("an unknown option's reason comes first: outside a command, with a pointer to --help instead of the program's whole usage", async () => {
  const r = await run(['--foo']);
  expect(r.code).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0]).toBe('Unknown argument: foo');
  expect(lines.length).toBeLessThanOrEqual(2);
  expect(r.stderr).toContain("Run 'fleet-server --help'");
  expect(r.started).toBeUndefined();
  // Within a command: the reason, that command's usage (its options), the reason again last.
  const sub = await run(['policy', 'list', '--bogus', '-E', `path.data=${join(scratch, 'none')}`]);
  const subLines = sub.stderr.trimEnd().split('\n');
  expect([sub.code, subLines[0], subLines[subLines.length - 1]]).toEqual([2, 'Unknown argument: bogus', 'Unknown argument: bogus']);
  expect(sub.stderr).toContain('fleet-server policy list');
  expect(existsSync(join(scratch, 'none'))).toBe(false);
});

test('a misspelled output stops an admin command that would make the embedded store (policy put), before it makes anything', async () => {
  const data = join(scratch, 'typo-data');
  const policy = join(scratch, 'p.yml');
  writeFileSync(policy, 'id: p1\noutputs: {default: {type: elasticsearch, hosts: ["http://localhost:9200"]}}\n');
  const r = await run(['policy', 'put', policy, '-E', 'output.elasticsearh.hosts=https://es:9200', '-E', `path.data=${data}`]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/^fleet-server: config key output\.elasticsearh: .*output\.elasticsearch\?.*\n$/) });
  expect(existsSync(data)).toBe(false);
});
