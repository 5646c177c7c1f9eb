// What the embedded store's file modules (uploads, deliveries, artifacts) get from the store: its cached,
// guarded statements and its write transaction (which reports write faults and clears them).
import type { Statement } from './errors';

export interface SqlAccess {
  q(sql: string): Statement;
  write<T>(fn: () => T): Promise<T>;
}

export type Row = Record<string, unknown>;
