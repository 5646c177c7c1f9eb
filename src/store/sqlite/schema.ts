// Versioned schema migrations for the embedded store (PRAGMA user_version holds the applied count).
// Documents are kept as JSON in the .fleet-* shapes; columns beside them exist only to be indexed.
// A migration is SQL, or a function for rewrites SQL cannot express (sealing secrets).
import type { DatabaseSync } from 'node:sqlite';
import { enrollmentTokenPrefix, type EnrollmentKeyDoc } from '../documents';
import { sealFields, sealPlainFields } from './sealed-fields';
import type { SecretBox } from './secret-box';

export type Migration = string | ((db: DatabaseSync, ctx: { box: SecretBox; keyCheck: string }) => void);

/**
 * Enrollment key documents keep no token at rest (api_key ''; the .fleet-* shape requires the field):
 * its secret's salted hash is in api_keys, a prefix is kept for listing.
 */
export function enrollmentDocAtRest(doc: EnrollmentKeyDoc): EnrollmentKeyDoc {
  const out: EnrollmentKeyDoc = { ...doc, api_key: '' };
  if (typeof doc.api_key === 'string' && doc.api_key !== '') out.api_key_prefix = enrollmentTokenPrefix(doc.api_key);
  return out;
}

export const MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    role_descriptors TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    invalidated INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE secrets (id TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE enrollment_keys (
    id TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL,
    policy_id TEXT,
    active INTEGER NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX enrollment_keys_api_key ON enrollment_keys(api_key_id);
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    access_api_key_id TEXT,
    enrollment_id TEXT,
    policy_id TEXT,
    active INTEGER NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX agents_access_key ON agents(access_api_key_id);
  CREATE INDEX agents_enrollment_id ON agents(enrollment_id);
  CREATE TABLE policies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    policy_id TEXT NOT NULL,
    revision_idx INTEGER NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX policies_latest ON policies(policy_id, revision_idx);
  CREATE TABLE actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    action_id TEXT NOT NULL,
    expiration_ms INTEGER,
    agent_count INTEGER NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX actions_action_id ON actions(action_id);
  CREATE TABLE action_agents (
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (agent_id, seq)
  ) WITHOUT ROWID;
  CREATE TABLE action_results (
    id TEXT PRIMARY KEY,
    action_id TEXT NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX action_results_action ON action_results(action_id);
  `,
  // 2: secrets sealed at rest (AES-256-GCM, see secret-box.ts), credentials inside policies and actions
  // too (sealed-fields.ts); enrollment tokens dropped from their documents.
  (db, { box, keyCheck }) => {
    db.exec('CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    db.prepare("INSERT INTO meta (key, value) VALUES ('key_check', ?)").run(keyCheck);
    const seal = db.prepare('UPDATE secrets SET value = ? WHERE id = ?');
    for (const r of db.prepare('SELECT id, value FROM secrets').all() as { id: string; value: string }[]) seal.run(box.seal(r.value, r.id), r.id);
    const put = db.prepare('UPDATE enrollment_keys SET doc = ? WHERE id = ?');
    for (const r of db.prepare('SELECT id, doc FROM enrollment_keys').all() as { id: string; doc: string }[]) {
      put.run(JSON.stringify(enrollmentDocAtRest(JSON.parse(r.doc) as EnrollmentKeyDoc)), r.id);
    }
    for (const table of ['policies', 'actions']) {
      const update = db.prepare(`UPDATE ${table} SET doc = ? WHERE id = ?`);
      for (const r of db.prepare(`SELECT id, doc FROM ${table}`).all() as { id: string; doc: string }[]) {
        const sealed = JSON.stringify(sealFields(JSON.parse(r.doc), box, r.id));
        if (sealed !== r.doc) update.run(sealed, r.id);
      }
    }
  },
  // 3: files (upstream's .fleet-fileds-* and .fleet-artifacts). Chunk bytes are files under the data
  // directory (blobs.ts); the tables hold the documents and the chunk index.
  `
  CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    action_id TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE INDEX uploads_upload_id ON uploads(upload_id);
  CREATE INDEX uploads_agent ON uploads(agent_id, started_ms);
  CREATE INDEX uploads_action ON uploads(action_id, started_ms);
  CREATE INDEX uploads_started ON uploads(started_ms);
  CREATE TABLE upload_chunks (
    bid TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha2 TEXT NOT NULL,
    last INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (bid, n)
  ) WITHOUT ROWID;
  CREATE TABLE delivery_files (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    doc TEXT NOT NULL
  );
  CREATE TABLE delivery_targets (
    file_id TEXT NOT NULL REFERENCES delivery_files(id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (file_id, agent_id)
  ) WITHOUT ROWID;
  CREATE TABLE delivery_chunks (
    file_id TEXT NOT NULL REFERENCES delivery_files(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (file_id, n)
  ) WITHOUT ROWID;
  CREATE TABLE artifacts (
    identifier TEXT NOT NULL,
    decoded_sha256 TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (identifier, decoded_sha256)
  ) WITHOUT ROWID;
  `,
  // 4: held polls' check-in refreshes beside the agent documents (agent-checkins.ts).
  `
  CREATE TABLE agent_checkins (
    id TEXT PRIMARY KEY,
    fields TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 5: the policy a check-in reports, kept beside its refresh (agent-checkins.ts).
  `
  ALTER TABLE agent_checkins ADD COLUMN agent_policy_id TEXT;
  ALTER TABLE agent_checkins ADD COLUMN policy_revision_idx INTEGER;
  `,
  // 6: credentials left in plain text sealed, once. Migration 2 as first released (be4e9f4) sealed the
  // secrets table only, and numbers under sensitive names were sealed from 5203390 on: such rows read
  // back as they were, so nothing else would ever seal them. A build from before be4e9f4 (which checks no
  // schema version) may also have written a secret or an enrollment token in the clear into a migrated
  // database. Only rows holding such a value are rewritten; rows are read a batch at a time.
  (db, { box }) => {
    for (const table of ['policies', 'actions']) {
      rewriteRows(db, table, 'seq', 'doc', '1', (id, doc) => {
        const sealed = sealPlainFields(JSON.parse(doc) as unknown, box, id);
        return sealed === undefined ? undefined : JSON.stringify(sealed);
      });
    }
    rewriteRows(db, 'secrets', 'rowid', 'value', "substr(value, 1, 3) <> 'v1:'", (id, value) => box.seal(value, id));
    rewriteRows(db, 'enrollment_keys', 'rowid', 'doc', "json_extract(doc, '$.api_key') <> ''", (_id, doc) => JSON.stringify(enrollmentDocAtRest(JSON.parse(doc) as EnrollmentKeyDoc)));
  },
];

/**
 * The schema version of the last migration that rewrites rows holding credentials: a database migrated
 * from an earlier one (not a new one) is then rewritten whole, so no old bytes stay behind (database.ts).
 */
export const LAST_SEALING_VERSION = 6;

/** Rows in memory at once while a migration rewrites a table: a policy document can run to megabytes. */
const REWRITE_BATCH = 64;

/**
 * `fix` applied to each row of `table` that `where` selects, in `key` order, REWRITE_BATCH rows at a time
 * (each batch's read ends before its rows are written); a row `fix` returns undefined for is not written.
 */
function rewriteRows(db: DatabaseSync, table: string, key: 'seq' | 'rowid', column: string, where: string, fix: (id: string, text: string) => string | undefined): void {
  const next = db.prepare(`SELECT ${key} AS k, id, ${column} AS v FROM ${table} WHERE ${key} > ? AND (${where}) ORDER BY ${key} LIMIT ${REWRITE_BATCH}`);
  const update = db.prepare(`UPDATE ${table} SET ${column} = ? WHERE ${key} = ?`);
  let after = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const rows = next.all(after) as { k: number; id: string; v: string }[];
    for (const r of rows) {
      const text = fix(r.id, r.v);
      if (text !== undefined && text !== r.v) update.run(text, r.k);
    }
    if (rows.length < REWRITE_BATCH) return;
    after = rows[rows.length - 1]!.k;
  }
}

/**
 * Shapes an earlier build left that the migrations above no longer make, put right on open without a
 * new schema version (the shape every later build writes is the same, so a build without this repair
 * still opens the database after it). Each is checked first and is a no-op on a database already right.
 */
export const REPAIRS: readonly { needed(db: DatabaseSync): boolean; apply(db: DatabaseSync): void }[] = [
  // Migration 3 as first released (153be3c) gave delivery_chunks a `sha2 TEXT NOT NULL` column that no
  // insert has filled since (deliveries.ts): every delivery published on such a database failed.
  {
    needed: (db) => hasColumn(db, 'delivery_chunks', 'sha2'),
    apply: (db) => db.exec('ALTER TABLE delivery_chunks DROP COLUMN sha2'),
  },
];

function hasColumn(db: DatabaseSync, table: string, column: string): boolean {
  return db.prepare('SELECT 1 FROM pragma_table_info(?) WHERE name = ?').get(table, column) !== undefined;
}
