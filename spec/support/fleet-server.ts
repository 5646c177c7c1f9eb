// Starts the bundled program (dist/fleet-server.js) the way an operator would, on free ports and a
// temporary data directory, and stops it with SIGTERM.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { NODE_FLAGS, START_ENV } from './node-flags';
import { freePort } from './ports';

const execFileAsync = promisify(execFile);

export const DIST = resolve(__dirname, '../../dist/fleet-server.js');

export interface StartOptions {
  dataDir?: string;
  overrides?: string[];
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  /** Reuse ports (a restart keeps the URL agents know). */
  port?: number;
  internalPort?: number;
  /** Wait for this text on stderr (default: the listening log line). */
  readyText?: string;
  /** Where the server logs when it logs to files only (logging.to_files): waits read it and its rotated files too. */
  logFile?: string;
  /** Start under this soft limit of open files (ulimit -n). */
  fileLimit?: number;
  /** Start as `node dist/fleet-server.js`, without the V8 flags the program ships with. */
  bareNode?: boolean;
  /** More V8 or Node flags, after the shipped ones. */
  nodeFlags?: string[];
}

export class FleetServerProcess {
  stdout = '';
  stderr = '';
  exitCode: number | null | undefined;
  private token: Promise<string> | undefined;
  /** The store's directory: dataDir unless a path.data override moved it. */
  storeDir: string;
  private exited: Promise<number | null>;
  logFile: string | undefined;

  constructor(readonly child: ChildProcess, readonly port: number, readonly internalPort: number, readonly dataDir: string) {
    this.storeDir = dataDir;
    child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((r) => child.once('exit', (code) => {
      this.exitCode = code;
      r(code);
    }));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Whether this start made the zero-config default policy (it says so on stdout). */
  get createdDefaultPolicy(): boolean {
    return this.stdout.includes('Created policy "default-policy"');
  }

  /**
   * An enrollment token for the default policy, made once by the admin CLI as an operator would: the
   * server prints none, its stdout not being a terminal.
   */
  enrollmentToken(): Promise<string> {
    this.token ??= execFileAsync(process.execPath, [DIST, 'enrollment-token', 'create', '--policy', 'default-policy', '--json', '-E', `path.data=${this.storeDir}`], { cwd: this.dataDir })
      .then(({ stdout }) => (JSON.parse(stdout) as { api_key: string }).api_key);
    return this.token;
  }

  async waitFor(text: string | RegExp, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const has = (): boolean => {
      const seen = this.stderr + this.stdout + (this.logFile ? logFileText(this.logFile) : '');
      return typeof text === 'string' ? seen.includes(text) : text.test(seen);
    };
    while (!has()) {
      if (this.exitCode !== undefined) throw new Error(`fleet-server exited (${this.exitCode}) before "${text}":\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for "${text}":\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** SIGTERM, then the exit code. */
  async stop(timeoutMs = 20000): Promise<number | null> {
    if (this.exitCode === undefined) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  logs(): Record<string, unknown>[] {
    return this.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** A log file's text with that of its rotated siblings (name.1, name.2, …). */
function logFileText(file: string): string {
  if (!existsSync(dirname(file))) return '';
  const name = basename(file);
  return readdirSync(dirname(file)).filter((f) => f.startsWith(name)).map((f) => readFileSync(join(dirname(file), f), 'utf8')).join('');
}

export function tempDir(prefix = 'fleet-spec-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export async function startFleetServer(opts: StartOptions = {}): Promise<FleetServerProcess> {
  const dataDir = opts.dataDir ?? tempDir();
  const port = opts.port ?? await freePort();
  const internalPort = opts.internalPort ?? await freePort();
  const args = [...(opts.bareNode ? [] : NODE_FLAGS), ...(opts.nodeFlags ?? []), DIST];
  if (opts.configFile) args.push('-c', opts.configFile);
  for (const o of [
    `path.data=${dataDir}`,
    `inputs.0.server.host=127.0.0.1`,
    `inputs.0.server.port=${port}`,
    `inputs.0.server.internal_port=${internalPort}`,
    'inputs.0.server.bulk.checkin_flush_interval=200ms',
    'logging.level=debug',
    // One process unless a test asks for workers (spec/workers.test.ts): the other tests read one process's logs and figures.
    'inputs.0.server.workers=1',
    ...(opts.overrides ?? []),
  ]) args.push('-E', o);
  const [cmd, argv] = opts.fileLimit === undefined
    ? [process.execPath, args]
    : ['/bin/sh', ['-c', `ulimit -n ${opts.fileLimit} && exec "$0" "$@"`, process.execPath, ...args]];
  // As the shebang starts it (V8 flags and start environment), so it need not re-execute itself; bareNode, neither.
  const shipped = opts.bareNode ? {} : START_ENV;
  const child = spawn(cmd, argv, { cwd: dataDir, env: { ...process.env, ...shipped, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = new FleetServerProcess(child, port, internalPort, dataDir);
  p.logFile = opts.logFile;
  p.storeDir = opts.overrides?.findLast((o) => o.startsWith('path.data='))?.slice('path.data='.length) ?? dataDir;
  await p.waitFor(opts.readyText ?? 'fleet-server internal listener');
  // The metrics listener opens after the agents' listeners (in a cluster, in the primary once every worker
  // is ready): a test that reads /stats at once would otherwise race it (seen once with two CI runs at once).
  if (opts.overrides?.includes('http.enabled=true')) await p.waitFor('metrics listener');
  return p;
}
