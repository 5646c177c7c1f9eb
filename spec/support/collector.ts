// A simulated OpenTelemetry Collector speaking OpAMP over plain HTTP as the opamp extension does
// (opamp-go client): AgentToServer messages built with the tests' own protobuf writer from the field
// numbers in the facts, sequence numbers counted, the server-assigned id adopted.
import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request, type Response } from './http';
import { pbAll, pbFields, pbGet, PbWriter } from './protowire';
import { WsClient, type UpgradeRefusal } from './ws-client';

export const CAP = {
  ReportsStatus: 0x1, AcceptsRemoteConfig: 0x2, ReportsEffectiveConfig: 0x4, ReportsOwnMetrics: 0x40,
  AcceptsOpAMPConnectionSettings: 0x100, ReportsHealth: 0x800, ReportsRemoteConfig: 0x1000, ReportsHeartbeat: 0x2000,
} as const;
/** What the contrib opamp extension declares by default (no AcceptsRemoteConfig). */
export const EXTENSION_CAPABILITIES = CAP.ReportsStatus | CAP.ReportsEffectiveConfig | CAP.ReportsHealth;

export type AttrValue = string | number | boolean | Buffer | AttrValue[] | { [k: string]: AttrValue };

export interface Health {
  healthy: boolean;
  status?: string;
  lastError?: string;
  startTimeUnixNano?: bigint;
  statusTimeUnixNano?: bigint;
  components?: Record<string, Health>;
}

export interface Report {
  identifying?: Record<string, AttrValue>;
  nonIdentifying?: Record<string, AttrValue>;
  health?: Health;
  /** config_map[""] as text/yaml. */
  effectiveConfig?: string;
  remoteConfigStatus?: { hash: Buffer; status: 'UNSET' | 'APPLIED' | 'APPLYING' | 'FAILED'; errorMessage?: string };
  disconnect?: boolean;
  requestInstanceUid?: boolean;
}

export interface ServerToAgent {
  instanceUid: Buffer;
  error?: { type: number; message: string };
  flags: number;
  capabilities: number;
  newInstanceUid?: Buffer;
  hasCustomCapabilities: boolean;
  remoteConfig?: { files: Record<string, { body: string; contentType: string }>; hash: Buffer };
  heartbeatIntervalSeconds?: number;
}

const RC_STATUS = { UNSET: 0, APPLIED: 1, APPLYING: 2, FAILED: 3 };

function anyValue(v: AttrValue): PbWriter {
  const w = new PbWriter();
  if (typeof v === 'string') return w.bytes(1, v);
  if (typeof v === 'boolean') return w.uint(2, v ? 1 : 0, true);
  if (typeof v === 'number') return Number.isInteger(v) ? w.uint(3, BigInt.asUintN(64, BigInt(v)), true) : w.double(4, v);
  if (Buffer.isBuffer(v)) return w.bytes(7, v);
  if (Array.isArray(v)) {
    const arr = new PbWriter();
    for (const x of v) arr.message(1, anyValue(x));
    return w.message(5, arr);
  }
  const kv = new PbWriter();
  for (const [k, x] of Object.entries(v)) kv.message(1, keyValue(k, x));
  return w.message(6, kv);
}

function keyValue(k: string, v: AttrValue): PbWriter {
  return new PbWriter().string(1, k).message(2, anyValue(v));
}

function health(h: Health): PbWriter {
  const w = new PbWriter().bool(1, h.healthy).fixed64(2, h.startTimeUnixNano ?? 0n).string(3, h.lastError ?? '')
    .string(4, h.status ?? '').fixed64(5, h.statusTimeUnixNano ?? 0n);
  for (const [k, c] of Object.entries(h.components ?? {})) w.message(6, new PbWriter().string(1, k).message(2, health(c)));
  return w;
}

/** An AgentToServer message's bytes. */
export function agentToServer(uid: Uint8Array, seq: number, capabilities: number, r: Report): Buffer {
  const w = new PbWriter().bytes(1, uid).uint(2, seq);
  if (r.identifying || r.nonIdentifying) {
    const d = new PbWriter();
    for (const [k, v] of Object.entries(r.identifying ?? {})) d.message(1, keyValue(k, v));
    for (const [k, v] of Object.entries(r.nonIdentifying ?? {})) d.message(2, keyValue(k, v));
    w.message(3, d);
  }
  w.uint(4, capabilities);
  if (r.health) w.message(5, health(r.health));
  if (r.effectiveConfig !== undefined) {
    const file = new PbWriter().bytes(1, r.effectiveConfig).string(2, 'text/yaml');
    const map = new PbWriter().message(1, new PbWriter().string(1, '').message(2, file));
    w.message(6, new PbWriter().message(1, map));
  }
  if (r.remoteConfigStatus) {
    const s = r.remoteConfigStatus;
    w.message(7, new PbWriter().bytes(1, s.hash).uint(2, RC_STATUS[s.status]).string(3, s.errorMessage ?? ''));
  }
  if (r.disconnect) w.message(9, new PbWriter());
  w.uint(10, r.requestInstanceUid ? 1 : 0);
  return w.finish();
}

function configMap(buf: Buffer): Record<string, { body: string; contentType: string }> {
  const out: Record<string, { body: string; contentType: string }> = {};
  for (const entry of pbAll(pbFields(buf), 1)) {
    const e = pbFields(entry as Buffer);
    const file = pbFields((pbGet(e, 2) as Buffer | undefined) ?? Buffer.alloc(0));
    out[((pbGet(e, 1) as Buffer | undefined) ?? Buffer.alloc(0)).toString()] = {
      body: ((pbGet(file, 1) as Buffer | undefined) ?? Buffer.alloc(0)).toString(),
      contentType: ((pbGet(file, 2) as Buffer | undefined) ?? Buffer.alloc(0)).toString(),
    };
  }
  return out;
}

/** Decodes a ServerToAgent by the facts' field numbers. */
export function serverToAgent(buf: Buffer): ServerToAgent {
  const f = pbFields(buf);
  const out: ServerToAgent = {
    instanceUid: (pbGet(f, 1) as Buffer | undefined) ?? Buffer.alloc(0),
    flags: Number((pbGet(f, 6) as bigint | undefined) ?? 0n),
    capabilities: Number((pbGet(f, 7) as bigint | undefined) ?? 0n),
    hasCustomCapabilities: pbGet(f, 10) !== undefined,
  };
  const err = pbGet(f, 2) as Buffer | undefined;
  if (err) {
    const e = pbFields(err);
    out.error = { type: Number((pbGet(e, 1) as bigint | undefined) ?? 0n), message: ((pbGet(e, 2) as Buffer | undefined) ?? Buffer.alloc(0)).toString() };
  }
  const ident = pbGet(f, 8) as Buffer | undefined;
  if (ident) out.newInstanceUid = pbGet(pbFields(ident), 1) as Buffer;
  const rc = pbGet(f, 3) as Buffer | undefined;
  if (rc) {
    const r = pbFields(rc);
    out.remoteConfig = { files: configMap((pbGet(r, 1) as Buffer | undefined) ?? Buffer.alloc(0)), hash: (pbGet(r, 2) as Buffer | undefined) ?? Buffer.alloc(0) };
  }
  const cs = pbGet(f, 4) as Buffer | undefined;
  if (cs) {
    const op = pbGet(pbFields(cs), 2) as Buffer | undefined;
    if (op) out.heartbeatIntervalSeconds = Number((pbGet(pbFields(op), 4) as bigint | undefined) ?? 0n);
  }
  return out;
}

export function uuidText(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A random version 7 UUID's bytes. */
export function newInstanceUid(): Buffer {
  const b = randomBytes(16);
  b.writeUIntBE(Date.now(), 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

export interface SendOptions {
  /** Content-Encoding: gzip on the request. */
  gzip?: boolean;
  /** Accept-Encoding header value (default "gzip", as Go's client sends it). */
  acceptEncoding?: string;
  /** The message's bytes instead of the report's. */
  raw?: Buffer;
  headers?: Record<string, string>;
}

export interface HttpExchange {
  res: Response;
  reply?: ServerToAgent;
}

export class SimCollector {
  uid: Buffer = newInstanceUid();
  /** The next sequence_num. */
  seq = 0;

  constructor(private readonly url: string, private readonly token: string, public capabilities: number = EXTENSION_CAPABILITIES) {}

  get id(): string {
    return uuidText(this.uid);
  }

  /** The contrib extension's description of itself. */
  static description(name = 'otelcol-contrib', version = '0.120.0'): Pick<Report, 'identifying' | 'nonIdentifying'> {
    return {
      identifying: { 'service.instance.id': 'x', 'service.name': name, 'service.version': version },
      nonIdentifying: { 'host.arch': 'amd64', 'host.name': 'collector-host', 'os.description': 'Ubuntu 24.04', 'os.type': 'linux' },
    };
  }

  /** POSTs one message; adopts a server-assigned instance id. */
  async send(report: Report = {}, opts: SendOptions = {}): Promise<HttpExchange> {
    const msg = opts.raw ?? agentToServer(this.uid, this.seq, this.capabilities, report);
    this.seq++;
    const headers: Record<string, string> = {
      'Content-Type': 'application/x-protobuf',
      'Accept-Encoding': opts.acceptEncoding ?? 'gzip',
      'OpAMP-Instance-UID': this.id,
      Authorization: `ApiKey ${this.token}`,
      ...opts.headers,
    };
    if (opts.gzip) headers['Content-Encoding'] = 'gzip';
    const res = await request(`${this.url}/v1/opamp`, { method: 'POST', headers, body: opts.gzip ? gzipSync(msg) : msg });
    if (res.status !== 200) return { res };
    const reply = serverToAgent(res.body);
    if (reply.newInstanceUid?.length === 16) this.uid = Buffer.from(reply.newInstanceUid);
    return { res, reply };
  }
}

/** The same Collector over OpAMP's WebSocket transport: frames of a 0 header byte and the message. */
export class WsCollector extends SimCollector {
  ws!: WsClient;

  /** Connects; the refusal when the server does not switch protocols. */
  async connect(url: string, token: string, headers: Record<string, string> = {}): Promise<UpgradeRefusal | undefined> {
    const r = await WsClient.connect(`${url}/v1/opamp`, { Authorization: `ApiKey ${token}`, ...headers });
    if (!(r instanceof WsClient)) return r;
    this.ws = r;
    return undefined;
  }

  sendWs(report: Report = {}): void {
    const msg = agentToServer(this.uid, this.seq, this.capabilities, report);
    this.seq++;
    this.ws.sendBinary(Buffer.concat([Buffer.from([0]), msg]));
  }

  /** The next ServerToAgent (its header byte checked); adopts a server-assigned id. */
  async receive(timeoutMs = 5000): Promise<ServerToAgent> {
    const f = await this.ws.next(timeoutMs);
    if (f.opcode !== 0x2) throw new Error(`expected a binary frame, got opcode ${f.opcode}`);
    if (f.payload[0] !== 0) throw new Error('missing the 0 header byte');
    const reply = serverToAgent(f.payload.subarray(1));
    if (reply.newInstanceUid?.length === 16) this.uid = Buffer.from(reply.newInstanceUid);
    return reply;
  }
}

/** The raw body of a gzip answer, for checking the encoding itself. */
export function gunzipped(b: Buffer): Buffer {
  return gunzipSync(b);
}
