// The typed configuration, with upstream's keys and defaults. Each getter validates its value, so
// this file is the single definition of what a fleet-server.yml may contain.
import { freemem, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isSea } from 'node:sea';
import { memoryLimit } from '../util/cgroup';
import { durationValue, timerDuration, TIMER_CEILING_MS } from '../util/duration';
import { withContext } from '../util/error-text';
import { resolveLimits, ROUTES, type ResolvedLimits, type RouteName, type UserRouteLimit } from './limits';
import type { RawConfig } from './raw';
import { isPlainObject } from '../util/is-object';

export interface TlsConfig {
  enabled: boolean;
  certificate?: string;
  key?: string;
  keyPassphrase?: string;
  certificateAuthorities: string[];
  clientAuthentication: 'none' | 'optional' | 'required';
  supportedProtocols: string[];
  /** ssl.curve_types: the key-exchange groups offered, in upstream's names (empty: the TLS library's defaults). */
  curveTypes: string[];
  /** ssl.certificate_reload: re-read certificate and key files every interval (0 = off). */
  reloadIntervalMs: number;
}

export interface ElasticsearchOutputConfig {
  hosts: string[];
  protocol: string;
  path?: string;
  serviceToken?: string;
  serviceTokenPath?: string;
  headers: Record<string, string>;
  /** Upstream's proxy_url; else, unless proxyDisable, the environment's (store/elasticsearch/proxy.ts). */
  proxyUrl?: string;
  proxyDisable: boolean;
  /** Sent to the proxy with each CONNECT (proxy_headers), e.g. Proxy-Authorization. */
  proxyHeaders: Record<string, string>;
  ssl: {
    verificationMode: 'full' | 'strict' | 'certificate' | 'none';
    certificateAuthorities: string[];
    caTrustedFingerprint?: string;
    certificate?: string;
    key?: string;
    /** For an encrypted `key`. */
    keyPassphrase?: string;
  };
  timeoutMs: number;
  maxRetries: number;
  /** Connections per Elasticsearch node (upstream's max_conn_per_host). */
  maxConnPerHost: number;
  raw: RawConfig;
}

/** How the Elasticsearch store batches document operations (upstream's `server.bulk.*`). */
export interface BulkConfig {
  flushIntervalMs: number;
  flushThresholdCount: number;
  flushThresholdBytes: number;
  flushMaxPending: number;
  /** Operations that may wait for a flush before new ones are refused with 429 (0: a bound derived from the above). */
  maxPendingOperations: number;
}

/** The index monitors (upstream's `inputs[0].monitor.*`). */
export interface MonitorConfig {
  fetchSize: number;
  pollTimeoutMs: number;
}

export interface FleetServerConfig {
  pathData: string;
  agent: { id: string; version: string };
  policyId: string;
  server: {
    host: string;
    port: number;
    internalPort: number;
    tls: TlsConfig;
    timeouts: {
      readMs: number; readHeaderMs: number; writeMs: number; idleMs: number; drainMs: number;
      checkinLongPollMs: number; checkinTimestampMs: number; checkinJitterMs: number; checkinMaxPollMs: number;
    };
    /** inputs.0.server.workers: processes serving HTTP ('auto': the CPU quota, else the CPU count). */
    workers: number | 'auto';
    compressionLevel: number;
    compressionThreshold: number;
    maxHeaderByteSize: number;
    limits: ResolvedLimits;
    /** server.limits.max_file_storage_size: the largest upload, bytes; undefined = no limit, 0 = uploads disabled. */
    maxFileStorageSize: number | undefined;
    staticPolicyTokens: { enabled: boolean; tokens: { tokenKey: string; policyId: string }[] };
    pbkdf2: { iterations: number; keyLength: number; saltLength: number };
    ignoreCheckinPolicyId: boolean;
    /** server.feature_flags.graceful_force_unenroll (upstream 9.5.2). */
    gracefulForceUnenroll: { enabled: boolean; maxBytes: number };
    /** server.feature_flags.enable_opamp (upstream, default true): OpAMP on /v1/opamp. */
    enableOpamp: boolean;
    /**
     * server.opamp.heartbeat_interval (beyond upstream): offered to Collectors that report heartbeats and
     * do not accept OpAMP connection settings; 0 offers nothing.
     */
    opampHeartbeatMs: number;
    checkinFlushIntervalMs: number;
    bulk: BulkConfig;
    /** Expired-action clean-up: how often, and how long after expiry an action is deleted. */
    gc: { scheduleIntervalMs: number; cleanupAfterExpiredMs: number };
    /**
     * The PGP key served to agents is `<dir>/default.pgp`. upstream_url is accepted and unused: this
     * server does not download the key (upstream's server.pgp).
     */
    pgp: { dir: string; upstreamUrl: string };
    /** Embedded store: the key that seals stored secrets (else FLEET_SERVER_ENCRYPTION_KEY, else <path.data>/fleet-server.key). */
    secretsKey: string | undefined;
  };
  monitor: MonitorConfig;
  cache: { ttlActionMs: number; ttlEnrollKeyMs: number; ttlApiKeyMs: number; jitterApiKeyMs: number; ttlArtifactMs: number };
  logging: {
    level: string; toStderr: boolean; toFiles: boolean; filesPath: string; filesName: string;
    rotateEveryBytes: number; keepFiles: number; permissions: number; rotateOnStartup: boolean;
  };
  http: { enabled: boolean; host: string; port: number };
  /** Upstream settings present in this configuration that this server does not apply (warned at start). */
  notApplied: string[];
  /** Keys no fleet-server reads (top-level, and siblings of output.elasticsearch): warned at start, in one line. */
  unknownKeys: string[];
  elasticsearch?: ElasticsearchOutputConfig;
  /** The effective raw document, kept for diagnostics (secrets redacted when shown). */
  raw: RawConfig;
}

const TRUE_WORDS = new Set(['true', 'yes', 'y', 'on', '1', 't']);
const FALSE_WORDS = new Set(['false', 'no', 'n', 'off', '0', 'f']);

class Reader {
  constructor(private readonly obj: RawConfig, private readonly prefix: string) {}

  static of(value: unknown, prefix: string): Reader {
    if (value === undefined || value === null) return new Reader({}, prefix);
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`config key ${prefix}: expected an object`);
    return new Reader(value as RawConfig, prefix);
  }

  private key(k: string): string {
    return this.prefix ? `${this.prefix}.${k}` : k;
  }

  /** The full key of `k` under this reader (for messages). */
  path(k: string): string {
    return this.key(k);
  }

  has(k: string): boolean {
    return this.obj[k] !== undefined && this.obj[k] !== null;
  }

  sub(k: string): Reader {
    return Reader.of(this.obj[k], this.key(k));
  }

  rawValue(k: string): unknown {
    return this.obj[k];
  }

  /** The keys present (with a value) under this reader. */
  keys(): string[] {
    return Object.keys(this.obj).filter((k) => this.has(k));
  }

  str(k: string, def: string): string {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw new Error(`config key ${this.key(k)}: expected a string`);
  }

  optStr(k: string): string | undefined {
    return this.has(k) ? this.str(k, '') : undefined;
  }

  num(k: string, def: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) throw new Error(`config key ${this.key(k)}: expected a number`);
    return n;
  }

  /** A whole number of at least `min` (and at most `max`). */
  int(k: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const n = this.num(k, def);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new Error(`config key ${this.key(k)}: expected a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(this.obj[k])}`);
    }
    return n;
  }

  /**
   * Booleans as upstream's YAML 1.1 (yaml.v2) and strconv.ParseBool read them: true/false, yes/no,
   * on/off, y/n (any case), and the strings 1/0 and t/f.
   */
  bool(k: string, def: boolean): boolean {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string') {
      const word = v.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
    }
    throw new Error(`config key ${this.key(k)}: expected true or false`);
  }

  dur(k: string, defMs: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) return defMs;
    return durationValue(v, this.key(k));
  }

  /** A duration that drives a timer: see timerDuration (0 refused where `positive`; clamped to a timer's range). */
  timer(k: string, defMs: number, positive: boolean): number {
    return timerDuration(this.dur(k, defMs), this.key(k), { positive });
  }

  /** A Go net/http server timeout (read, read_header, idle, write): zero or negative means none, read as 0. */
  serverTimeout(k: string, defMs: number): number {
    const v = this.obj[k];
    if ((typeof v === 'number' && v < 0) || (typeof v === 'string' && v.trim().startsWith('-'))) return 0;
    return this.timer(k, defMs, false);
  }

  /** A string or a list of them: a YAML list, one string, or a list a variable or -E value expanded to. */
  strList(k: string): string[] {
    const v = this.obj[k];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    return list.filter((x) => x !== undefined && x !== null).map((x) => String(x));
  }

  /**
   * File modes are octal as upstream's YAML 1.1 reads them: `0600` means rw-------. Our YAML 1.2
   * parser reads that literal as the decimal 600, so a number is re-read digit by digit as octal.
   */
  mode(k: string, def: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    const digits = String(v).replace(/^0o/i, '');
    if (!/^[0-7]{1,4}$/.test(digits)) throw new Error(`config key ${this.key(k)}: expected an octal file mode such as 0600`);
    return parseInt(digits, 8);
  }

  /** Byte sizes may be numbers or strings with units ("1MiB", "512KB"). */
  bytes(k: string, def: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) return def;
    if (typeof v === 'number') return v;
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$/i.exec(String(v));
    if (!m) throw new Error(`config key ${this.key(k)}: expected a byte size`);
    const unit = (m[2] ?? 'b').toLowerCase();
    const mult = unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 ** 2 : unit.startsWith('g') ? 1024 ** 3 : 1;
    return Math.round(Number(m[1]) * mult);
  }
}

/** A byte count that must be at least 1. */
function atLeastOne(n: number, key: string): number {
  if (!Number.isFinite(n) || n < 1) throw new Error(`config key inputs.0.${key}: expected at least 1 byte, got ${n}`);
  return n;
}

/** Elasticsearch date-math spans as upstream writes them ("30d"), or Go durations. */
function dayDuration(v: string, key: string): number {
  const m = /^(\d+)d$/.exec(v.trim());
  return m ? Number(m[1]) * 86_400_000 : durationValue(v, key);
}

/** A PEM value may be given inline or as a path to a file. */
export function pemOrFile(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  return value.includes('-----BEGIN') ? value : readFileSync(value, 'utf8');
}

/** Upstream's ssl.curve_types names (libbeat's tlscommon), with X25519MLKEM768 as Go 1.24 names it. */
export const CURVE_TYPES = ['P-256', 'P-384', 'P-521', 'X25519', 'X25519MLKEM768'] as const;

/** Upstream's level names (and pino's): anything else stops the start, as upstream's strToLevel does, not a silent info. */
const LOG_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'warning', 'error', 'critical', 'fatal', 'silent']);

function logLevel(value: string): string {
  const level = value.trim().toLowerCase();
  if (!LOG_LEVELS.has(level)) throw new Error(`config key logging.level: unknown level ${JSON.stringify(value)}; one of trace, debug, info, warning, error, critical`);
  return level;
}

/** ssl.key_passphrase, else the content of ssl.key_passphrase_path (tlscommon's, for a server and a client alike). */
function passphraseOf(r: Reader): string | undefined {
  const given = r.optStr('key_passphrase');
  const path = r.optStr('key_passphrase_path');
  if (given || !path) return given;
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw withContext(`config key ${r.path('key_passphrase_path')}: cannot read ${path}`, err);
  }
}

/**
 * tlscommon's protocol names (`TLSv1` is its alias of `TLSv1.0`). Anything else stops the start, as
 * upstream's "invalid tls version" does: left out, a typo such as TLSv1.9 silently kept the defaults.
 */
const TLS_PROTOCOLS: Record<string, string> = { 'TLSv1': 'TLSv1.0', 'TLSv1.0': 'TLSv1.0', 'TLSv1.1': 'TLSv1.1', 'TLSv1.2': 'TLSv1.2', 'TLSv1.3': 'TLSv1.3' };

function tlsProtocols(r: Reader): string[] {
  return r.strList('supported_protocols').map((p) => {
    const known = TLS_PROTOCOLS[p.trim()];
    if (known === undefined) throw new Error(`config key ${r.path('supported_protocols')}: invalid tls version ${JSON.stringify(p)}; expected TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3`);
    return known;
  });
}

function readTls(r: Reader): TlsConfig {
  // As elastic-agent-libs' tlscommon ServerConfig: certificate authorities without a
  // client_authentication mean `required` (mutual TLS), else `none`; a value written wins.
  const auth = r.str('client_authentication', r.has('certificate_authorities') ? 'required' : 'none');
  if (auth !== 'none' && auth !== 'optional' && auth !== 'required') {
    throw new Error(`config key ${r.path('client_authentication')}: expected none, optional or required`);
  }
  const keyPassphrase = passphraseOf(r);
  const hasCert = r.has('certificate');
  return {
    enabled: r.bool('enabled', hasCert),
    certificate: r.optStr('certificate'),
    key: r.optStr('key'),
    keyPassphrase,
    certificateAuthorities: r.strList('certificate_authorities'),
    clientAuthentication: auth,
    supportedProtocols: tlsProtocols(r),
    curveTypes: r.strList('curve_types').map((c) => {
      if (!(CURVE_TYPES as readonly string[]).includes(c)) throw new Error(`config key ${r.path('curve_types')}: unknown curve ${c}; expected ${CURVE_TYPES.join(', ')}`);
      return c;
    }),
    // Off unless enabled (README; upstream's default is not in the references); a one-minute interval when on.
    reloadIntervalMs: r.sub('certificate_reload').bool('enabled', false) ? r.sub('certificate_reload').timer('reload_interval', 60_000, true) : 0,
  };
}

function readRouteLimits(r: Reader): Partial<Record<RouteName, UserRouteLimit>> {
  const out: Partial<Record<RouteName, UserRouteLimit>> = {};
  for (const route of ROUTES) {
    const key = `${route}_limit`;
    if (!r.has(key)) continue;
    const l = r.sub(key);
    out[route] = {
      intervalMs: l.has('interval') ? l.timer('interval', 0, false) : undefined,
      burst: l.has('burst') ? l.num('burst', 0) : undefined,
      max: l.has('max') ? l.num('max', 0) : undefined,
      maxBody: l.bytes('max_body_byte_size', 0),
      maxBodyDecompressed: l.bytes('max_body_decompressed', 0),
    };
  }
  return out;
}

function readWorkers(server: Reader): number | 'auto' {
  const v = server.str('workers', 'auto');
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error('config key inputs.0.server.workers: expected auto or a whole number from 1 to 256');
  return n;
}

/** The memory the limit profile is chosen by (upstream: GOMEMLIMIT, else the cgroup's limit, else the host's RAM). */
export function memoryMiB(): number {
  return (memoryLimit() ?? Math.max(totalmem(), freemem())) / 1024 / 1024;
}

/** The directory of the executable (upstream's default for server.pgp.dir): the single executable's, else the bundle's. */
function programDir(): string {
  if (isSea()) return dirname(process.execPath);
  return process.argv[1] ? dirname(resolve(process.argv[1])) : process.cwd();
}

export function buildConfig(raw: RawConfig): FleetServerConfig {
  const root = Reader.of(raw, '');
  const inputsRaw = raw['inputs'];
  if (inputsRaw !== undefined && !Array.isArray(inputsRaw)) throw new Error('config key inputs: expected a list');
  const inputs = (inputsRaw as unknown[] | undefined) ?? [];
  const input = Reader.of(inputs.find((i: any) => i && (i.type === undefined || i.type === 'fleet-server')) ?? {}, 'inputs.0');
  const server = input.sub('server');
  const timeouts = server.sub('timeouts');
  const limits = server.sub('limits');
  const cache = input.sub('cache');
  const logging = root.sub('logging');
  const path = root.sub('path');
  const pathData = resolve(path.str('data', './data'));
  const fleetAgent = root.sub('fleet').sub('agent');
  const spt = server.sub('static_policy_tokens');
  const pb = server.sub('pdkdf2');
  const flags = server.sub('feature_flags');

  const esRaw = elasticsearchOutput(root.sub('output'));
  let elasticsearch: ElasticsearchOutputConfig | undefined;
  if (esRaw !== undefined && esRaw !== null) {
    const es = Reader.of(esRaw, 'output.elasticsearch');
    const stringMap = (key: string): Record<string, string> => {
      const value = es.rawValue(key) ?? {};
      if (!isPlainObject(value)) throw new Error(`config key output.elasticsearch.${key}: expected a mapping of names to values`);
      const map: Record<string, string> = {};
      for (const [k, v] of Object.entries(value)) map[k] = String(v);
      return map;
    };
    const ssl = es.sub('ssl');
    // Not applied (Node's TLS 1.2–1.3 for the output: notApplied), but a name upstream refuses stops the start here too.
    tlsProtocols(ssl);
    const mode = ssl.str('verification_mode', 'full');
    if (!['full', 'strict', 'certificate', 'none'].includes(mode)) {
      throw new Error('config key output.elasticsearch.ssl.verification_mode: expected full, strict, certificate or none');
    }
    elasticsearch = {
      hosts: es.has('hosts') ? es.strList('hosts') : ['localhost:9200'],
      protocol: es.str('protocol', 'http'),
      path: es.optStr('path'),
      serviceToken: es.optStr('service_token'),
      serviceTokenPath: es.optStr('service_token_path'),
      headers: stringMap('headers'),
      proxyUrl: es.optStr('proxy_url'),
      proxyDisable: es.bool('proxy_disable', false),
      proxyHeaders: stringMap('proxy_headers'),
      ssl: {
        verificationMode: mode as ElasticsearchOutputConfig['ssl']['verificationMode'],
        certificateAuthorities: ssl.strList('certificate_authorities'),
        caTrustedFingerprint: ssl.optStr('ca_trusted_fingerprint'),
        certificate: ssl.optStr('certificate'),
        key: ssl.optStr('key'),
        keyPassphrase: passphraseOf(ssl),
      },
      timeoutMs: es.timer('timeout', 90_000, false),
      maxRetries: es.num('max_retries', 3),
      maxConnPerHost: es.int('max_conn_per_host', 128, 1),
      raw: esRaw as RawConfig,
    };
  }

  const iterations = pb.num('iterations', 210000);
  const keyLength = pb.num('key_length', 32);
  const saltLength = pb.num('salt_length', 64);
  if (iterations < 1000 || keyLength < 14 || saltLength < 16) {
    throw new Error('config key server.pdkdf2: iterations ≥ 1000, key_length ≥ 14, salt_length ≥ 16 required');
  }

  const readMs = timeouts.serverTimeout('read', 60_000);
  const port = server.num('port', 8220);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('config key inputs.0.server.port: invalid port');

  return {
    pathData,
    agent: { id: fleetAgent.str('id', ''), version: fleetAgent.str('version', '') },
    policyId: input.sub('policy').str('id', ''),
    server: {
      host: server.str('host', '0.0.0.0'),
      port,
      internalPort: server.num('internal_port', 8221),
      tls: readTls(server.sub('ssl')),
      timeouts: {
        // As Go's http.Server: read 0 is no timeout; read_header and idle 0 take read's value.
        readMs,
        readHeaderMs: timeouts.serverTimeout('read_header', 5_000) || readMs,
        // 0 is no write timeout (Go): the longest a timer holds, as the file-delivery write deadline is one.
        writeMs: timeouts.serverTimeout('write', 600_000) || TIMER_CEILING_MS,
        idleMs: timeouts.serverTimeout('idle', 35_000) || readMs,
        drainMs: timeouts.timer('drain', 10_000, false),
        checkinLongPollMs: timeouts.timer('checkin_long_poll', 300_000, true),
        checkinTimestampMs: timeouts.timer('checkin_timestamp', 30_000, true),
        checkinJitterMs: timeouts.timer('checkin_jitter', 30_000, false),
        checkinMaxPollMs: timeouts.timer('checkin_max_poll', 3_600_000, true),
      },
      workers: readWorkers(server),
      // gzip levels: -1 (zlib's default) to 9.
      compressionLevel: server.int('compression_level', 1, -1, 9),
      compressionThreshold: server.num('compression_threshold', 1024),
      maxHeaderByteSize: limits.num('max_header_byte_size', 8192),
      limits: resolveLimits(limits.num('max_agents', 0), memoryMiB(), limits.has('max_connections') ? limits.num('max_connections', 0) : undefined, readRouteLimits(limits)),
      // Upstream's LoadLimits overwrites this with its profiles' (unset) value; a value set here is honoured.
      maxFileStorageSize: limits.rawValue('max_file_storage_size') == null ? undefined : limits.bytes('max_file_storage_size', 0),
      staticPolicyTokens: (() => {
        const enabled = spt.bool('enabled', false);
        const minKeyChars = 16;
        const list = spt.rawValue('policy_tokens');
        if (list != null && !Array.isArray(list)) throw new Error(`config key ${spt.path('policy_tokens')}: expected a list`);
        const tokens = ((list as unknown[] | undefined) ?? []).map((t, i) => {
          const tr = Reader.of(t, spt.path(`policy_tokens.${i}`));
          const token = { tokenKey: tr.str('token_key', ''), policyId: tr.str('policy_id', '') };
          // Not upstream's check (handleEnroll.go compares whatever is set): a token_key left out, or an
          // unset ${VAR}, reads '' and would let `ApiKey base64("x:")` enroll; a short one can be guessed.
          // Named, never echoed: the value is a secret.
          if (enabled && [...token.tokenKey].length < minKeyChars) {
            throw new Error(`config key ${tr.path('token_key')}: expected a secret of at least ${minKeyChars} characters`);
          }
          if (enabled && token.policyId === '') throw new Error(`config key ${tr.path('policy_id')}: expected a policy id`);
          return token;
        });
        return { enabled, tokens };
      })(),
      pbkdf2: { iterations, keyLength, saltLength },
      ignoreCheckinPolicyId: flags.bool('ignore_checkin_policy_id', false),
      gracefulForceUnenroll: {
        enabled: flags.sub('graceful_force_unenroll').bool('enabled', false),
        maxBytes: flags.sub('graceful_force_unenroll').num('max_bytes', 50_000_000),
      },
      enableOpamp: flags.bool('enable_opamp', true),
      opampHeartbeatMs: server.sub('opamp').dur('heartbeat_interval', 30_000),
      // Upstream hard-codes 10 s; configurable here so tests need not wait for it.
      checkinFlushIntervalMs: server.sub('bulk').timer('checkin_flush_interval', 10_000, true),
      gc: {
        scheduleIntervalMs: server.sub('gc').timer('schedule_interval', 3_600_000, true),
        cleanupAfterExpiredMs: dayDuration(server.sub('gc').str('cleanup_after_expired_interval', '30d'), 'server.gc.cleanup_after_expired_interval'),
      },
      secretsKey: server.sub('secrets').optStr('key'),
      pgp: {
        dir: resolve(server.sub('pgp').str('dir', join(programDir(), 'elastic-agent-upgrade-keys'))),
        upstreamUrl: server.sub('pgp').str('upstream_url', 'https://artifacts.elastic.co/GPG-KEY-elastic-agent'),
      },
      bulk: {
        flushIntervalMs: server.sub('bulk').timer('flush_interval', 250, false),
        flushThresholdCount: server.sub('bulk').int('flush_threshold_cnt', 2048, 1),
        flushThresholdBytes: atLeastOne(server.sub('bulk').bytes('flush_threshold_size', 1024 * 1024), 'server.bulk.flush_threshold_size'),
        flushMaxPending: server.sub('bulk').int('flush_max_pending', 8, 1),
        maxPendingOperations: server.sub('bulk').int('max_pending_bulk_dispatches', 0, 0),
      },
    },
    monitor: {
      // The change feed's search `size`: 0 would leave it no last hit to page from, and Elasticsearch
      // refuses a negative size or one past index.max_result_window (10,000 by default) on every poll.
      fetchSize: input.sub('monitor').int('fetch_size', 1000, 1, 10_000),
      pollTimeoutMs: input.sub('monitor').timer('poll_timeout', 240_000, true),
    },
    cache: {
      ttlActionMs: cache.dur('ttl_action', 300_000),
      ttlEnrollKeyMs: cache.dur('ttl_enroll_key', 60_000),
      ttlApiKeyMs: cache.dur('ttl_api_key', 900_000),
      jitterApiKeyMs: cache.dur('jitter_api_key', 300_000),
      ttlArtifactMs: cache.dur('ttl_artifact', 86_400_000),
    },
    logging: {
      level: logLevel(logging.str('level', fleetAgent.sub('logging').str('level', 'info'))),
      ...logSinks(logging),
      filesPath: resolve(logging.sub('files').str('path', join(pathData, 'logs'))),
      filesName: logging.sub('files').str('name', 'fleet-server.log'),
      rotateEveryBytes: logging.sub('files').bytes('rotateeverybytes', 10 * 1024 * 1024),
      // libbeat's file rotator takes 2 to 1024; any number was taken before (-3 too).
      keepFiles: logging.sub('files').int('keepfiles', 7, 2, 1024),
      permissions: logging.sub('files').mode('permissions', 0o600),
      rotateOnStartup: logging.sub('files').bool('rotateonstartup', true),
    },
    http: {
      enabled: root.sub('http').bool('enabled', false),
      host: root.sub('http').str('host', 'localhost'),
      port: root.sub('http').num('port', 5066),
    },
    elasticsearch,
    notApplied: notApplied(root, input, server),
    unknownKeys: unknownKeys(raw),
    raw,
  };
}

/**
 * output.elasticsearch, the only output fleet-server has. An output section that names none (a typo
 * such as `elasticsearh`, or another output type) is refused: read as no output, it started the embedded
 * store, and agents enrolled where Kibana never saw them. Upstream has no embedded store (always
 * Elasticsearch, localhost:9200 by default); here only a configuration without an output section means it.
 */
function elasticsearchOutput(output: Reader): unknown {
  const es = output.rawValue('elasticsearch');
  if (es !== undefined && es !== null) return es;
  const other = output.keys().find((k) => k !== 'elasticsearch');
  if (other !== undefined) {
    throw new Error(`config key ${output.path(other)}: not an output this server knows; did you mean output.elasticsearch? (with no output section, the embedded store is used)`);
  }
  return undefined;
}

/** The top-level keys fleet-server reads (its config.Config, and path.* as libbeat has it). */
const TOP_LEVEL_KEYS = new Set(['fleet', 'output', 'inputs', 'logging', 'http', 'path']);

/**
 * Keys read by nothing: go-ucfg ignores unknown keys, and Go configurations carry keys this server does
 * not read, so they are named at start rather than refused. Top level (`outputs` for `output`), and the
 * siblings of an Elasticsearch output (only output.elasticsearch is ever read).
 */
function unknownKeys(raw: RawConfig): string[] {
  const top = Object.keys(raw).filter((k) => !TOP_LEVEL_KEYS.has(k) && raw[k] !== undefined);
  const output = raw['output'];
  const besideEs = isPlainObject(output) ? Object.keys(output).filter((k) => k !== 'elasticsearch').map((k) => `output.${k}`) : [];
  return [...top, ...besideEs];
}

/** Where a service token is given (for messages). */
export const SERVICE_TOKEN_KEYS = 'output.elasticsearch.service_token or service_token_path';

/**
 * Elasticsearch mode with no service token (a misspelled key, an unset variable): Elasticsearch refuses
 * every request with 401, which reads as a wrong token. Told as such: a warning at a server's start, the
 * admin CLI's error on that 401 (admin-common.ts).
 */
export function lacksServiceToken(config: Pick<FleetServerConfig, 'elasticsearch'>): boolean {
  const es = config.elasticsearch;
  return es !== undefined && !es.serviceToken && !es.serviceTokenPath;
}

/**
 * Where logs go. Upstream's logger (internal/pkg/logger) writes to stderr when `to_stderr` is on and to
 * files only otherwise, never both. Its defaults are files, not stderr; this server's default is stderr
 * (docs/compatibility.md), so a Go fleet-server.yml that asks only for `to_files: true`, or turns
 * `to_stderr` off, gets files as it would upstream.
 */
function logSinks(logging: Reader): { toStderr: boolean; toFiles: boolean } {
  const toStderr = logging.has('to_stderr') ? logging.bool('to_stderr', true) : !logging.bool('to_files', false);
  return { toStderr, toFiles: !toStderr && logging.bool('to_files', true) };
}

/**
 * Upstream settings this server reads no value from. Certificate pinning by ca_sha256 is refused: left
 * out silently, a pin the operator relies on would not be checked. The rest are named at start (a
 * warning each) and in docs/compatibility.md.
 */
function notApplied(root: Reader, input: Reader, server: Reader): string[] {
  const es = root.sub('output').sub('elasticsearch');
  const serverSsl = server.sub('ssl');
  const esSsl = es.sub('ssl');
  for (const r of [serverSsl, esSsl]) {
    if (r.has('ca_sha256')) {
      throw new Error(`config key ${r.path('ca_sha256')}: pinning by ca_sha256 is not supported; narrow certificate_authorities${r === esSsl ? ' or pin with ca_trusted_fingerprint' : ''} instead`);
    }
  }
  const logging = root.sub('logging');
  const present: [Reader, string[]][] = [
    [serverSsl, ['cipher_suites', 'verification_mode', 'renegotiation']],
    [esSsl, ['cipher_suites', 'supported_protocols', 'curve_types', 'renegotiation']],
    [es, ['max_content_length']],
    [input.sub('cache'), ['num_counters', 'max_cost']],
    [input.sub('monitor'), ['policy_debounce_time']],
    [server, ['profiler', 'runtime']],
    [logging, ['pretty']],
    [logging.sub('files'), ['interval', 'redirect_stderr']],
  ];
  return present.flatMap(([r, keys]) => keys.filter((k) => r.has(k)).map((k) => r.path(k)));
}
