// The Fleet Server configuration Elastic Agent's units describe (upstream's configFromUnits): the input
// unit becomes inputs[0], the output unit output.elasticsearch (merged with the `bootstrap` object the
// agent injects), the more verbose of the two log levels logging.level, and the agent's identity
// fleet.agent.*. Unit values win over the -E settings on the command line.
import { mergeRaw, nestDottedKeys, type RawConfig } from '../config/raw';
import { proto } from './generated/control';
import { fromStruct } from './struct';
import { isPlainObject } from '../util/is-object';

const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];
/** Bootstrap keys copied into the output where it lacks them. */
const BOOTSTRAP_KEYS = ['protocol', 'hosts', 'path', 'service_token', 'service_token_path', 'headers', 'proxy_url', 'proxy_disable', 'proxy_headers'];
const BOOTSTRAP_SSL_KEYS = ['verification_mode', 'certificate_authorities', 'ca_trusted_fingerprint', 'certificate', 'key'];

type Obj = Record<string, unknown>;

export function unitSource(config: proto.IUnitExpectedConfig | undefined): Obj {
  return nestDottedKeys(fromStruct(config?.source)) as Obj;
}

export interface OutputChoice {
  /** The output with bootstrap values filled in where it lacks them. */
  merged: Obj;
  /** The bootstrap object alone, the fallback when `merged` cannot reach Elasticsearch. */
  bootstrap: Obj | undefined;
}

export function outputFromUnit(source: Obj): OutputChoice {
  const { bootstrap, ...output } = source;
  delete output['type'];
  if (!isPlainObject(bootstrap)) return { merged: output, bootstrap: undefined };
  const merged: Obj = { ...output };
  for (const k of BOOTSTRAP_KEYS) if (merged[k] === undefined && bootstrap[k] !== undefined) merged[k] = bootstrap[k];
  if (isPlainObject(bootstrap['ssl'])) {
    const ssl: Obj = isPlainObject(merged['ssl']) ? { ...merged['ssl'] } : {};
    const bssl = bootstrap['ssl'];
    for (const k of BOOTSTRAP_SSL_KEYS) if (ssl[k] === undefined && bssl[k] !== undefined) ssl[k] = bssl[k];
    // An output that names its own CA keeps verifying, whatever the bootstrap said.
    const ownCa = isPlainObject(output['ssl']) && ((Array.isArray(output['ssl']['certificate_authorities']) && output['ssl']['certificate_authorities'].length > 0)
      || !!output['ssl']['ca_trusted_fingerprint']) && output['ssl']['verification_mode'] !== 'none';
    if (ownCa && ssl['verification_mode'] === 'none' && (output['ssl'] as Obj)['verification_mode'] === undefined) delete ssl['verification_mode'];
    merged['ssl'] = ssl;
  }
  return { merged, bootstrap: { ...bootstrap } };
}

export interface UnitsView {
  input: { config: proto.IUnitExpectedConfig | undefined; logLevel: proto.UnitLogLevel };
  output: { config: proto.IUnitExpectedConfig | undefined; logLevel: proto.UnitLogLevel };
  agent: { id: string; version: string };
  /** The Elasticsearch output to use: the merged one, or the bootstrap fallback. */
  elasticsearch: Obj;
  /** Component-wide APM settings, if the agent sends any. */
  apm?: proto.IElasticAPM | null;
}

/** component.apm_config.elastic as upstream maps it into inputs[0].server.instrumentation. */
function instrumentation(apm: proto.IElasticAPM): Obj {
  const out: Obj = { enabled: true };
  if (apm.tls) out['tls'] = { skip_verify: !!apm.tls.skipVerify, server_certificate: apm.tls.serverCert ?? '', server_ca: apm.tls.serverCa ?? '' };
  if (apm.environment) out['environment'] = apm.environment;
  if (apm.apiKey) out['api_key'] = apm.apiKey;
  if (apm.secretToken) out['secret_token'] = apm.secretToken;
  if (apm.hosts?.length) out['hosts'] = apm.hosts;
  if (apm.globalLabels) out['global_labels'] = apm.globalLabels;
  if (apm.samplingRate !== undefined && apm.samplingRate !== null) out['transaction_sample_rate'] = String(apm.samplingRate);
  return out;
}

export function configFromUnits(cli: RawConfig, v: UnitsView): RawConfig {
  const input = unitSource(v.input.config);
  const inputs0: Obj = { type: 'fleet-server' };
  for (const k of ['policy', 'server', 'cache', 'monitor']) if (input[k] !== undefined) inputs0[k] = input[k];
  // Kept in the configuration (and shown in diagnostics); this build has no APM agent to hand it to.
  if (v.apm) inputs0['server'] = mergeRaw(inputs0['server'] ?? {}, { instrumentation: instrumentation(v.apm) });
  const level = LEVELS[Math.max(v.input.logLevel, v.output.logLevel)] ?? 'info';
  const fromUnits: RawConfig = {
    fleet: { agent: { id: v.agent.id, version: v.agent.version } },
    inputs: [inputs0],
    output: { elasticsearch: v.elasticsearch },
    logging: { level },
  };
  // The unit config replaces the CLI's inputs list and output as wholes; other keys merge.
  const base: RawConfig = { ...cli };
  delete base['inputs'];
  const cliInput = Array.isArray(cli['inputs']) && isPlainObject(cli['inputs'][0]) ? cli['inputs'][0] : {};
  fromUnits['inputs'] = [mergeRaw(cliInput, inputs0)];
  return mergeRaw(base, fromUnits) as RawConfig;
}
