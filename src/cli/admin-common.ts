// What every admin command shares: the store the config names, opened for one command, and output as
// a table or one JSON document.
import { Admin } from '../fleet/admin';
import { createLogger } from '../logging/logger';
import { openStore } from '../store/open';
import type { Store } from '../store/port';
import { loadConfig, type ConfigArgs } from './load-config';

export interface Common extends ConfigArgs {
  json?: boolean;
}

export function print(args: Common, json: unknown, lines: () => string[]): void {
  if (args.json) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else process.stdout.write(`${lines().join('\n')}\n`);
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
