// What a configuration an operator got slightly wrong does at start: an output section that names no
// Elasticsearch output is refused (it used to start the embedded store), unknown keys and a missing
// service token are warned about, the first log line names the store, and values upstream refuses
// (TLS versions, keepfiles, client_authentication) are refused naming their full key.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig } from '../../src/cli/load-config';
import { storeFields } from '../../src/cli/run';
import { buildConfig, type FleetServerConfig } from '../../src/config/config';
import { warnNotApplied } from '../../src/config/not-applied';
import { loadRawConfig } from '../../src/config/raw';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleet-operator-config-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function load(yml: string, overrides: string[] = []): FleetServerConfig {
  const file = join(dir, `fleet-server-${++n}.yml`);
  writeFileSync(file, yml);
  return buildConfig(loadRawConfig({ file, overrides, env: {} }));
}

/** The warnings a configuration gets at start: [fields, message] each. */
function warnings(config: FleetServerConfig): [Record<string, unknown>, string][] {
  const seen: [Record<string, unknown>, string][] = [];
  warnNotApplied(config, { warn: (fields: Record<string, unknown>, msg: string) => seen.push([fields, msg]) } as unknown as Logger);
  return seen;
}

const ES = ['output.elasticsearch.hosts=https://es:9200', 'output.elasticsearch.service_token=t'];

describe('an output section that names no Elasticsearch output', () => {
  test('is refused in one line naming the key and suggesting output.elasticsearch (a file, or -E)', () => {
    for (const [yml, E, key] of [
      ['output: {elasticsearh: {hosts: ["https://es:9200"]}}\n', [], 'output.elasticsearh'],
      ['', ['output.elasticsearh.hosts=https://es:9200'], 'output.elasticsearh'],
      ['output:\n  logstash:\n    hosts: ["ls:5044"]\n', [], 'output.logstash'],
      // An elasticsearch key left empty beside a typo is still no output.
      ['output: {elasticsearch: null, elasticserch: {hosts: [x]}}\n', [], 'output.elasticserch'],
    ] as [string, string[], string][]) {
      let message = '';
      try {
        load(yml, E);
      } catch (err) {
        message = (err as Error).message;
      }
      expect({ key, message }).toEqual({ key, message: expect.stringMatching(new RegExp(`^config key ${key.replace('.', '\\.')}: .*did you mean output\\.elasticsearch\\?`)) });
      expect(message).not.toContain('\n');
    }
  });

  test('is refused before anything is made: loadConfig throws, path.data is not created', () => {
    const data = join(dir, 'never');
    expect(() => loadConfig({ E: ['output.elasticsearh.hosts=https://es:9200', `path.data=${data}`] })).toThrow(/output\.elasticsearh/);
    expect(existsSync(data)).toBe(false);
  });

  test('output.elasticsearch (with or without others beside it), or no output section at all, is taken', () => {
    expect(load('', ES).elasticsearch?.hosts).toEqual(['https://es:9200']);
    expect(load('', []).elasticsearch).toBeUndefined();
    const beside = load('output: {elasticsearch: {hosts: ["https://es:9200"], service_token: t}, logstash: {hosts: [x]}}\n');
    expect(beside.elasticsearch?.hosts).toEqual(['https://es:9200']);
    expect(beside.unknownKeys).toEqual(['output.logstash']);
  });
});

describe('warnings at start', () => {
  test('unknown top-level keys (outputs for output) are named together in one warning; the start goes on', () => {
    const c = load('outputs:\n  elasticsearch:\n    hosts: ["https://es:9200"]\nmonitoring: {enabled: true}\n', ['inputs.0.server.port=8300']);
    expect(c.elasticsearch).toBeUndefined();
    expect(c.unknownKeys).toEqual(['outputs', 'monitoring']);
    const unknown = warnings(c).filter(([, msg]) => msg.startsWith('unknown configuration keys'));
    expect(unknown).toEqual([[{ 'config.keys': ['outputs', 'monitoring'] }, 'unknown configuration keys, ignored: outputs, monitoring']]);
  });

  test("the keys fleet-server reads, and upstream settings not applied here, are not called unknown (those keep their own warning)", () => {
    const c = load([
      'fleet: {agent: {id: x}}', 'inputs: [{type: fleet-server, server: {profiler: {enabled: true}}}]', 'logging: {level: info, pretty: true}',
      'http: {enabled: false}', 'path: {data: /tmp/x}', 'output.elasticsearch: {hosts: ["https://es:9200"], service_token: t, max_content_length: 5}',
    ].join('\n'));
    expect(c.unknownKeys).toEqual([]);
    expect(warnings(c).map(([fields, msg]) => [fields['config.key'], msg]).sort()).toEqual([
      ['inputs.0.server.profiler', 'setting not applied by this server (docs/compatibility.md)'],
      ['logging.pretty', 'setting not applied by this server (docs/compatibility.md)'],
      ['output.elasticsearch.max_content_length', 'setting not applied by this server (docs/compatibility.md)'],
    ]);
  });

  test('Elasticsearch with no service token (a misspelled servicetoken) is told at start, naming the keys', () => {
    const told = 'no Elasticsearch service token was given (Elasticsearch will answer 401): set output.elasticsearch.service_token or service_token_path';
    const c = load('', ['output.elasticsearch.hosts=https://es:9200', 'output.elasticsearch.servicetoken=abc']);
    expect(warnings(c).map(([, msg]) => msg)).toEqual([told]);
    expect(warnings(load('', ES))).toEqual([]);
    expect(warnings(load('', ['output.elasticsearch.hosts=https://es:9200', 'output.elasticsearch.service_token_path=/run/token']))).toEqual([]);
    expect(warnings(load('', []))).toEqual([]);
  });
});

test('the "fleet-server starting" line names the store: the embedded database, or the Elasticsearch hosts without credentials', () => {
  expect(storeFields(load('', [`path.data=${join(dir, 'd')}`]))).toEqual({ store: 'embedded', 'store.path': join(dir, 'd', 'fleet-server.db') });
  expect(storeFields(load('', ['output.elasticsearch.hosts=https://fleet:hunter2@es:9200,http://es2:9200', 'output.elasticsearch.service_token=secret-token'])))
    .toEqual({ store: 'elasticsearch', 'store.hosts': ['https://[REDACTED]@es:9200', 'http://es2:9200'] });
});

describe('values upstream refuses', () => {
  const server = (ssl: string): string => `inputs: [{type: fleet-server, server: {ssl: {certificate: /c.pem, key: /k.pem, ${ssl}}}}]\n`;

  test('ssl.supported_protocols: an unknown name is refused naming the key (Go: invalid tls version); TLSv1 is TLSv1.0', () => {
    expect(() => load('', ['inputs.0.server.ssl.supported_protocols=TLSv1.9']))
      .toThrow(/^config key inputs\.0\.server\.ssl\.supported_protocols: invalid tls version "TLSv1\.9"/);
    expect(() => load(server('supported_protocols: [TLSv1.2, tls1.3]'))).toThrow(/inputs\.0\.server\.ssl\.supported_protocols: invalid tls version "tls1\.3"/);
    expect(() => load('', [...ES, 'output.elasticsearch.ssl.supported_protocols=SSLv3'])).toThrow(/^config key output\.elasticsearch\.ssl\.supported_protocols: invalid tls version/);
    expect(load(server('supported_protocols: [TLSv1, TLSv1.1, TLSv1.2, TLSv1.3]')).server.tls.supportedProtocols).toEqual(['TLSv1.0', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);
  });

  test('logging.files.keepfiles: 2 to 1024, as libbeat\'s rotator', () => {
    for (const bad of ['-3', '1', '1025', '2.5']) {
      expect(() => load('', [`logging.files.keepfiles=${bad}`])).toThrow(/^config key logging\.files\.keepfiles: expected a whole number from 2 to 1024/);
    }
    expect(load('', ['logging.files.keepfiles=2']).logging.keepFiles).toBe(2);
    expect(load('', ['logging.files.keepfiles=1024']).logging.keepFiles).toBe(1024);
    expect(load('').logging.keepFiles).toBe(7);
  });

  test('ssl.client_authentication and ssl.curve_types are named by their full key', () => {
    expect(() => load('', ['inputs.0.server.ssl.client_authentication=sometimes']))
      .toThrow(/^config key inputs\.0\.server\.ssl\.client_authentication: expected none, optional or required$/);
    expect(() => load(server('curve_types: [secp256k1]'))).toThrow(/^config key inputs\.0\.server\.ssl\.curve_types: unknown curve secp256k1/);
  });
});
