// What every admin command shares: the store the config names, opened for one command, and output as
// a table or one JSON document.
import { Admin } from '../fleet/admin';
import { createLogger } from '../logging/logger';
import { openStore } from '../store/open';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { redact, REDACTED } from '../util/redact';
import type { Store } from '../store/port';
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

export async function withAdmin<T>(args: Common, fn: (admin: Admin, store: Store) => Promise<T>): Promise<T> {
  const config = loadConfig(args);
  // Admin output goes to stdout; only warnings and errors are logged (to stderr).
  const log = createLogger({ ...config.logging, level: 'warn', toFiles: false, toStderr: true });
  const store = await openStore(config, log);
  try {
    return await fn(new Admin(store), store);
  } finally {
    await store.close();
  }
}

export function table(rows: string[][]): string[] {
  if (rows.length === 0) return [];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}
