// The V2 control protocol client: two independent streams to Elastic Agent over mTLS. CheckinV2 reports
// the units' observed state (at once on a change, and at least every 25 s) and receives the expected
// units; Actions answers the agent's requests. Each stream reconnects on its own with upstream's backoff
// (1 s, doubling up to 30 s while attempts fail fast); unit state survives reconnects.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { sleep } from '../util/backoff';
import { jsonEqual } from '../util/json-equal';
import { BUILD_TIME, COMMIT } from '../version';
import { proto } from './generated/control';
import { grpcTarget } from './startup';
import { toStruct } from './struct';
import { ChunkAssembler, reconcile, unitKey, type Unit, type UnitChanges, type UnitKey } from './units';

const HEARTBEAT_MS = 25_000;

export interface DiagnosticHook {
  name: string;
  filename: string;
  description: string;
  contentType: string;
  /** Runs only when the request's additional_metrics names this tag. */
  optionalTag?: string;
  collect: () => Promise<Buffer | string> | Buffer | string;
}

export interface ControlHandlers {
  /** Units were added, changed or removed (also called when only agent info or idx values changed). */
  onChange(changes: UnitChanges, expected: proto.CheckinExpected): void;
}

export interface ControlClientOptions {
  /** Waits `ms` or until `signal` aborts (the reconnect wait); tests pass one they end by hand. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

type Bidi<Req, Res> = grpc.ClientDuplexStream<Req, Res>;

const encodeObserved = (m: proto.ICheckinObserved): Buffer => Buffer.from(proto.CheckinObserved.encode(m).finish());
const decodeObserved = (b: Buffer): proto.CheckinObserved => proto.CheckinObserved.decode(b);
const encodeExpected = (m: proto.ICheckinExpected): Buffer => Buffer.from(proto.CheckinExpected.encode(m).finish());
const decodeExpected = (b: Buffer): proto.CheckinExpected => proto.CheckinExpected.decode(b);
const encodeResponse = (m: proto.IActionResponse): Buffer => Buffer.from(proto.ActionResponse.encode(m).finish());
const decodeResponse = (b: Buffer): proto.ActionResponse => proto.ActionResponse.decode(b);
const encodeRequest = (m: proto.IActionRequest): Buffer => Buffer.from(proto.ActionRequest.encode(m).finish());
const decodeRequest = (b: Buffer): proto.ActionRequest => proto.ActionRequest.decode(b);

/** Serializers for both directions, shared with the test agent. */
export const wire = { encodeObserved, decodeObserved, encodeExpected, decodeExpected, encodeResponse, decodeResponse, encodeRequest, decodeRequest };

/** Reconnects with upstream's rule: wait ≥ 1 s from the last attempt's start; double while attempts fail within 1 s. */
class Reconnect {
  private interval = 1000;
  private started = 0;

  begin(): void {
    this.started = Date.now();
  }

  wait(): number {
    const lasted = Date.now() - this.started;
    this.interval = lasted < 1000 ? Math.min(this.interval * 2, 30_000) : 1000;
    return Math.max(0, this.started + this.interval - Date.now());
  }
}

export class ControlClient {
  readonly units = new Map<UnitKey, Unit>();
  agentInfo: proto.IAgentInfo | undefined;
  featuresIdx = 0;
  componentIdx = 0;
  component: proto.IComponent | undefined;
  private readonly client: grpc.Client;
  private checkin: Bidi<proto.ICheckinObserved, proto.CheckinExpected> | undefined;
  private actions: Bidi<proto.IActionResponse, proto.ActionRequest> | undefined;
  private firstOnStream = true;
  private sendQueued = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly pendingResponses: proto.IActionResponse[] = [];
  private readonly diagnostics: DiagnosticHook[] = [];
  private readonly loops: Promise<void>[] = [];
  /** Aborted by stop(): ends a reconnect wait at once. */
  private readonly stopping = new AbortController();
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  constructor(private readonly info: proto.StartUpInfo, private readonly handlers: ControlHandlers, private readonly log: Logger, opts: ControlClientOptions = {}) {
    this.sleep = opts.sleep ?? sleep;
    const max = info.maxMessageSize > 0 ? info.maxMessageSize : 4 * 1024 * 1024;
    const creds = grpc.credentials.createSsl(Buffer.from(info.caCert), Buffer.from(info.peerKey), Buffer.from(info.peerCert));
    this.client = new grpc.Client(grpcTarget(info.addr), creds, {
      // The agent picks its certificate by SNI: the name must be the component's server_name.
      'grpc.ssl_target_name_override': info.serverName,
      'grpc.default_authority': info.serverName,
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
    });
    if (info.agentInfo) this.agentInfo = info.agentInfo;
  }

  start(): void {
    this.loops.push(this.loop('CheckinV2', () => this.runCheckin()), this.loop('Actions', () => this.runActions()));
    this.heartbeat = setInterval(() => this.sendObserved(), HEARTBEAT_MS);
  }

  /**
   * Ends both streams and waits for their loops. A loop may be in a reconnect wait (up to 30 s while the
   * agent is away): that wait ends now, or a SIGTERM would outlast the process's 20 s exit timer.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.checkin?.end();
    this.actions?.end();
    this.checkin?.cancel();
    this.actions?.cancel();
    this.client.close();
    await Promise.allSettled(this.loops);
  }

  registerDiagnostic(hook: DiagnosticHook): void {
    this.diagnostics.push(hook);
  }

  /** Sets what a unit reports; the agent hears of it at once. */
  setState(unit: Unit, state: proto.State, message: string, payload?: Record<string, unknown>): void {
    const o = unit.observed;
    if (o.state === state && o.message === message && jsonEqual(o.payload, payload)) return;
    unit.observed = payload ? { state, message, payload } : { state, message };
    this.queueObserved();
  }

  /** Coalesces bursts of changes into one observed message. */
  queueObserved(): void {
    if (this.sendQueued) return;
    this.sendQueued = true;
    setImmediate(() => {
      this.sendQueued = false;
      this.sendObserved();
    });
  }

  private observed(): proto.ICheckinObserved {
    const msg: proto.ICheckinObserved = {
      token: this.info.token,
      units: [...this.units.values()].map((u) => ({
        id: u.id, type: u.type, configStateIdx: u.configIdx, state: u.observed.state, message: u.observed.message,
        ...(u.observed.payload ? { payload: toStruct(u.observed.payload) } : {}),
      })),
      featuresIdx: this.featuresIdx,
      componentIdx: this.componentIdx,
    };
    if (this.firstOnStream) {
      msg.versionInfo = { name: 'fleet-server', meta: { commit: COMMIT, build_time: BUILD_TIME }, buildHash: COMMIT };
      // We reassemble chunked expected messages, so the agent may chunk.
      msg.supports = [proto.ConnectionSupports.CheckinChunking];
    }
    return msg;
  }

  private sendObserved(): void {
    const call = this.checkin;
    if (!call || this.stopped) return;
    const msg = this.observed();
    this.firstOnStream = false;
    call.write(msg);
  }

  private async loop(name: string, run: () => Promise<void>): Promise<void> {
    const reconnect = new Reconnect();
    while (!this.stopped) {
      reconnect.begin();
      try {
        await run();
      } catch (err) {
        if (!this.stopped) this.log.warn({ err: (err as Error).message, stream: name }, 'control protocol stream failed; reconnecting');
      }
      if (this.stopped) return;
      await this.sleep(reconnect.wait(), this.stopping.signal);
    }
  }

  /** Opens one bidi stream; settles when the agent ends it (resolve) or it fails (reject). */
  private stream<Req, Res>(path: string, encode: (m: Req) => Buffer, decode: (b: Buffer) => Res,
    attach: (call: Bidi<Req, Res> | undefined) => void, onData: (m: Res) => void, opened: (call: Bidi<Req, Res>) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client.makeBidiStreamRequest(path, encode, decode);
      attach(call);
      call.on('data', onData);
      call.on('error', (err) => {
        attach(undefined);
        reject(err);
      });
      call.on('end', () => {
        attach(undefined);
        resolve();
      });
      opened(call);
    });
  }

  private runCheckin(): Promise<void> {
    const chunks = new ChunkAssembler();
    return this.stream('/proto.ElasticAgent/CheckinV2', encodeObserved, decodeExpected, (c) => (this.checkin = c), (m) => {
      const whole = chunks.push(m);
      if (whole) this.onExpected(whole);
    }, () => {
      // The component speaks first on every new stream, with its version info again.
      this.firstOnStream = true;
      this.sendObserved();
    });
  }

  private onExpected(e: proto.CheckinExpected): void {
    let changed = false;
    if (e.agentInfo) this.agentInfo = e.agentInfo;
    const fIdx = Number(e.featuresIdx ?? 0);
    const cIdx = Number(e.componentIdx ?? 0);
    if (fIdx !== this.featuresIdx || cIdx !== this.componentIdx) changed = true;
    this.featuresIdx = fIdx;
    this.componentIdx = cIdx;
    if (e.component) this.component = e.component;
    const changes = reconcile(this.units, e.units);
    if (changes.added.length || changes.removed.length || changes.modified.some((m) => m.config)) changed = true;
    this.handlers.onChange(changes, e);
    // Echo adopted idx values and unit changes; identical repeats (the agent repeats while unsettled) send nothing.
    if (changed) this.queueObserved();
  }

  private runActions(): Promise<void> {
    return this.stream('/proto.ElasticAgent/Actions', encodeResponse, decodeRequest, (c) => (this.actions = c), (req) => void this.answer(req), (call) => {
      call.write({ token: this.info.token, id: 'init', status: proto.ActionResponse.Status.SUCCESS, result: Buffer.from('{}') });
      // Answers that could not be sent before the stream dropped go now.
      for (const r of this.pendingResponses.splice(0)) call.write(r);
    });
  }

  private async answer(req: proto.ActionRequest): Promise<void> {
    const respond = (status: proto.ActionResponse.Status, result: unknown, diagnostic?: proto.IActionDiagnosticUnitResult[]): void => {
      const msg: proto.IActionResponse = {
        token: this.info.token, id: req.id, status, result: result === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(result)),
        ...(diagnostic ? { diagnostic } : {}),
      };
      if (this.actions) this.actions.write(msg);
      else this.pendingResponses.push(msg);
    };
    const failed = (error: string): void => respond(proto.ActionResponse.Status.FAILED, { error });
    if (req.type === proto.ActionRequest.Type.DIAGNOSTICS) {
      const level = req.level ?? proto.ActionRequest.Level.ALL;
      if (level === proto.ActionRequest.Level.UNIT && !this.units.has(unitKey(req.unitId, req.unitType))) {
        failed('action unit not found');
        return;
      }
      let params: { additional_metrics?: string[] } = {};
      try {
        params = req.params.length ? JSON.parse(Buffer.from(req.params).toString()) as typeof params : {};
      } catch {
        params = {};
      }
      // Fleet Server's hooks are component-level; a unit-level request has none to run.
      const hooks = level === proto.ActionRequest.Level.UNIT ? []
        : this.diagnostics.filter((h) => !h.optionalTag || (params.additional_metrics ?? []).includes(h.optionalTag));
      const now = Date.now();
      const results = await Promise.all(hooks.map(async (h): Promise<proto.IActionDiagnosticUnitResult> => {
        let content: Buffer;
        try {
          const c = await h.collect();
          content = typeof c === 'string' ? Buffer.from(c) : c;
        } catch (err) {
          content = Buffer.from(`error collecting ${h.name}: ${(err as Error).message}`);
        }
        return {
          name: h.name, filename: h.filename, description: h.description, contentType: h.contentType, content,
          generated: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
        };
      }));
      respond(proto.ActionResponse.Status.SUCCESS, undefined, results);
      return;
    }
    if (req.type === proto.ActionRequest.Type.CUSTOM) {
      // Fleet Server registers no custom actions.
      failed(this.units.has(unitKey(req.unitId, req.unitType)) ? 'action undefined' : 'action unit not found');
      return;
    }
    failed('action type unknown');
  }
}
