// OpAMP's wire format: AgentToServer decoded into the plain values fleet/opamp.ts takes, and its
// replies encoded as ServerToAgent. Field numbers and bit values are the protocol's (proto/opamp.proto).
import { createHash } from 'node:crypto';
import type { Json, JsonObject } from '../store/documents';
import type { OpampConfigFile, OpampHealth, OpampMessage, OpampReply, RemoteConfigState, ServerCapability } from '../fleet/opamp';
import type { opamp } from './generated/opamp';

/**
 * The messages' code (0.1 MB of protobufjs static code, beside the bundle in dist/vendor) is read at the
 * first OpAMP message, not at start: a server most of whose clients are Elastic Agents never needs it, and
 * every process keeps the source text of what it loads.
 */
let messages: typeof opamp.proto.v1 | undefined;
function pb(): typeof opamp.proto.v1 {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  messages ??= (require('./generated/opamp') as typeof import('./generated/opamp')).opamp.proto.v1;
  return messages;
}
type IAnyValue = opamp.proto.v1.IAnyValue;
type IKeyValue = opamp.proto.v1.IKeyValue;
type IComponentHealth = opamp.proto.v1.IComponentHealth;

/** AgentCapabilities, bit i named AGENT_CAPABILITIES[i] (the document stores the names). */
const AGENT_CAPABILITIES = [
  'ReportsStatus', 'AcceptsRemoteConfig', 'ReportsEffectiveConfig', 'AcceptsPackages', 'ReportsPackageStatuses',
  'ReportsOwnTraces', 'ReportsOwnMetrics', 'ReportsOwnLogs', 'AcceptsOpAMPConnectionSettings',
  'AcceptsOtherConnectionSettings', 'AcceptsRestartCommand', 'ReportsHealth', 'ReportsRemoteConfig',
  'ReportsHeartbeat', 'ReportsAvailableComponents', 'ReportsConnectionSettingsStatus',
] as const;

const SERVER_CAPABILITY_BITS: Record<ServerCapability, number> = {
  AcceptsStatus: 0x01, OffersRemoteConfig: 0x02, AcceptsEffectiveConfig: 0x04, OffersConnectionSettings: 0x20,
};

const REMOTE_CONFIG_STATES: RemoteConfigState[] = ['UNSET', 'APPLIED', 'APPLYING', 'FAILED'];
/** The file name of the configuration sent (a Collector's supervisor merges named files, then ""). */
const REMOTE_CONFIG_FILE = '';

const FLAG_REQUEST_INSTANCE_UID = 0x1;
const FLAG_REPORT_FULL_STATE = 0x1;
const ERROR_TYPES = { BadRequest: 1, Unavailable: 2 } as const;
/** Nesting deeper than this in attributes or health is cut off (protobufjs bounds decoding depth itself). */
const MAX_DEPTH = 32;
/**
 * Health components and attribute values kept of one message; the rest are dropped. A Collector reports
 * one component per pipeline and per component instance (tens, hundreds in a large one); without a
 * bound, a message of tiny entries (a few bytes each) becomes many times its size in objects, held
 * while the message waits on the store.
 */
const MAX_HEALTH_COMPONENTS = 10_000;
const MAX_ATTRIBUTE_VALUES = 10_000;

/**
 * Objects (sub-messages, map entries, repeated strings) a message may make when decoded; past it the
 * message is refused before it is decoded. protobufjs builds all of them before the bounds above apply:
 * 4 MiB of 8-byte health map entries made 500,000 objects (190 MB) and held the event loop 1.7 s. A
 * Collector's report makes thousands (the HTTP edge bounds JSON bodies to 100,000 values likewise).
 */
const MAX_OBJECTS = 100_000;

/**
 * AgentToServer's message-valued fields (map entries as their own messages: key 1, value 2) by type:
 * field number → the type it holds; '' is an object or string that holds none (counted, not walked).
 * Fields not named here are scalars, strings or bytes met once per message (the last one is kept).
 */
const SHAPES: Record<string, Record<number, string>> = {
  AgentToServer: { 3: 'AgentDescription', 5: 'ComponentHealth', 6: 'EffectiveConfig', 7: '', 8: 'PackageStatuses', 9: '', 11: 'ConnectionSettingsRequest', 12: 'CustomCapabilities', 13: '', 14: 'AvailableComponents', 15: '' },
  AgentDescription: { 1: 'KeyValue', 2: 'KeyValue' },
  KeyValue: { 2: 'AnyValue' },
  AnyValue: { 5: 'ArrayValue', 6: 'KeyValueList' },
  ArrayValue: { 1: 'AnyValue' },
  KeyValueList: { 1: 'KeyValue' },
  ComponentHealth: { 6: 'ComponentHealthEntry', 7: 'KeyValue' },
  ComponentHealthEntry: { 2: 'ComponentHealth' },
  EffectiveConfig: { 1: 'AgentConfigMap' },
  AgentConfigMap: { 1: 'AgentConfigEntry' },
  AgentConfigEntry: { 2: '' },
  PackageStatuses: { 1: 'PackageStatusEntry' },
  PackageStatusEntry: { 2: 'PackageStatus' },
  PackageStatus: { 8: '' },
  ConnectionSettingsRequest: { 1: 'OpAMPConnectionSettingsRequest' },
  OpAMPConnectionSettingsRequest: { 1: '' },
  CustomCapabilities: { 1: '' },
  AvailableComponents: { 1: 'ComponentDetailsEntry' },
  ComponentDetailsEntry: { 2: 'ComponentDetails' },
  ComponentDetails: { 1: 'KeyValue', 2: 'ComponentDetailsEntry' },
};
/** protobufjs's own nesting bound (Reader.recursionLimit): it refuses deeper messages before making them. */
const MAX_NESTING = 100;

/**
 * Counts what decoding `buf[pos, end)` as `type` would make, without making any of it; throws past
 * MAX_OBJECTS. Bytes protobufjs refuses end the count where they start; what it skips (unknown fields,
 * groups) is skipped alike, or counted as fields of the message (more than protobufjs makes, never less).
 */
function countObjects(buf: Uint8Array, pos: number, end: number, type: string, depth: number, count: { n: number }): void {
  if (depth > MAX_NESTING) return;
  const shape = SHAPES[type]!;
  while (pos < end) {
    // Tags and lengths are at most 5 bytes here (field numbers and lengths below 2^32).
    let tag = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= end || shift > 28) return;
      const b = buf[pos++]!;
      tag = (tag | ((b & 0x7f) << shift)) >>> 0;
      if (b < 0x80) break;
    }
    const wire = tag & 7;
    if (wire === 0) {
      // Any length: protobufjs skips an unknown field's varint however long it is.
      for (;;) {
        if (pos >= end) return;
        if (buf[pos++]! < 0x80) break;
      }
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len = 0;
      for (let shift = 0; ; shift += 7) {
        if (pos >= end || shift > 28) return;
        const b = buf[pos++]!;
        len = (len | ((b & 0x7f) << shift)) >>> 0;
        if (b < 0x80) break;
      }
      if (len > end - pos) return;
      const inner = shape[tag >>> 3];
      if (inner !== undefined) {
        if (++count.n > MAX_OBJECTS) throw new Error(`message makes more than ${MAX_OBJECTS} objects`);
        // protobufjs reads a map entry inline: only its value is a level deeper.
        if (inner !== '') countObjects(buf, pos, pos + len, inner, inner.endsWith('Entry') ? depth : depth + 1, count);
      }
      pos += len;
    } else if (wire !== 3 && wire !== 4) return;
  }
}

/** What is left of a per-message bound as a message is converted. */
interface Budget {
  left: number;
}

/** A 64-bit field: protobufjs gives a number or, when long.js is bundled, a Long. */
function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return 0;
}

/** Names of the set bits (undefined bits ignored). */
export function capabilityNames(mask: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < AGENT_CAPABILITIES.length; i++) if (Math.floor(mask / 2 ** i) % 2 === 1) out.push(AGENT_CAPABILITIES[i]!);
  return out;
}

/** An AnyValue as JSON, as Go's encoding/json writes the value upstream keeps (bytes as base64). */
function anyValueJson(v: IAnyValue | null | undefined, depth: number, budget: Budget): Json {
  if (!v || depth > MAX_DEPTH || budget.left <= 0) return null;
  budget.left--;
  if (v.stringValue != null) return v.stringValue;
  if (v.boolValue != null) return v.boolValue;
  if (v.intValue != null) return num(v.intValue);
  if (v.doubleValue != null) return v.doubleValue;
  if (v.bytesValue != null) return Buffer.from(v.bytesValue).toString('base64');
  if (v.arrayValue != null) {
    const out: Json[] = [];
    for (const x of v.arrayValue.values ?? []) {
      if (budget.left <= 0) break;
      out.push(anyValueJson(x, depth + 1, budget));
    }
    return out;
  }
  if (v.kvlistValue != null) return attributesJson(v.kvlistValue.values, budget, depth + 1);
  return null;
}

/** Key → value, values that are unset skipped (upstream). */
function attributesJson(kvs: IKeyValue[] | null | undefined, budget: Budget, depth = 0): JsonObject {
  const out: JsonObject = {};
  for (const kv of kvs ?? []) {
    if (budget.left <= 0) break;
    const v = anyValueJson(kv.value, depth, budget);
    if (v !== null) out[kv.key ?? ''] = v;
  }
  return out;
}

function health(h: IComponentHealth, depth: number, budget: Budget): OpampHealth {
  const components: Record<string, OpampHealth> = {};
  if (depth < MAX_DEPTH) {
    for (const [k, c] of Object.entries(h.componentHealthMap ?? {})) {
      if (budget.left <= 0) break;
      budget.left--;
      components[k] = health(c, depth + 1, budget);
    }
  }
  return {
    healthy: h.healthy === true,
    startTimeUnixNano: num(h.startTimeUnixNano),
    lastError: h.lastError ?? '',
    status: h.status ?? '',
    statusTimeUnixNano: num(h.statusTimeUnixNano),
    components,
  };
}

/** Decodes an AgentToServer; throws on bytes that are not one. Unknown fields are skipped. */
export function decodeAgentToServer(bytes: Uint8Array): OpampMessage {
  countObjects(bytes, 0, bytes.length, 'AgentToServer', 0, { n: 0 });
  const m = pb().AgentToServer.decode(bytes);
  const msg: OpampMessage = {
    instanceUid: m.instanceUid ?? new Uint8Array(0),
    sequenceNum: num(m.sequenceNum),
    capabilities: capabilityNames(num(m.capabilities)),
    requestInstanceUid: (num(m.flags) & FLAG_REQUEST_INSTANCE_UID) !== 0,
    disconnect: m.agentDisconnect != null,
  };
  if (m.agentDescription) {
    const budget = { left: MAX_ATTRIBUTE_VALUES };
    msg.description = {
      identifying: attributesJson(m.agentDescription.identifyingAttributes, budget),
      nonIdentifying: attributesJson(m.agentDescription.nonIdentifyingAttributes, budget),
    };
  }
  if (m.health) msg.health = health(m.health, 0, { left: MAX_HEALTH_COMPONENTS });
  const files = m.effectiveConfig?.configMap?.configMap;
  if (m.effectiveConfig) {
    const out: Record<string, OpampConfigFile> = {};
    for (const [name, f] of Object.entries(files ?? {})) {
      out[name] = { body: Buffer.from(f.body ?? new Uint8Array(0)), contentType: f.contentType ?? '' };
    }
    msg.effectiveConfig = out;
  }
  const rcs = m.remoteConfigStatus;
  if (rcs) {
    msg.remoteConfigStatus = {
      hash: rcs.lastRemoteConfigHash ?? new Uint8Array(0),
      status: REMOTE_CONFIG_STATES[rcs.status ?? 0] ?? 'UNSET',
      errorMessage: rcs.errorMessage ?? '',
    };
  }
  return msg;
}

export interface EncodeOptions {
  /** opamp-go attaches an empty custom_capabilities to every HTTP answer (and the first on WebSocket). */
  customCapabilities: boolean;
}

/** The ServerToAgent for a reply; instance_uid is the request's (opamp-go fills it when left empty). */
export function encodeServerToAgent(instanceUid: Uint8Array, reply: OpampReply, opts: EncodeOptions): Uint8Array {
  const out: opamp.proto.v1.IServerToAgent = { instanceUid };
  if (reply.error) {
    out.errorResponse = { type: ERROR_TYPES[reply.error.type], errorMessage: reply.error.message };
  } else {
    if (reply.reportFullState) out.flags = FLAG_REPORT_FULL_STATE;
    if (reply.capabilities) out.capabilities = reply.capabilities.reduce((m, c) => m | SERVER_CAPABILITY_BITS[c], 0);
    if (reply.newInstanceUid) out.agentIdentification = { newInstanceUid: reply.newInstanceUid };
    if (reply.heartbeatIntervalSeconds !== undefined) {
      // The interval alone: no endpoint, headers or TLS. It goes only to Collectors that do not accept
      // connection settings (fleet/opamp.ts), which apply the interval (ReportsHeartbeat) and nothing else.
      const hash = createHash('sha256').update(`heartbeat_interval_seconds=${reply.heartbeatIntervalSeconds}`).digest();
      out.connectionSettings = { hash, opamp: { heartbeatIntervalSeconds: reply.heartbeatIntervalSeconds } };
    }
    if (reply.remoteConfig) {
      out.remoteConfig = {
        config: { configMap: { [REMOTE_CONFIG_FILE]: { body: Buffer.from(reply.remoteConfig.body, 'utf8'), contentType: 'text/yaml' } } },
        configHash: reply.remoteConfig.hash,
      };
    }
  }
  if (opts.customCapabilities) out.customCapabilities = {};
  return pb().ServerToAgent.encode(out).finish();
}
