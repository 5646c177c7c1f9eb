// An Elasticsearch output's settings as the configuration would give them, for tests of the client
// (src/store/elasticsearch/connection.ts), and its one call that shows a connection works.
import type { ElasticsearchOutputConfig } from '../../src/config/config';
import { createClient } from '../../src/store/elasticsearch/connection';

export function esOutput(host: string, extra: Partial<ElasticsearchOutputConfig> = {}): ElasticsearchOutputConfig {
  return {
    hosts: [host], protocol: host.startsWith('https:') ? 'https' : 'http', headers: {}, timeoutMs: 5000, maxRetries: 0, maxConnPerHost: 4, raw: {},
    proxyDisable: false, proxyHeaders: {}, ssl: { verificationMode: 'full', certificateAuthorities: [] }, ...extra,
  };
}

/** The node's name, as GET / gives it, through a client made for `c`. */
export async function nodeName(c: ElasticsearchOutputConfig): Promise<string> {
  const client = createClient(c, { maxRetries: 0, requestTimeoutMs: 5000 });
  try {
    return (await client.info()).name;
  } finally {
    await client.close();
  }
}
