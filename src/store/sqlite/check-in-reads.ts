// The reads every check-in makes — the agent's document and its access key — and the two a rollout makes
// per agent — its output key's secret (when this process has not seen it yet) and the key's roles (the
// clean-up after the agent takes the revision) — as statements any connection can run: the store's own,
// and a cluster worker's read-only one (CheckinReads below). In a worker each would otherwise be a round
// trip to the database's owner, the primary, whose one core then bounds how fast agents check in: at
// 100,000 agents it was the busiest process of the server (60 s of CPU against ~20 s per worker through
// enrollment and first check-ins), and after a restart, with every agent reconnecting, the new server
// took over a minute to hold them again. In a rollout at 50,000 agents, reading and decrypting output
// keys for workers that had not minted them was a fifth of the primary's time.
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { AgentDoc, Hit, RoleMap } from '../documents';
import { StoreUnavailableError, type ApiKeyCheck } from '../port';
import { AGENT_BY_ID, agentHit } from './agent-checkins';
import { secretMatches } from './api-keys';
import type { SecretBox } from './secret-box';

export const API_KEY_BY_ID = 'SELECT salt, hash, invalidated FROM api_keys WHERE id = ?';
export const SECRET_BY_ID = 'SELECT value FROM secrets WHERE id = ?';
export const ROLES_BY_ID = 'SELECT role_descriptors FROM api_keys WHERE id = ? AND invalidated = 0';

type Row = Record<string, unknown>;

export function rowHit<T>(row: Row | undefined): Hit<T> | undefined {
  return row ? { _id: row['id'] as string, _source: JSON.parse(row['doc'] as string) as T } : undefined;
}

/** An access key's check from its row: the secret hashed with the row's salt, compared in constant time. */
export function keyCheck(row: Row | undefined, secret: string): ApiKeyCheck {
  if (!row || !secretMatches(row['salt'] as Uint8Array, row['hash'] as Uint8Array, secret)) return 'invalid';
  return Number(row['invalidated']) ? 'invalid' : 'valid';
}

/** A secret's plaintext from its row (undefined: no such secret). */
export function openSecret(row: Row | undefined, box: SecretBox, id: string, path: string): string | undefined {
  if (!row) return undefined;
  const plain = box.open(row['value'] as string, id);
  // The key was checked at open, so this is a row altered behind the server's back.
  if (plain === undefined) throw new StoreUnavailableError(`secret ${id} in ${path} cannot be decrypted with the configured key`);
  return plain;
}

export function rolesOf(row: Row | undefined): RoleMap | undefined {
  return row ? (JSON.parse(row['role_descriptors'] as string) as RoleMap) : undefined;
}

/** A read-only connection that waits only for the rare moments the WAL index is rebuilt; never long on the event loop. */
export function openReader(path: string): DatabaseSync {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    db.exec('PRAGMA busy_timeout = 50');
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * A read-only connection of this process to the embedded database another process owns. WAL lets it
 * read beside the owner's writes without their lock; each read is one statement, so it sees every write
 * acknowledged before it began (a worker's own writes are acknowledged after the owner's commit: it
 * reads what it wrote). A read that fails (a busy moment of the WAL, the file gone) throws; the caller
 * asks the owner instead.
 */
export class CheckinReads {
  private readonly db: DatabaseSync;
  private readonly agent: StatementSync;
  private readonly key: StatementSync;
  private readonly secret: StatementSync;
  private readonly roles: StatementSync;

  /** `box`: the store's encryption key, as its owner opened it (secret-box.ts). */
  constructor(private readonly path: string, private readonly box: SecretBox) {
    this.db = openReader(path);
    try {
      this.agent = this.db.prepare(AGENT_BY_ID);
      this.key = this.db.prepare(API_KEY_BY_ID);
      this.secret = this.db.prepare(SECRET_BY_ID);
      this.roles = this.db.prepare(ROLES_BY_ID);
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  getAgent(id: string): Hit<AgentDoc> | undefined {
    return agentHit(this.agent.get(id) as Row | undefined);
  }

  checkApiKey(id: string, secret: string): ApiKeyCheck {
    return keyCheck(this.key.get(id) as Row | undefined, secret);
  }

  getSecret(id: string): string | undefined {
    return openSecret(this.secret.get(id) as Row | undefined, this.box, id, this.path);
  }

  getApiKeyRoles(id: string): RoleMap | undefined {
    return rolesOf(this.roles.get(id) as Row | undefined);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
