// A Go fleet-server.yml (and its -E settings) read as upstream reads it: go-ucfg's variable expansion
// and value syntax, yaml.v2's merge keys and booleans, tlscommon's client_authentication default, and
// values the server cannot run with refused at start-up with the key named.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, type FleetServerConfig } from '../../src/config/config';
import { loadRawConfig, type RawConfig } from '../../src/config/raw';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleet-config-compat-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** The configuration a yml file (and -E settings, and an environment) gives. */
function load(yml: string, overrides: string[] = [], env: NodeJS.ProcessEnv = {}): FleetServerConfig {
  return buildConfig(raw(yml, overrides, env));
}

function raw(yml: string, overrides: string[] = [], env: NodeJS.ProcessEnv = {}): RawConfig {
  const file = join(dir, `fleet-server-${++n}.yml`);
  writeFileSync(file, yml);
  return loadRawConfig({ file, overrides, env });
}

/** inputs[0].server with `server` (YAML flow mapping text) under it. */
const withServer = (server: string): string => `inputs:\n  - type: fleet-server\n    server: ${server}\n`;

describe('1. server.ssl.client_authentication default (tlscommon ServerConfig)', () => {
  test('certificate_authorities without client_authentication means required; written values win; none without CAs', () => {
    const ssl = (s: string): FleetServerConfig['server']['tls'] => load(withServer(`{ ssl: { certificate: /c.pem, key: /k.pem${s} } }`)).server.tls;
    expect(ssl(', certificate_authorities: [/ca.pem]').clientAuthentication).toBe('required');
    expect(ssl(', certificate_authorities: /ca.pem').clientAuthentication).toBe('required');
    expect(ssl(', certificate_authorities: [/ca.pem], client_authentication: optional').clientAuthentication).toBe('optional');
    expect(ssl(', certificate_authorities: [/ca.pem], client_authentication: none').clientAuthentication).toBe('none');
    expect(ssl('').clientAuthentication).toBe('none');
    // Through -E as well.
    expect(load('', ['inputs.0.server.ssl.certificate=/c.pem', 'inputs.0.server.ssl.certificate_authorities=/ca.pem']).server.tls.clientAuthentication).toBe('required');
  });
});

describe('2. variables and -E values as go-ucfg reads them', () => {
  test('an environment variable set to the empty string is unset: the default applies; with none, start-up fails', () => {
    expect(load(withServer('{ host: "${HOST:127.0.0.2}" }'), [], { HOST: '' }).server.host).toBe('127.0.0.2');
    expect(() => load(withServer('{ host: "${HOST}" }'), [], { HOST: '' })).toThrow(/inputs\.0\.server\.host: environment variable HOST is not set/);
    expect(() => load(withServer('{ host: "${HOST}" }'), [], {})).toThrow(/inputs\.0\.server\.host: environment variable HOST is not set/);
    expect(load(withServer('{ host: "${HOST}" }'), [], { HOST: '10.0.0.1' }).server.host).toBe('10.0.0.1');
  });

  test('${VAR:?message} fails start-up with the message when VAR is unset or empty; ${VAR:+alt} is alt only when VAR is set', () => {
    const yml = withServer('{ host: "${FS_HOST:?set FS_HOST to the address to listen on}" }');
    expect(() => load(yml, [], {})).toThrow('set FS_HOST to the address to listen on');
    expect(() => load(yml, [], { FS_HOST: '' })).toThrow('set FS_HOST to the address to listen on');
    expect(load(yml, [], { FS_HOST: '127.0.0.3' }).server.host).toBe('127.0.0.3');
    const alt = 'path.data: "/data${SUFFIX:+/alt}"\n';
    expect(load(alt, [], { SUFFIX: 'x' }).pathData).toBe('/data/alt');
    expect(load(alt, [], { SUFFIX: '' }).pathData).toBe('/data');
    expect(load(alt, [], {}).pathData).toBe('/data');
  });

  test('a whole ${VAR} (or ${VAR:default}) with commas is a list wherever a YAML list is accepted', () => {
    const env = { ELASTICSEARCH_HOSTS: 'https://a:9200, https://b:9200', CAS: '/ca1.pem,/ca2.pem', PROTOS: 'TLSv1.2,TLSv1.3' };
    const c = load([
      'output.elasticsearch.hosts: ${ELASTICSEARCH_HOSTS}',
      'output.elasticsearch.ssl.certificate_authorities: ${CAS}',
      withServer('{ ssl: { certificate: /c.pem, key: /k.pem, certificate_authorities: "${CAS}", supported_protocols: "${PROTOS}" } }'),
    ].join('\n'), [], env);
    expect(c.elasticsearch!.hosts).toEqual(['https://a:9200', 'https://b:9200']);
    expect(c.elasticsearch!.ssl.certificateAuthorities).toEqual(['/ca1.pem', '/ca2.pem']);
    expect(c.server.tls.certificateAuthorities).toEqual(['/ca1.pem', '/ca2.pem']);
    expect(c.server.tls.supportedProtocols).toEqual(['TLSv1.2', 'TLSv1.3']);
    // One value stays one value; a default with commas is a list too (ucfg parses every expansion).
    expect(load('output.elasticsearch.hosts: ${H}\n', [], { H: 'https://a:9200' }).elasticsearch!.hosts).toEqual(['https://a:9200']);
    expect(load('output.elasticsearch.hosts: ${H:http://x:9200,http://y:9200}\n').elasticsearch!.hosts).toEqual(['http://x:9200', 'http://y:9200']);
    // A quoted environment value is the string inside; a value without an expansion is never split.
    expect(load('output.elasticsearch.hosts: ${H}\n', [], { H: '"a,b"' }).elasticsearch!.hosts).toEqual(['a,b']);
    expect(load('output.elasticsearch.hosts: "a,b"\n').elasticsearch!.hosts).toEqual(['a,b']);
    // Numbers are still typed.
    expect(load(withServer('{ port: "${PORT}" }'), [], { PORT: '8300' }).server.port).toBe(8300);
  });

  test('-E key=a,b is a list; a double-quoted -E value is the unquoted string', () => {
    const c = load('', ['output.elasticsearch.hosts=https://a:9200,https://b:9200', 'inputs.0.server.ssl.supported_protocols=TLSv1.2, TLSv1.3']);
    expect(c.elasticsearch!.hosts).toEqual(['https://a:9200', 'https://b:9200']);
    expect(c.server.tls.supportedProtocols).toEqual(['TLSv1.2', 'TLSv1.3']);
    expect(raw('', ['x="a,b"'])['x']).toBe('a,b');
    expect(raw('', ["x='a,b'"])['x']).toBe('a,b');
    expect(raw('', ['x=[a, b]'])['x']).toEqual(['a', 'b']);
    expect(raw('', ['x=8221', 'y=true', 'z=a: b'])).toMatchObject({ x: 8221, y: true, z: 'a: b' });
    expect(() => raw('', ['x="unterminated'])).toThrow(/-E x: /);
    expect(load('', ['output.elasticsearch.headers={X-A: "1,2", X-B: b}']).elasticsearch!.headers).toEqual({ 'X-A': '1,2', 'X-B': 'b' });
    // A map key given a plain string is an error, not a map of its characters.
    expect(() => load('', ['output.elasticsearch.headers=abc'])).toThrow('config key output.elasticsearch.headers: expected a mapping');
  });

  test('nested defaults ${A:${B}} resolve; $$ is a literal $', () => {
    const yml = 'path.data: "${A:${B}}"\n';
    expect(load(yml, [], { B: '/b' }).pathData).toBe('/b');
    expect(load(yml, [], { A: '/a', B: '/b' }).pathData).toBe('/a');
    expect(load('path.data: "${A:${B:/c}}"\n').pathData).toBe('/c');
    expect(load('path.data: "/x/${A:${B:/c}}/y"\n', [], { B: 'b' }).pathData).toBe('/x/b/y');
    expect(() => load(yml, [], {})).toThrow(/path\.data: environment variable B is not set/);
    expect(raw('secret: "pa$$word ${DOLLAR}"\n', [], { DOLLAR: 'x' })['secret']).toBe('pa$word x');
    expect(raw('secret: "$${NOT_EXPANDED}"\n')['secret']).toBe('${NOT_EXPANDED}');
  });

  test('${a.key} is another key of the configuration, read before the environment, as ucfg resolves references', () => {
    const yml = 'path.data: /srv/fleet\nlogging:\n  to_files: true\n  files.path: "${path.data}/logs"\n';
    expect(load(yml).logging.filesPath).toBe('/srv/fleet/logs');
    // -E values count, and references chain (through variables too).
    expect(load(yml, ['path.data=${BASE}/fleet'], { BASE: '/opt' }).logging.filesPath).toBe('/opt/fleet/logs');
    // A key wins over a variable of the same name; an unset key falls to the variable, then to the default.
    expect(load('x: /from-key\npath.data: "${x}"\n', [], { x: '/from-env' }).pathData).toBe('/from-key');
    expect(load('path.data: "${x}"\n', [], { x: '/from-env' }).pathData).toBe('/from-env');
    expect(load('path.data: "${path.home:/fallback}/data"\n').pathData).toBe('/fallback/data');
    // Numbers and booleans are read as text where they are spliced in.
    expect(load(withServer('{ port: 8300, internal_port: "${inputs.0.server.port}" }')).server.internalPort).toBe(8300);
    expect(() => load('path.data: "${path.home}/data"\n')).toThrow(/path\.data: path\.home is neither a config key nor a set environment variable, and has no default/);
    // Cycles and references to lists or objects stop the start, naming the key.
    expect(() => load('a: "${b}"\nb: "${a}"\npath.data: "${a}"\n')).toThrow(/refers back to itself/);
    expect(() => load('path.data: "${path.data}"\n')).toThrow(/path\.data: \$\{path\.data\} refers back to itself/);
    expect(() => load('path.data: "${logging}"\nlogging.level: info\n')).toThrow(/path\.data: \$\{logging\} names a list or an object/);
  });

  test('references are expanded once per key, and what they expand to is bounded', () => {
    // Each key names the one before four times: old, 4^n expansions (depth 12 took ~35 s); now each key
    // is expanded once, and the text stops growing at 1 Mi characters.
    const chain = (n: number, piece: (prev: string) => string): string =>
      [`path.data: "/\${k${n}}"`, 'k0: ab', ...Array.from({ length: n }, (_, i) => `k${i + 1}: "${piece(`k${i}`)}"`)].join('\n') + '\n';
    const four = (prev: string): string => `\${${prev}}\${${prev}}\${${prev}}\${${prev}}`;
    expect(load(chain(4, four)).pathData).toBe(`/${'ab'.repeat(256)}`);
    expect(() => load(chain(12, four))).toThrow(/expands to more than 1048576 characters/);
    // A long chain that does not multiply is fine up to 16 deep.
    expect(load(chain(15, (prev) => `\${${prev}}x`)).pathData).toBe(`/ab${'x'.repeat(15)}`);
    expect(() => load(chain(17, (prev) => `\${${prev}}x`))).toThrow(/references nest deeper than 16/);
  });
});

describe('3. durations', () => {
  test('a negative duration is refused with the key named', () => {
    // (timeouts.read and its kin take a negative value as Go does: none; see the net/http test below.)
    expect(() => load(withServer('{ timeouts: { drain: -1 } }'))).toThrow('config key inputs.0.server.timeouts.drain: a duration cannot be negative');
    expect(() => load('', ['inputs.0.cache.ttl_action=-1m'])).toThrow('config key inputs.0.cache.ttl_action: a duration cannot be negative');
  });

  test('0 is refused where a timer needs a period; as in Go, read 0 is no timeout, read_header/idle 0 take read, write 0 is none', () => {
    for (const [key, message] of [
      ['inputs.0.server.gc.schedule_interval=0s', 'inputs.0.server.gc.schedule_interval'],
      ['inputs.0.server.timeouts.checkin_timestamp=0', 'inputs.0.server.timeouts.checkin_timestamp'],
      ['inputs.0.server.timeouts.checkin_long_poll=0s', 'inputs.0.server.timeouts.checkin_long_poll'],
      ['inputs.0.server.timeouts.checkin_max_poll=0s', 'inputs.0.server.timeouts.checkin_max_poll'],
      ['inputs.0.monitor.poll_timeout=0s', 'inputs.0.monitor.poll_timeout'],
      ['inputs.0.server.bulk.checkin_flush_interval=0s', 'inputs.0.server.bulk.checkin_flush_interval'],
    ]) {
      expect(() => load('', [key!])).toThrow(`config key ${message}: must be a duration greater than 0`);
    }
    expect(() => load('', ['inputs.0.server.ssl.certificate_reload.enabled=true', 'inputs.0.server.ssl.certificate_reload.reload_interval=0s']))
      .toThrow('config key inputs.0.server.ssl.certificate_reload.reload_interval: must be a duration greater than 0');
    const c = load('', ['inputs.0.server.timeouts.read=0', 'inputs.0.server.timeouts.idle=0s', 'inputs.0.server.timeouts.write=0s']);
    expect(c.server.timeouts.readMs).toBe(0);
    expect(c.server.timeouts.idleMs).toBe(0);
    // Go: no write timeout. A 0 ms timer would cut every file download at once.
    expect(c.server.timeouts.writeMs).toBeGreaterThan(24 * 86_400_000);
    // Go's http.Server: read_header and idle 0 take the read timeout.
    const d = load('', ['inputs.0.server.timeouts.read=20s', 'inputs.0.server.timeouts.read_header=0s', 'inputs.0.server.timeouts.idle=0s']);
    expect([d.server.timeouts.readMs, d.server.timeouts.readHeaderMs, d.server.timeouts.idleMs]).toEqual([20_000, 20_000, 20_000]);
  });

  test('durations beyond a Node timer (2^31-1 ms) are clamped below it, keeping their meaning', () => {
    const c = load(withServer('{ gc: { schedule_interval: 720h }, timeouts: { read: 720h, idle: 8760h, checkin_long_poll: 720h, checkin_max_poll: 720h, drain: 720h }, ssl: { certificate_reload: { enabled: true, reload_interval: 720h } } }')
      + '    monitor: { poll_timeout: 720h }\n');
    const all = [c.server.gc.scheduleIntervalMs, c.server.timeouts.readMs, c.server.timeouts.idleMs, c.server.timeouts.checkinLongPollMs,
      c.server.timeouts.checkinMaxPollMs, c.server.timeouts.drainMs, c.server.tls.reloadIntervalMs, c.monitor.pollTimeoutMs];
    for (const ms of all) {
      expect(ms).toBeGreaterThan(24 * 86_400_000);
      // Room for the margins added to some (monitor request timeout = poll_timeout + 1 min).
      expect(ms + 60_000).toBeLessThanOrEqual(2_147_483_647);
    }
    expect(load(withServer('{ gc: { schedule_interval: 2h } }')).server.gc.scheduleIntervalMs).toBe(7_200_000);
  });
});

describe('4. bulk and output numbers', () => {
  test('flush_max_pending, flush_threshold_cnt, flush_threshold_size and max_conn_per_host are at least 1; max_pending_bulk_dispatches at least 0', () => {
    for (const key of ['flush_max_pending', 'flush_threshold_cnt', 'flush_threshold_size']) {
      expect(() => load('', [`inputs.0.server.bulk.${key}=0`])).toThrow(`config key inputs.0.server.bulk.${key}: expected`);
      expect(() => load('', [`inputs.0.server.bulk.${key}=-3`])).toThrow(`config key inputs.0.server.bulk.${key}: expected`);
    }
    expect(() => load('', ['inputs.0.server.bulk.max_pending_bulk_dispatches=-1'])).toThrow('config key inputs.0.server.bulk.max_pending_bulk_dispatches: expected');
    expect(() => load('', ['output.elasticsearch.max_conn_per_host=0'])).toThrow('config key output.elasticsearch.max_conn_per_host: expected');
    const c = load('', ['inputs.0.server.bulk.flush_max_pending=1', 'inputs.0.server.bulk.flush_threshold_cnt=1', 'inputs.0.server.bulk.flush_threshold_size=1',
      'inputs.0.server.bulk.max_pending_bulk_dispatches=0', 'output.elasticsearch.max_conn_per_host=1']);
    expect(c.server.bulk).toMatchObject({ flushMaxPending: 1, flushThresholdCount: 1, flushThresholdBytes: 1, maxPendingOperations: 0 });
    expect(c.elasticsearch!.maxConnPerHost).toBe(1);
  });

  test('compression_level is -1..9', () => {
    expect(() => load('', ['inputs.0.server.compression_level=10'])).toThrow('config key inputs.0.server.compression_level: expected a whole number from -1 to 9');
    expect(() => load('', ['inputs.0.server.compression_level=-2'])).toThrow('config key inputs.0.server.compression_level');
    expect(load('', ['inputs.0.server.compression_level=-1']).server.compressionLevel).toBe(-1);
    expect(load('', ['inputs.0.server.compression_level=9']).server.compressionLevel).toBe(9);
  });

  test('monitor.fetch_size is a whole number from 1 to 10,000 (a search size Elasticsearch accepts)', () => {
    for (const v of ['0', '-1', '10001', '2.5', 'many']) {
      expect(() => load('', [`inputs.0.monitor.fetch_size=${v}`])).toThrow('config key inputs.0.monitor.fetch_size: expected');
    }
    expect(load('').monitor.fetchSize).toBe(1000);
    expect(load('', ['inputs.0.monitor.fetch_size=1']).monitor.fetchSize).toBe(1);
    expect(load('', ['inputs.0.monitor.fetch_size=10000']).monitor.fetchSize).toBe(10_000);
  });
});

describe('5. YAML as yaml.v2 reads it', () => {
  test('<< merge keys', () => {
    const c = load([
      'timeouts: &timeouts',
      '  read: 11s',
      '  write: 12s',
      'inputs:',
      '  - type: fleet-server',
      '    server:',
      '      timeouts:',
      '        <<: *timeouts',
      '        write: 13s',
    ].join('\n'));
    expect(c.server.timeouts.readMs).toBe(11_000);
    expect(c.server.timeouts.writeMs).toBe(13_000);
  });

  test('yes/no/on/off/y/n (any case) are booleans', () => {
    for (const [word, value] of [['yes', true], ['Yes', true], ['ON', true], ['y', true], ['Y', true], ['no', false], ['Off', false], ['n', false], ['NO', false], ['True', true]] as const) {
      expect(load(`http.enabled: ${word}\n`).http.enabled).toBe(value);
    }
    expect(load('', ['inputs.0.server.feature_flags.enable_opamp=off']).server.enableOpamp).toBe(false);
    expect(() => load('http.enabled: maybe\n')).toThrow('config key http.enabled: expected true or false');
  });
});

describe('6. -E array indices', () => {
  test('an index above 1024 is refused; a non-numeric key under a list is an error naming the path', () => {
    expect(() => load('', ['inputs.1025.server.port=1'])).toThrow('config key inputs.1025: array index 1025 is above 1024');
    expect(() => raw('inputs: [{type: fleet-server}]\n', ['inputs.5000.x=1'])).toThrow('config key inputs.5000: array index 5000 is above 1024');
    expect(() => raw('inputs: [{type: fleet-server}]\n', ['inputs.server.port=1'])).toThrow('config key inputs.server: "server" is not an array index');
    expect(() => raw('output.elasticsearch.hosts: [a]\n', ['output.elasticsearch.hosts.first=b'])).toThrow('config key output.elasticsearch.hosts.first');
    expect((raw('', ['x.1024=1'])['x'] as unknown[])[1024]).toBe(1);
    expect(raw('inputs: [{type: fleet-server}]\n', ['inputs.0.server.port=8300'])['inputs']).toEqual([{ type: 'fleet-server', server: { port: 8300 } }]);
  });

  test('__proto__ in a key is an ordinary key, never the prototype', () => {
    const r = raw('', ['__proto__.polluted=1', 'a.__proto__.polluted=2']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
  });
});

describe('7. the output\'s encrypted client key (tlscommon client config)', () => {
  test('ssl.key_passphrase, else the file ssl.key_passphrase_path names; an unreadable file names its key', () => {
    const file = join(dir, 'pass.txt');
    writeFileSync(file, 'from-file\n');
    const ssl = (s: string): FleetServerConfig['elasticsearch'] => load(`output.elasticsearch: {hosts: ["https://es:9200"], ssl: ${s}}\n`).elasticsearch;
    expect(ssl('{key_passphrase: given}')!.ssl.keyPassphrase).toBe('given');
    expect(ssl(`{key_passphrase_path: ${file}}`)!.ssl.keyPassphrase).toBe('from-file');
    const missing = join(dir, 'missing.txt');
    expect(() => ssl(`{key_passphrase_path: ${missing}}`)).toThrow(/^config key output\.elasticsearch\.ssl\.key_passphrase_path: cannot read .*missing\.txt/);
    // The path once (Node's own words repeated it).
    let said = '';
    try {
      ssl(`{key_passphrase_path: ${missing}}`);
    } catch (err) {
      said = (err as Error).message;
    }
    expect(said.split(missing)).toHaveLength(2);
  });
});

describe('8. upstream settings this server does not apply', () => {
  test('are named (a warning each at start); a ca_sha256 pin is refused rather than left unchecked', () => {
    const c = load([
      'inputs: [{type: fleet-server, server: {ssl: {cipher_suites: [ECDHE-ECDSA-AES-128-GCM-SHA256]}, profiler: {enabled: true}}, cache: {num_counters: 1}}]',
      'output.elasticsearch: {hosts: ["https://es:9200"], max_content_length: 100, ssl: {supported_protocols: [TLSv1.3]}}',
      'logging: {pretty: true}',
    ].join('\n'));
    expect(c.notApplied.sort()).toEqual(['inputs.0.cache.num_counters', 'inputs.0.server.profiler', 'inputs.0.server.ssl.cipher_suites',
      'logging.pretty', 'output.elasticsearch.max_content_length', 'output.elasticsearch.ssl.supported_protocols']);
    expect(load('inputs: [{type: fleet-server}]\n').notApplied).toEqual([]);
    expect(() => load('output.elasticsearch: {hosts: ["https://es:9200"], ssl: {ca_sha256: abc}}\n'))
      .toThrow(/^config key output\.elasticsearch\.ssl\.ca_sha256: pinning by ca_sha256 is not supported/);
    expect(() => load('inputs: [{type: fleet-server, server: {ssl: {ca_sha256: abc}}}]\n')).toThrow(/inputs\.0\.server\.ssl\.ca_sha256/);
  });
});

test('a malformed value is named by its key, never repeated (it may be a password from a variable or -E)', () => {
  expect(() => load('output.elasticsearch: {hosts: ["https://es:9200"], password: "${ES_PASSWORD}"}\n', [], { ES_PASSWORD: '"s3cr3t-unbalanced' }))
    .toThrow(/output\.elasticsearch\.password/);
  try {
    load('output.elasticsearch: {hosts: ["https://es:9200"], password: "${ES_PASSWORD}"}\n', [], { ES_PASSWORD: '"s3cr3t-unbalanced' });
  } catch (err) {
    expect((err as Error).message).not.toContain('s3cr3t');
  }
  expect(() => load('', ['output.elasticsearch.password="s3cr3t-unbalanced'])).toThrow(/^-E output\.elasticsearch\.password: /);
  expect(() => load('', ['output.elasticsearch.password="s3cr3t-unbalanced'])).not.toThrow(/s3cr3t/);
});

test("net/http's server timeouts: negative means none, as Go documents it (read 0; read_header and idle fall back to read)", () => {
  const t = load('inputs: [{type: fleet-server, server: {timeouts: {read: -1s, read_header: -5s, idle: -1m, write: -10s}}}]\n').server.timeouts;
  expect(t.readMs).toBe(0);
  expect(t.readHeaderMs).toBe(0);
  expect(t.idleMs).toBe(0);
  expect(t.writeMs).toBeGreaterThan(24 * 86_400_000);
  // Elsewhere a negative duration is still refused.
  expect(() => load('inputs: [{type: fleet-server, server: {timeouts: {checkin_long_poll: -1s}}}]\n')).toThrow(/checkin_long_poll/);
});

test('logging.level: upstream\'s names in any case; an unknown one stops the start (it fell back to info unseen)', () => {
  expect(load('logging: {level: WARNING}\n').logging.level).toBe('warning');
  expect(load('logging: {level: " debug "}\n').logging.level).toBe('debug');
  expect(() => load('logging: {level: verbose}\n')).toThrow(/^config key logging\.level: unknown level "verbose"/);
});

test("logs go to stderr or to files, never both, as upstream's logger chooses; only the default differs (stderr)", () => {
  const sinks = (yml: string, overrides: string[] = []): [boolean, boolean] => {
    const { toStderr, toFiles } = load(yml, overrides).logging;
    return [toStderr, toFiles];
  };
  expect(sinks('')).toEqual([true, false]);
  // A Go fleet-server.yml asking for files gets files only (upstream's to_stderr is off unless set).
  expect(sinks('logging.to_files: true\n')).toEqual([false, true]);
  expect(sinks('', ['logging.to_files=true'])).toEqual([false, true]);
  // Turning stderr off means files, upstream's default.
  expect(sinks('logging.to_stderr: false\n')).toEqual([false, true]);
  // Both on: stderr wins (upstream's configure returns at to_stderr).
  expect(sinks('logging: { to_stderr: true, to_files: true }\n')).toEqual([true, false]);
  expect(sinks('logging: { to_stderr: false, to_files: false }\n')).toEqual([false, false]);
});
