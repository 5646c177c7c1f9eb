// Where a server under test keeps its state: the embedded store, or Elasticsearch (the double) with a
// policy and token made by the admin CLI as Kibana would; the end-to-end suites run on both.
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { EsDouble } from './es-double/server';
import { esSettings, seedPolicy } from './es-mode';
import type { FleetServerProcess } from './fleet-server';

/** Where the server keeps its state: the embedded store, or Elasticsearch (the double) with a policy and token made by the CLI. */
export interface Backend {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** -E settings for the server and the CLI. */
  settings(): string[];
  /** The enrollment token agents use. */
  token(server: FleetServerProcess): Promise<string>;
  /** Every document by index alias, as Kibana would read them. */
  documents(dataDir: string): Record<string, { _id: string; _source: Record<string, unknown> }[]>;
}

export const embedded: Backend = {
  name: 'the embedded store',
  start: async () => undefined,
  stop: async () => undefined,
  settings: () => [],
  token: async (server) => {
    // Its stdout is no terminal: the zero-config start made the policy and says how to make a token.
    expect(server.createdDefaultPolicy).toBe(true);
    expect(server.stdout).toContain('fleet-server enrollment-token create --policy default-policy');
    const token = await server.enrollmentToken();
    expect(token).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
    return token;
  },
  // The embedded store keeps each document in its .fleet-* shape in a `doc` column.
  documents: (dataDir) => {
    const db = new DatabaseSync(join(dataDir, 'fleet-server.db'), { readOnly: true });
    const tables: Record<string, string> = {
      '.fleet-agents': 'agents', '.fleet-policies': 'policies', '.fleet-actions': 'actions',
      '.fleet-actions-results': 'action_results', '.fleet-enrollment-api-keys': 'enrollment_keys',
    };
    const out = Object.fromEntries(Object.entries(tables).map(([alias, table]) => [alias,
      (db.prepare(`SELECT id, doc FROM ${table}`).all() as { id: string; doc: string }[]).map((r) => ({ _id: r.id, _source: JSON.parse(r.doc) }))]));
    db.close();
    return out;
  },
};

export function elasticsearch(): Backend {
  let es: EsDouble;
  return {
    name: 'Elasticsearch (the double)',
    start: async () => {
      es = await new EsDouble().start();
    },
    stop: () => es.stop(),
    settings: () => esSettings(es),
    token: async (server) => {
      // Elasticsearch mode makes no default policy (Kibana would); the admin CLI writes one as Kibana does.
      expect(server.createdDefaultPolicy).toBe(false);
      return seedPolicy(server.dataDir, esSettings(es), server.url);
    },
    documents: () => Object.fromEntries([...es.cluster.aliases, ...es.cluster.dataStreams].map(([alias, concrete]) => [
      alias, [...es.cluster.indices.get(concrete)!.docs.values()].map((d) => ({ _id: d.id, _source: d.source })),
    ])),
  };
}
