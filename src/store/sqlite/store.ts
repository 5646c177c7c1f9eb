// The embedded store on node:sqlite. Each table holds documents in their .fleet-* shape (JSON) with a
// few columns extracted for indexing. Calls are synchronous underneath; the async port keeps the
// Elasticsearch adapter interchangeable. Secrets the server must give back are sealed at rest
// (secret-box.ts); enrollment tokens are not kept at all (their secret's salted hash is in api_keys).
import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import type {
  ActionDoc, ActionResultDoc, AgentDoc, AgentOutput, EnrollmentKeyDoc, Hit, PolicyDoc, RoleMap,
} from '../documents';
import { mergeDoc, removeFields } from '../doc-merge';
import type {
  AgentListQuery, ApiKey, ApiKeyCheck, ApiKeyService, ChangeFeed, CreateApiKeyRequest, DocUpdate, MintedOutputKey,
  OutputKeyRequest, PendingAction, PendingActionQuery, Store,
} from '../port';
import { ConflictError, NotFoundError, secretReference, StoreUnavailableError, type WriteFaultListener } from '../port';
import { hashSecret, newApiKeyId, newApiKeySecret, newSalt } from './api-keys';
import { SqliteArtifacts } from './artifacts';
import { BlobDir } from './blobs';
import { ChangeWatcher, SqliteChangeFeed } from './change-feed';
import { openDatabase } from './database';
import { WalCheckpointer, type CheckpointerOptions } from './checkpointer';
import { GroupCommit } from './group-commit';
import { SqliteDeliveries } from './deliveries';
import { FileFlusher, guarded, storeError, type Statement } from './errors';
import { DataDirLock } from './lock';
import { enrollmentDocAtRest } from './schema';
import type { SecretBox } from './secret-box';
import { openFields, sealFields } from './sealed-fields';
import type { SqlAccess } from './sql-access';
import { SqliteUploads } from './uploads';
import { AGENT_BY_ID, AGENT_SELECT, agentHit, batchRefreshes, checkinEffect, CLEAR_KEPT_POLICY, DROP_REFRESH, KEPT_POLICY, policyOnlyOf, PUT_POLICY, PUT_REFRESH, refreshOf, withKeptPolicy } from './agent-checkins';
import { API_KEY_BY_ID, keyCheck, openReader, openSecret, ROLES_BY_ID, rolesOf, rowHit, SECRET_BY_ID } from './check-in-reads';
import { isoToMs, rfc3339 } from '../../util/time';

type Row = Record<string, unknown>;

export interface SqliteStoreOptions {
  /**
   * The server's open: one server per data directory (a lock), and the file checked for damage first.
   * The admin CLI opens without it, beside a running server.
   */
  server?: boolean;
  /** Key material that seals secrets; without it, `fleet-server.key` beside the database (made on first use). */
  secretsKey?: string;
  /** The server's checkpoint timing (checkpointer.ts; tests set the spacing so cycles do not follow the clock). */
  checkpoints?: CheckpointerOptions;
}


/** How long the server's writer waits for another process's write lock (see the constructor). */
export const SERVER_BUSY_TIMEOUT_MS = 1000;

const PLAIN_NAME = /^[A-Za-z0-9_-]+$/;

function hasNull(v: unknown): boolean {
  if (v === null) return true;
  if (typeof v !== 'object') return false;
  return Object.values(v as object).some(hasNull);
}

/**
 * Agent updates applied per turn of the event loop by bulkUpdateAgents: 15–40 ms of work. Smaller parts
 * cost more in all (the store's CPU on 100,000 refreshes: one part 34 µs each, 2,000 per part 42, 250 per
 * part 45).
 */
const BULK_UPDATE_CHUNK = 1000;

/** Agent fields kept in columns of their own (indexed): an update that sets one rewrites the row from JS. */
const AGENT_COLUMNS = new Set(['access_api_key_id', 'enrollment_id', 'policy_id', 'active']);
type FeedTable = 'policies' | 'actions';
const FEED_TABLES: readonly FeedTable[] = ['policies', 'actions'];
/** The agent's outputs (JSON), what an update's whileOutputKeysUnset is checked against. */
const OUTPUTS_OF = "SELECT json_extract(doc, '$.outputs') AS outputs FROM agents WHERE id = ?";
/** The agent's policy_id, from its column: what an update's whilePolicyId is checked against. */
const POLICY_ID_OF = 'SELECT policy_id FROM agents WHERE id = ?';
/** The agent's access key id: what an update's whileAccessKeyId is checked against. */
const ACCESS_KEY_OF = "SELECT json_extract(doc, '$.access_api_key_id') AS k FROM agents WHERE id = ?";

/**
 * An agent update done by SQLite's json_patch, json_remove and json_set, without reading the document
 * into JS: the same merge as mergeDoc (objects merge, anything else replaces; a top-level null is set,
 * not removed as json_patch would) as long as it sets no column field, replaces nothing and has no null
 * below the top level. A check-in with news (status, metadata, components) from each of 100,000 agents
 * costs the database's owner a JSON parse, merge and stringify per agent otherwise; held polls' refreshes
 * go to agent-checkins.ts instead. Undefined when it does not apply.
 */
function sqlPatch(u: DocUpdate<AgentDoc>): { merge: string; removals: string[]; nulls: string[] } | undefined {
  if (u.replace?.length) return undefined;
  const merge: Record<string, unknown> = {};
  const nulls: string[] = [];
  for (const [k, v] of Object.entries(u.doc)) {
    if (v === undefined) continue;
    if (AGENT_COLUMNS.has(k) || !PLAIN_NAME.test(k)) return undefined;
    if (v === null) nulls.push(`$.${k}`);
    else if (hasNull(v)) return undefined;
    else merge[k] = v;
  }
  const removals: string[] = [];
  for (const field of u.unset ?? []) {
    const parts = field.split('.');
    if (!parts.every((p) => PLAIN_NAME.test(p)) || AGENT_COLUMNS.has(parts[0]!)) return undefined;
    removals.push(`$.${field}`);
  }
  return { merge: JSON.stringify(merge), removals, nulls };
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly traits = { remoteApiKeys: false, filesExpire: false };
  readonly policyChanges: ChangeFeed<PolicyDoc>;
  readonly actionChanges: ChangeFeed<ActionDoc>;
  readonly uploads: SqliteUploads;
  readonly deliveries: SqliteDeliveries;
  readonly artifacts: SqliteArtifacts;

  private readonly db: DatabaseSync;
  private readonly box: SecretBox;
  private readonly lock: DataDirLock | undefined;
  private readonly watcher: ChangeWatcher;
  private readonly commits: GroupCommit;
  /** The WAL, flushed before writes are acknowledged (group-commit.ts). */
  private readonly wal: FileFlusher | undefined;
  /** Copies the WAL into the database off the event loop's disk waits (checkpointer.ts); the server's only. */
  private readonly checkpointer: WalCheckpointer | undefined;
  private readonly dbFile: FileFlusher | undefined;
  /** Chunk bytes, as files beside the database (blobs.ts). */
  private readonly blobs: BlobDir;
  private readonly stmts = new Map<string, Statement>();
  /**
   * The change feeds' own read connection (none for `:memory:`). On the writer's connection the next
   * group's transaction is open while the last one's WAL flush runs (group-commit.ts), so a feed woken
   * by that flush read the open group's rows there: actions handed to agents before they were durable,
   * or at all — a COMMIT that then fails takes them back, and their seq goes to the next action, which
   * a dispatcher already past that seq would never deliver. Another connection sees only what committed.
   */
  private readonly feedDb: DatabaseSync | undefined;
  private readonly feedStmts = new Map<string, Statement>();
  /**
   * The highest seq of each feed's table known durable: feeds read up to here. Another connection sees a
   * group's rows once its COMMIT has run, before the WAL flush that makes them durable ends; a flush that
   * fails is final (group-commit.ts) and those rows may not survive a restart, so no agent may be handed
   * them. Raised by flushAndRaise only, never past what a flush that ended covered.
   */
  private durableSeq: Record<FeedTable, number> = { policies: -1, actions: -1 };
  /** A read for flushAndRaise failed: the change watcher's next poll flushes and reads again. */
  private durableBehind = false;
  /** Why the last write failed, until a write changes rows again (checkpoints stopped: for good). */
  private writeFault: string | undefined;
  /** The last bulkUpdateAgents' parts all applied (not yet committed): the next batch starts then. */
  private bulkApplied: Promise<void> = Promise.resolve();
  private readonly faultListeners = new Set<WriteFaultListener>();

  constructor(private readonly path: string, opts: SqliteStoreOptions = {}) {
    this.lock = opts.server && path !== ':memory:' ? DataDirLock.acquire(dirname(path)) : undefined;
    try {
      ({ db: this.db, box: this.box } = openDatabase(path, { secretsKey: opts.secretsKey, verify: opts.server }));
      // The server's BEGIN waits for another process's write lock on the event loop, every request and
      // held poll with it: an admin command's transaction lasts a turn of its own loop, so a wait past
      // SERVER_BUSY_TIMEOUT_MS is a lock held elsewhere, answered 503 (and not waited for again at once:
      // group-commit.ts). The admin CLI keeps openDatabase's longer wait.
      if (opts.server) this.db.exec(`PRAGMA busy_timeout = ${SERVER_BUSY_TIMEOUT_MS}`);
    } catch (err) {
      this.lock?.release();
      throw err;
    }
    this.wal = path === ':memory:' ? undefined : new FileFlusher(`${path}-wal`);
    try {
      this.feedDb = path === ':memory:' ? undefined : openReader(path);
      // What is in the database at open is on disk (recovered from it), or on its way from a previous
      // process that ended: durable.
      this.durableSeq = this.feedMaxSeqs();
    } catch (err) {
      this.feedDb?.close();
      this.db.close();
      this.lock?.release();
      throw storeError(err, path);
    }
    const failed = (err: unknown): unknown => {
      const e = err instanceof StoreUnavailableError ? err : storeError(err, this.path);
      if (e instanceof StoreUnavailableError) this.setWriteFault(e.message);
      return e;
    };
    // Only the server checkpoints: one process at a time, so each cycle's pin is taken while frames wait
    // to be copied (checkpointer.ts). An admin command's writes are copied by the server, or when its
    // connection closes last.
    if (this.wal && opts.server) {
      this.dbFile = new FileFlusher(path);
      try {
        this.checkpointer = new WalCheckpointer(path, this.db, this.wal, this.dbFile, (err) => {
          failed(err);
          const lasting = this.lastingFault();
          if (lasting) this.setWriteFault(lasting);
        }, opts.checkpoints);
      } catch (err) {
        this.feedDb?.close();
        this.db.close();
        this.lock?.release();
        throw storeError(err, path);
      }
    }
    // Another process's commit (the admin CLI's) reaches the feeds once a flush of ours has covered it.
    this.watcher = new ChangeWatcher(this.db, () => this.flushAndRaise(), () => this.durableBehind);
    this.commits = new GroupCommit(this.db, {
      failed,
      totalChanges: () => this.totalChanges(),
      durable: () => this.flushAndRaise(),
      lost: () => this.wal?.lost,
      stalled: (fault) => this.setWriteFault(fault ?? this.lastingFault()),
      wrote: () => this.checkpointer?.wrote(),
      committed: (tables, rowsChanged) => {
        // A write that changed rows ends a fault, except a lasting one.
        if (this.writeFault !== undefined && rowsChanged) this.setWriteFault(this.lastingFault());
        if (tables.size > 0) this.watcher.notify([...tables]);
      },
    });
    this.policyChanges = this.feed<PolicyDoc>('policies');
    // Expired actions are not dispatched, as upstream's action monitor filters them.
    this.actionChanges = this.feed<ActionDoc>('actions', ' AND expiration_ms > ?', () => [Date.now()]);
    this.blobs = BlobDir.forDatabase(path, (fault) => this.setWriteFault(fault));
    const sql: SqlAccess = { q: (text) => this.q(text), write: (fn) => this.write(fn) };
    this.uploads = new SqliteUploads(sql, this.blobs);
    this.deliveries = new SqliteDeliveries(sql, this.blobs);
    this.artifacts = new SqliteArtifacts(sql);
  }

  /** A change feed over a table whose rowid `seq` plays the part of Elasticsearch's _seq_no. */
  private feed<T>(table: 'policies' | 'actions', filter = '', params: () => number[] = () => []): ChangeFeed<T> {
    return new SqliteChangeFeed<T>(
      this.watcher, table,
      () => this.durableSeq[table],
      (after, upTo) => this.feedQ(`SELECT seq, id, doc FROM ${table} WHERE seq > ? AND seq <= ?${filter} ORDER BY seq`)
        .all(after, upTo, ...params()).map((r) => this.sealedHit<T>(r as Row)!),
    );
  }

  /** Prepared statements are cached: the check-in path runs the same few queries constantly. */
  private q(sql: string): Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = guarded(this.db.prepare(sql), this.path);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /**
   * A write, in the event-loop turn's transaction (group-commit.ts); resolves once committed, and
   * feeds following the tables named are woken then. A write SQLite cannot make (disk full, I/O error,
   * read-only, locked) is StoreUnavailableError and a write fault until a later write changes rows again.
   */
  private write<T>(fn: () => T, changed: readonly string[] = []): Promise<T> {
    return this.commits.write(fn, changed);
  }

  private totalChanges(): number {
    return Number((this.q('SELECT total_changes() AS n').get() as Row)['n']);
  }

  /** A fault only a restart ends: the WAL failed to flush, or checkpoints stopped. */
  private lastingFault(): string | undefined {
    return this.wal?.lost?.message ?? this.checkpointer?.stuckFault;
  }

  private setWriteFault(fault: string | undefined): void {
    if (fault === this.writeFault) return;
    this.writeFault = fault;
    for (const fn of this.faultListeners) fn(fault);
  }

  watchWrites(fn: WriteFaultListener): () => void {
    this.faultListeners.add(fn);
    if (this.writeFault !== undefined) fn(this.writeFault);
    return () => this.faultListeners.delete(fn);
  }

  /** A policy or action row (with its seq), credentials inside opened. */
  private sealedHit<T>(row: Row | undefined): Hit<T> | undefined {
    if (!row) return undefined;
    const id = row['id'] as string;
    return { _id: id, _seq_no: Number(row['seq']), _source: openFields<T>(row['doc'] as string, this.box, id) };
  }

  /** A statement of the feeds' connection (the writer's for `:memory:`). */
  private feedQ(sql: string): Statement {
    if (!this.feedDb) return this.q(sql);
    let s = this.feedStmts.get(sql);
    if (!s) {
      s = guarded(this.feedDb.prepare(sql), this.path);
      this.feedStmts.set(sql, s);
    }
    return s;
  }

  private maxSeq(table: 'policies' | 'actions'): number {
    const row = this.feedQ(`SELECT max(seq) AS m FROM ${table}`).get() as Row;
    return row['m'] === null ? -1 : Number(row['m']);
  }

  private feedMaxSeqs(): Record<FeedTable, number> {
    return { policies: this.maxSeq('policies'), actions: this.maxSeq('actions') };
  }

  /**
   * Flushes the WAL, then raises the durable seqs to what had committed when the flush began: an
   * fdatasync of the shared -wal file covers every frame written before it, another process's too (and
   * fails if any of them could not be written). Called right after each COMMIT of this process, and when
   * another process's commit is noticed. The tables whose seq rose are told: their feeds may have been
   * woken before and found nothing past the old seq.
   */
  private async flushAndRaise(): Promise<void> {
    let seen: Record<FeedTable, number> | undefined;
    try {
      seen = this.feedMaxSeqs();
    } catch {
      this.durableBehind = true; // the fault shows through the guarded read; the watcher tries again
    }
    if (this.wal) await this.wal.flush();
    if (!seen) return;
    this.durableBehind = false;
    const rose = FEED_TABLES.filter((t) => seen[t] > this.durableSeq[t]);
    for (const t of rose) this.durableSeq[t] = seen[t];
    if (rose.length > 0) this.watcher.notify(rose);
  }

  async ready(): Promise<void> {}

  /** Statements are guarded (errors.ts): a failing read here is already a StoreUnavailableError. */
  async healthCheck(): Promise<void> {
    this.q('SELECT 1 FROM policies LIMIT 1').get();
  }

  async close(): Promise<void> {
    if (this.db.isOpen) this.commits.flush();
    await this.checkpointer?.stop();
    await this.wal?.close();
    await this.dbFile?.close();
    this.watcher.close();
    this.stmts.clear();
    this.feedStmts.clear();
    if (this.feedDb?.isOpen) this.feedDb.close();
    this.faultListeners.clear();
    // The writer's connection closes last: SQLite then copies what is left and removes the WAL.
    const closeWriter = (): void => {
      if (this.db.isOpen) this.db.close();
    };
    if (this.checkpointer) this.checkpointer.close(closeWriter);
    else closeWriter();
    this.blobs.close();
    this.lock?.release();
  }

  // ---- security ----

  /** The embedded store mints every key itself, remote outputs' too (see docs/compatibility.md). */
  apiKeysFor(): ApiKeyService {
    return this;
  }

  async createApiKey(req: CreateApiKeyRequest): Promise<ApiKey> {
    const key = { id: newApiKeyId(), key: newApiKeySecret() };
    const insert = this.apiKeyInsert(key, req);
    await this.write(insert);
    return key;
  }

  /** The INSERT of a new key; hashed and serialized before the write, so the transaction stays short. */
  private apiKeyInsert(key: ApiKey, req: CreateApiKeyRequest): () => void {
    const salt = newSalt();
    const args = [key.id, req.name, salt, hashSecret(salt, key.key), JSON.stringify(req.roleDescriptors), JSON.stringify(req.metadata), rfc3339()];
    return () => void this.q('INSERT INTO api_keys (id, name, salt, hash, role_descriptors, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run(...args);
  }

  private secretInsert(id: string, value: string): () => void {
    const sealed = this.box.seal(value, id);
    return () => void this.q('INSERT INTO secrets (id, value) VALUES (?, ?)').run(id, sealed);
  }

  async createOutputKeys(agentId: string, keys: OutputKeyRequest[], update: DocUpdate<AgentDoc>): Promise<MintedOutputKey[]> {
    const minted: MintedOutputKey[] = [];
    const inserts: (() => void)[] = [];
    const outputs: Record<string, unknown> = { ...(update.doc.outputs as Record<string, unknown> | undefined) };
    for (const k of keys) {
      const m = { output: k.output, key: { id: newApiKeyId(), key: newApiKeySecret() }, secretId: newApiKeyId() };
      minted.push(m);
      inserts.push(this.apiKeyInsert(m.key, k.request), this.secretInsert(m.secretId, `${m.key.id}:${m.key.key}`));
      outputs[k.output] = { api_key: secretReference(m.secretId), api_key_id: m.key.id, ...k.entry };
    }
    const agentUpdate: DocUpdate<AgentDoc> = { ...update, id: agentId, doc: { ...update.doc, outputs } };
    await this.write(() => {
      for (const insert of inserts) insert();
      if (!this.applyAgentUpdate(agentUpdate)) throw new NotFoundError(`agent ${agentId} not found`);
    });
    return minted;
  }

  async checkApiKey(id: string, secret: string): Promise<ApiKeyCheck> {
    return keyCheck(this.q(API_KEY_BY_ID).get(id) as Row | undefined, secret);
  }

  async getApiKeyRoles(id: string): Promise<RoleMap | undefined> {
    return rolesOf(this.q(ROLES_BY_ID).get(id) as Row | undefined);
  }

  async updateApiKeyRoles(ids: string[], roles: RoleMap): Promise<void> {
    const json = JSON.stringify(roles);
    await this.write(() => {
      for (const id of ids) this.q('UPDATE api_keys SET role_descriptors = ? WHERE id = ?').run(json, id);
    });
  }

  async invalidateApiKeys(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.write(() => {
      for (const id of ids) this.q('UPDATE api_keys SET invalidated = 1 WHERE id = ?').run(id);
    });
  }

  async createSecret(value: string): Promise<string> {
    const id = newApiKeyId();
    await this.write(this.secretInsert(id, value));
    return id;
  }

  async getSecret(id: string): Promise<string | undefined> {
    return openSecret(this.q(SECRET_BY_ID).get(id) as Row | undefined, this.box, id, this.path);
  }

  async deleteSecrets(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.write(() => {
      for (const id of ids) this.q('DELETE FROM secrets WHERE id = ?').run(id);
    });
  }

  // ---- enrollment keys ----

  async findEnrollmentKey(apiKeyId: string): Promise<Hit<EnrollmentKeyDoc> | undefined> {
    return rowHit<EnrollmentKeyDoc>(this.q('SELECT id, doc FROM enrollment_keys WHERE api_key_id = ? AND active = 1').get(apiKeyId) as Row | undefined);
  }

  async listEnrollmentKeys(policyId?: string): Promise<Hit<EnrollmentKeyDoc>[]> {
    const rows = policyId === undefined
      ? this.q('SELECT id, doc FROM enrollment_keys ORDER BY rowid').all()
      : this.q('SELECT id, doc FROM enrollment_keys WHERE policy_id = ? ORDER BY rowid').all(policyId);
    return rows.map((r) => rowHit<EnrollmentKeyDoc>(r as Row)!);
  }

  async putEnrollmentKey(id: string, doc: EnrollmentKeyDoc): Promise<void> {
    const atRest = enrollmentDocAtRest(doc);
    await this.write(() => this.q(
      'INSERT OR REPLACE INTO enrollment_keys (id, api_key_id, policy_id, active, doc) VALUES (?, ?, ?, ?, ?)',
    ).run(id, doc.api_key_id, doc.policy_id ?? null, doc.active ? 1 : 0, JSON.stringify(atRest)));
  }

  async updateEnrollmentKey(id: string, partial: Partial<EnrollmentKeyDoc>): Promise<void> {
    await this.write(() => {
      const cur = rowHit<EnrollmentKeyDoc>(this.q('SELECT id, doc FROM enrollment_keys WHERE id = ?').get(id) as Row | undefined);
      if (!cur) throw new NotFoundError(`enrollment key ${id} not found`);
      const doc = enrollmentDocAtRest(mergeDoc(cur._source, partial));
      this.q('UPDATE enrollment_keys SET api_key_id = ?, policy_id = ?, active = ?, doc = ? WHERE id = ?')
        .run(doc.api_key_id, doc.policy_id ?? null, doc.active ? 1 : 0, JSON.stringify(doc), id);
    });
  }

  // ---- agents ----

  async getAgent(id: string): Promise<Hit<AgentDoc> | undefined> {
    return agentHit(this.q(AGENT_BY_ID).get(id) as Row | undefined);
  }

  async findAgentByEnrollmentId(enrollmentId: string): Promise<Hit<AgentDoc> | undefined> {
    return agentHit(this.q(`${AGENT_SELECT} WHERE a.enrollment_id = ? LIMIT 1`).get(enrollmentId) as Row | undefined);
  }

  async findAgentByAccessKeyId(keyId: string): Promise<Hit<AgentDoc> | undefined> {
    return agentHit(this.q(`${AGENT_SELECT} WHERE a.access_api_key_id = ? LIMIT 1`).get(keyId) as Row | undefined);
  }

  /** The whole document: it carries the kept check-in refresh now (agent-checkins.ts), so that row goes. */
  private putAgentRow(id: string, doc: AgentDoc, insert: boolean): void {
    const cols = [doc.access_api_key_id ?? null, doc.enrollment_id ?? null, doc.policy_id ?? null, doc.active ? 1 : 0, JSON.stringify(doc)];
    if (insert) {
      this.q('INSERT INTO agents (access_api_key_id, enrollment_id, policy_id, active, doc, id) VALUES (?, ?, ?, ?, ?, ?)').run(...cols, id);
    } else {
      this.q('UPDATE agents SET access_api_key_id = ?, enrollment_id = ?, policy_id = ?, active = ?, doc = ? WHERE id = ?').run(...cols, id);
      // A new agent has no row there: deleteAgent dropped any of an earlier agent of that id.
      this.q(DROP_REFRESH).run(id);
    }
  }

  async createAgent(id: string, doc: AgentDoc): Promise<boolean> {
    return this.write(() => {
      if (this.q('SELECT 1 FROM agents WHERE id = ?').get(id)) return false;
      this.putAgentRow(id, doc, true);
      return true;
    });
  }

  /**
   * Whether the agent exists; `update` applied unless its whilePolicyId is not the agent's policy_id.
   * Throws ConflictError when an output of whileOutputKeysUnset has a key recorded, or the access key is
   * not whileAccessKeyId's (the write is undone).
   */
  private applyAgentUpdate(update: DocUpdate<AgentDoc>, refreshOfUpdate = refreshOf): boolean {
    if (update.whileAccessKeyId !== undefined) {
      const row = this.q(ACCESS_KEY_OF).get(update.id) as Row | undefined;
      if (!row) return false;
      const mine = (update.doc as Partial<AgentDoc>).access_api_key_id;
      if (row['k'] !== update.whileAccessKeyId && (mine === undefined || row['k'] !== mine)) {
        throw new ConflictError(`agent ${update.id}: its access key changed meanwhile`);
      }
    }
    if (update.whileOutputKeysUnset?.length) {
      const row = this.q(OUTPUTS_OF).get(update.id) as Row | undefined;
      const stored = row?.['outputs'] ? JSON.parse(row['outputs'] as string) as Record<string, Partial<AgentOutput> | undefined> : {};
      const mine = (update.doc as Partial<AgentDoc>).outputs as Record<string, Partial<AgentOutput> | undefined> | undefined;
      const taken = update.whileOutputKeysUnset.find((name) => {
        const o = stored[name];
        return typeof o?.api_key === 'string' && o.api_key !== '' && o.api_key_id !== mine?.[name]?.api_key_id;
      });
      if (taken !== undefined) throw new ConflictError(`agent ${update.id}: a key for output ${taken} was recorded meanwhile`);
    }
    if (update.whilePolicyId !== undefined) {
      const row = this.q(POLICY_ID_OF).get(update.id) as Row | undefined;
      if (!row) return false;
      if (row['policy_id'] !== update.whilePolicyId) return true;
    }
    const refresh = refreshOfUpdate(update);
    if (refresh !== undefined) {
      return Number(this.q(PUT_REFRESH).run(update.id, refresh.fields, refresh.policyId, refresh.revision).changes) > 0;
    }
    const ack = policyOnlyOf(update);
    if (ack !== undefined) return Number(this.q(PUT_POLICY).run(update.id, ack.updatedAt, ack.policyId, ack.revision).changes) > 0;
    const effect = checkinEffect(update);
    let u = update;
    let keptPolicy = false;
    if (effect === 'supersedes' || effect === 'policy') {
      u = withKeptPolicy(update, this.q(KEPT_POLICY).get(update.id) as Row | undefined);
      keptPolicy = u !== update;
    }
    const patch = effect === 'merge' ? undefined : sqlPatch(u);
    if (patch) {
      let expr = 'json_patch(doc, ?)';
      if (patch.removals.length > 0) expr = `json_remove(${expr}${', ?'.repeat(patch.removals.length)})`;
      if (patch.nulls.length > 0) expr = `json_set(${expr}${", ?, json('null')".repeat(patch.nulls.length)})`;
      const found = Number(this.q(`UPDATE agents SET doc = ${expr} WHERE id = ?`).run(patch.merge, ...patch.removals, ...patch.nulls, u.id).changes) > 0;
      if (found && effect === 'supersedes') this.q(DROP_REFRESH).run(u.id);
      else if (found && keptPolicy) this.q(CLEAR_KEPT_POLICY).run(u.id);
      return found;
    }
    const cur = agentHit(this.q(AGENT_BY_ID).get(u.id) as Row | undefined);
    if (!cur) return false;
    if (u.replace) removeFields(cur._source, u.replace);
    const doc = mergeDoc(cur._source, u.doc as Record<string, unknown>);
    if (u.unset) removeFields(doc, u.unset);
    this.putAgentRow(u.id, doc, false);
    return true;
  }

  async updateAgent(update: DocUpdate<AgentDoc>): Promise<void> {
    await this.write(() => {
      if (!this.applyAgentUpdate(update)) throw new NotFoundError(`agent ${update.id} not found`);
    });
  }

  /**
   * Applied BULK_UPDATE_CHUNK at a time, one turn of the event loop each (each part joins that turn's
   * group commit). A worker's check-in bookkeeping reaches the store's owner as one batch of up to
   * ~16,000 agents; applied at once, it held the owner's event loop for seconds on a loaded box (a
   * profile of a worker crash at 100,000 agents: the primary 100 % busy for 48 s, two thirds of it in
   * these UPDATEs), and the connection handoffs, first check-ins and /stats scrapes waiting on it with it.
   * Batches are still applied whole in the order they came: a later one (an agent's check-in through
   * another worker) waits for the parts of an earlier one, which would otherwise write an older check-in
   * over it. A part that fails ends the batch; the bookkeeping puts it back whole for its next flush.
   */
  async bulkUpdateAgents(updates: DocUpdate<AgentDoc>[]): Promise<void> {
    const earlier = this.bulkApplied;
    let applied!: () => void;
    this.bulkApplied = new Promise<void>((resolve) => (applied = resolve));
    const parts: Promise<void>[] = [];
    let failed = false;
    const refreshes = batchRefreshes();
    try {
      await earlier;
      for (let at = 0; at < updates.length; at += BULK_UPDATE_CHUNK) {
        if (at > 0) await new Promise<void>((resolve) => setImmediate(resolve));
        if (failed) break;
        const part = updates.slice(at, at + BULK_UPDATE_CHUNK);
        const written = this.write(() => {
          for (const u of part) this.applyAgentUpdate(u, refreshes);
        });
        // Handled at once, so a part failing while later ones are applied is no unhandled rejection.
        written.catch(() => (failed = true));
        parts.push(written);
      }
    } finally {
      applied();
    }
    await Promise.all(parts);
  }

  async deleteAgent(id: string): Promise<void> {
    await this.write(() => {
      this.q('DELETE FROM agents WHERE id = ?').run(id);
      this.q(DROP_REFRESH).run(id);
    });
  }

  async listAgents(query: AgentListQuery): Promise<Hit<AgentDoc>[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (query.policyId !== undefined) {
      where.push('a.policy_id = ?');
      params.push(query.policyId);
    }
    if (query.active !== undefined) {
      where.push('a.active = ?');
      params.push(query.active ? 1 : 0);
    }
    const sql = `${AGENT_SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY a.rowid LIMIT ?`;
    return guarded(this.db.prepare(sql), this.path).all(...params, query.limit ?? 10000).map((r) => agentHit(r as Row)!);
  }

  // ---- policies ----

  // The latest revisions as far as they are durable (durableSeq): a policy first read here, not through
  // its feed, must not reach agents before its flush has ended either.
  async latestPolicies(): Promise<Hit<PolicyDoc>[]> {
    const upTo = this.durableSeq.policies;
    return this.q(`SELECT p.seq, p.id, p.doc FROM policies p
      JOIN (SELECT policy_id, max(revision_idx) AS r FROM policies WHERE seq <= ? GROUP BY policy_id) m
      ON p.policy_id = m.policy_id AND p.revision_idx = m.r WHERE p.seq <= ? ORDER BY p.policy_id`)
      .all(upTo, upTo).map((r) => this.sealedHit<PolicyDoc>(r as Row)!);
  }

  async latestPolicy(policyId: string): Promise<Hit<PolicyDoc> | undefined> {
    return this.sealedHit(this.q('SELECT seq, id, doc FROM policies WHERE policy_id = ? AND seq <= ? ORDER BY revision_idx DESC, seq DESC LIMIT 1')
      .get(policyId, this.durableSeq.policies) as Row | undefined);
  }

  /**
   * Written at doc.revision_idx unless that revision or a later one is stored: then at the one after the
   * highest. The caller read the latest revision before this write; another writer (an admin command in
   * another process) may have added one since, and a revision stored twice is dropped by the policy
   * monitor as no newer than what agents have. The read and the insert share the write transaction,
   * which holds the database's write lock.
   */
  async addPolicyRevision(doc: PolicyDoc): Promise<Hit<PolicyDoc>> {
    const id = randomUUID();
    const [row, written] = await this.write(() => {
      const top = Number((this.q('SELECT max(revision_idx) AS r FROM policies WHERE policy_id = ?').get(doc.policy_id) as Row)['r'] ?? 0);
      const next = doc.revision_idx > top ? doc : { ...doc, revision_idx: top + 1, data: { ...doc.data, revision: top + 1 } };
      return [this.q('INSERT INTO policies (id, policy_id, revision_idx, doc) VALUES (?, ?, ?, ?) RETURNING seq')
        .get(id, next.policy_id, next.revision_idx, JSON.stringify(sealFields(next, this.box, id))) as Row, next] as const;
    }, ['policies']);
    return { _id: id, _seq_no: Number(row['seq']), _source: written };
  }

  // ---- actions ----

  async createActions(docs: ActionDoc[]): Promise<Hit<ActionDoc>[]> {
    return this.write(() => docs.map((doc) => {
      const id = randomUUID();
      const agents = doc.agents ?? [];
      const row = this.q('INSERT INTO actions (id, action_id, expiration_ms, agent_count, doc) VALUES (?, ?, ?, ?, ?) RETURNING seq')
        .get(id, doc.action_id, isoToMs(doc.expiration) ?? null, agents.length, JSON.stringify(sealFields(doc, this.box, id))) as Row;
      const seq = Number(row['seq']);
      const link = this.q('INSERT OR IGNORE INTO action_agents (agent_id, seq, idx) VALUES (?, ?, ?)');
      agents.forEach((agentId, idx) => link.run(agentId, seq, idx));
      return { _id: id, _seq_no: seq, _source: doc };
    }), ['actions']);
  }

  async findAction(actionId: string): Promise<Hit<ActionDoc> | undefined> {
    return this.sealedHit(this.q('SELECT seq, id, doc FROM actions WHERE action_id = ? ORDER BY seq LIMIT 1').get(actionId) as Row | undefined);
  }

  async actionSeqNo(docId: string): Promise<number | undefined> {
    const row = this.q('SELECT seq FROM actions WHERE id = ?').get(docId) as Row | undefined;
    return row ? Number(row['seq']) : undefined;
  }

  async pendingActions(query: PendingActionQuery): Promise<PendingAction[]> {
    const rows = this.q(`SELECT a.seq, a.id, a.doc, a.agent_count, aa.idx FROM action_agents aa
      JOIN actions a ON a.seq = aa.seq
      WHERE aa.agent_id = ? AND aa.seq > ? AND aa.seq <= ? AND a.expiration_ms > ?
      ORDER BY aa.seq LIMIT ?`)
      .all(query.agentId, query.afterSeqNo, query.checkpoint, Date.parse(query.nowIso), query.limit) as Row[];
    return rows.map((r) => {
      const h = this.sealedHit<ActionDoc>(r)!;
      // As upstream's query (_source excludes agents): a large action's agent list is not carried around.
      delete h._source.agents;
      return { ...h, agentIndex: Number(r['idx']), agentCount: Number(r['agent_count']) };
    });
  }

  async listActions(limit: number): Promise<Hit<ActionDoc>[]> {
    return this.q('SELECT seq, id, doc FROM actions ORDER BY seq DESC LIMIT ?').all(limit).map((r) => this.sealedHit<ActionDoc>(r as Row)!);
  }

  async deleteExpiredActions(before: Date): Promise<number> {
    return this.write(() => {
      const ms = before.getTime();
      this.q('DELETE FROM action_agents WHERE seq IN (SELECT seq FROM actions WHERE expiration_ms <= ?)').run(ms);
      return Number(this.q('DELETE FROM actions WHERE expiration_ms <= ?').run(ms).changes);
    });
  }

  async writeOutputHealth(): Promise<void> {
    // Remote outputs' keys are minted locally here; there is no remote cluster whose health to record.
  }

  // ---- action results ----

  async createActionResults(results: { id: string; doc: ActionResultDoc }[]): Promise<void> {
    if (results.length === 0) return;
    await this.write(() => {
      for (const r of results) {
        this.q('INSERT OR IGNORE INTO action_results (id, action_id, doc) VALUES (?, ?, ?)').run(r.id, r.doc.action_id, JSON.stringify(r.doc));
      }
    });
  }

  async listActionResults(actionId: string): Promise<Hit<ActionResultDoc>[]> {
    return this.q('SELECT id, doc FROM action_results WHERE action_id = ? ORDER BY rowid').all(actionId).map((r) => rowHit<ActionResultDoc>(r as Row)!);
  }
}
