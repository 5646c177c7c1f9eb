// Fleet Server in Elasticsearch mode on the double: the -E settings that point it there, and the
// policy and enrollment token Kibana would have made, written with the admin CLI.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli } from './cli';
import type { EsDouble } from './es-double/server';

export function esSettings(es: EsDouble): string[] {
  return [`output.elasticsearch.hosts=${es.url}`, `output.elasticsearch.service_token=${es.serviceToken}`];
}

/** Writes revision 1 of `policyId` and an enrollment token for it; returns the token. */
export async function seedPolicy(dataDir: string, settings: string[], fleetUrl: string, policyId = 'default-policy'): Promise<string> {
  const file = join(dataDir, `${policyId}.yml`);
  writeFileSync(file, [`id: ${policyId}`, 'outputs:', '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
    'agent: {monitoring: {enabled: false}}', `fleet: {hosts: ["${fleetUrl}"]}`].join('\n'));
  await cli(dataDir, ['policy', 'put', file], settings);
  const token = await cli(dataDir, ['enrollment-token', 'create', '--policy', policyId, '--name', 'Default'], settings);
  return token.api_key as string;
}

/** Writes the next revision of `policyId` with one more log input; returns the revision. */
export async function bumpPolicy(dataDir: string, settings: string[], fleetUrl: string, inputId: string, policyId = 'default-policy'): Promise<number> {
  const file = join(dataDir, `${policyId}-${inputId}.yml`);
  writeFileSync(file, [`id: ${policyId}`, 'outputs:', '  default: {type: elasticsearch, hosts: ["http://localhost:9200"]}',
    `inputs: [{id: ${inputId}, type: logfile, use_output: default}]`, `fleet: {hosts: ["${fleetUrl}"]}`].join('\n'));
  return (await cli(dataDir, ['policy', 'put', file], settings)).revision as number;
}
