// What every admin command shares: the store the config names, opened for one command, and output as
// a table or one JSON document.
import { existsSync, readFileSync } from 'node:fs';
import { Admin, AdminError } from '../fleet/admin';
import { createLogger } from '../logging/logger';
import { embeddedDbPath, openStore } from '../store/open';
import { describeError, withContext } from '../util/error-text';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { redact, REDACTED } from '../util/redact';
import type { Store } from '../store/port';
import { lacksServiceToken, SERVICE_TOKEN_KEYS, type FleetServerConfig } from '../config/config';
import { loadConfig, type ConfigArgs } from './load-config';

export interface Common extends ConfigArgs {
  json?: boolean;
  'show-secrets'?: boolean;
}

/**
 * Prints `value` as JSON (--json) or as `lines`. Documents carry credentials (an output's api_key or
 * password in a policy, a MIGRATE action's enrollment_token) that the embedded store opens when read;
 * printed, they would land in scroll-back, CI logs and tickets. They are redacted unless --show-secrets.
 */
export function print<T>(args: Common, value: T, lines: (shown: T) => string[] = (shown) => [JSON.stringify(shown, null, 2)]): void {
  const shown = args['show-secrets'] ? value : redactOpampConfig(redact(value)) as T;
  process.stdout.write(args.json ? `${JSON.stringify(shown, null, 2)}\n` : `${lines(shown).join('\n')}\n`);
}

/**
 * A policy's `opamp.config` is the Collectors' configuration as YAML text, whose exporters carry their
 * own credentials: redacted inside and written back as YAML when it holds any (as it was otherwise, its
 * layout and comments kept); all of it when it does not parse.
 */
function redactOpampConfig(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redactOpampConfig);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => {
    const config = k === 'opamp' && x !== null && typeof x === 'object' ? (x as Record<string, unknown>)['config'] : undefined;
    if (typeof config !== 'string') return [k, redactOpampConfig(x)];
    let text: string;
    try {
      const parsed: unknown = parseYaml(config);
      const redacted = redact(parsed);
      text = JSON.stringify(redacted) === JSON.stringify(parsed) ? config : stringifyYaml(redacted);
    } catch {
      text = REDACTED;
    }
    return [k, { ...(x as Record<string, unknown>), config: text }];
  }));
}

/** For what a command exists to show once (a new enrollment token): never redacted. */
export function printCreated(args: Common, value: unknown, lines: () => string[]): void {
  process.stdout.write(args.json ? `${JSON.stringify(value, null, 2)}\n` : `${lines().join('\n')}\n`);
}

/**
 * Runs `fn` on the store the configuration names. On the embedded store only a command that may start
 * one (`creates`: writing a policy or an artifact to prepare a server's first start) makes a new
 * database: any other, given a path.data that is not the server's, would leave an empty store (and a
 * new key) wherever it pointed, and answer from that as if nothing existed.
 */
export async function withAdmin<T>(args: Common, fn: (admin: Admin, store: Store) => Promise<T>, opts: { creates?: boolean } = {}): Promise<T> {
  const config = loadConfig(args);
  if (!config.elasticsearch && !opts.creates && !existsSync(embeddedDbPath(config))) {
    throw new AdminError(`no embedded store at ${config.pathData} (no fleet-server.db there): give the server's -c/-E path.data, or its Elasticsearch output`);
  }
  // Admin output goes to stdout; only warnings and errors are logged (to stderr).
  const log = createLogger({ ...config.logging, level: 'warn', toFiles: false, toStderr: true });
  const store = await openStore(config, log);
  try {
    return await fn(new Admin(store), store);
  } catch (err) {
    throw noServiceToken(config, err) ?? err;
  } finally {
    await store.close();
  }
}

/**
 * Elasticsearch's 401 when no service token was configured: the store reports it as a refused token,
 * which sends an operator looking for a wrong one. The store module (and the client library it loads)
 * is read only here, where the configuration names Elasticsearch and openStore loaded it already: an
 * admin command on the embedded store loads neither.
 */
export function noServiceToken(config: Pick<FleetServerConfig, 'elasticsearch'>, err: unknown): AdminError | undefined {
  if (!lacksServiceToken(config)) return undefined;
  const { statusIn } = require('../store/elasticsearch/connection') as typeof import('../store/elasticsearch/connection');
  // The client's 401 may sit under the store's error and the command's own.
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error && statusIn(e) !== 401; depth++) e = e.cause;
  if (statusIn(e) !== 401) return undefined;
  return new AdminError(`no Elasticsearch service token was given (Elasticsearch answered 401): set ${SERVICE_TOKEN_KEYS}, as for the server`, { cause: err });
}

/**
 * The file a command was given, `-` for standard input where the command reads it (`stdin`). yargs
 * hands a lone `-` on as "", as it does an empty argument; `argv`, the command line as given, tells
 * them apart. An empty one (`policy put "$UNSET"`) is refused: taken for standard input, it waited
 * silently on a terminal, and read nothing from a closed one ("policy must be an object").
 */
export function fileArg(file: string, argv: readonly string[], opts: { stdin?: boolean } = {}): string {
  if (file !== '') return file;
  // An empty argument given is that; a lone `-` (and none empty) is standard input.
  if (!argv.includes('') && argv.includes('-')) return '-';
  throw new AdminError(`cannot read '': give a file name${opts.stdin ? ' (or - for standard input)' : ''}`);
}

/**
 * A file a command reads whole (fileArg's), `-` standard input. Errors name the file: Node's EISDIR
 * names none.
 */
export function readInput(file: string): { text: string; source: string } {
  const stdin = file === '-';
  const source = stdin ? 'standard input' : file;
  try {
    return { text: readFileSync(stdin ? 0 : file, 'utf8'), source };
  } catch (err) {
    throw withContext(`cannot read ${source}`, err);
  }
}

/** A YAML (or JSON) document read by readInput; a syntax error names the file and the line. */
export function parseYamlInput(input: { text: string; source: string }): unknown {
  try {
    return parseYaml(input.text) as unknown;
  } catch (err) {
    throw new AdminError(`${input.source}: not valid YAML or JSON: ${describeError(err)}`);
  }
}

export function table(rows: string[][]): string[] {
  if (rows.length === 0) return [];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}
