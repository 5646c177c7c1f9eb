// Versioned schema migrations for the embedded store (PRAGMA user_version holds the applied count).
// Documents are kept as JSON in the .fleet-* shapes; columns beside them exist only to be indexed.
export const MIGRATIONS: readonly string[] = [
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
];
