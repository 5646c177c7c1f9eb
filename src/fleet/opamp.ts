// OpAMP agents (OpenTelemetry Collectors): every AgentToServer message, decoded by the edge into plain
// values, is enrolled if its instance is unknown and then recorded as a check-in in the same batched
// bookkeeping as Elastic Agents (upstream's handleOpAMP.go). This module knows no protobuf or transport.
import type { Logger } from 'pino';
import type { AgentDoc, Hit, JsonObject } from '../store/documents';
import type { Store } from '../store/port';
import { systemClock, type Clock } from '../util/clock';
import { LruCache } from '../util/lru';
import { rfc3339 } from '../util/time';
import { uuidBytes, uuidText, uuidV7 } from '../util/uuid';
import type { Bookkeeper, CheckinRecord } from './bookkeeping';
import type { EnrollmentRecord } from './enroll';
import {
  effectiveConfigDocument, enrollmentDocument, healthDocument, healthFromDocument, statusOf,
  type OpampDescription, type OpampHealth,
} from './opamp-document';

export type { OpampDescription, OpampHealth } from './opamp-document';

/** A configuration file as OpAMP carries it. */
export interface OpampConfigFile {
  body: Buffer;
  contentType: string;
}

/** An AgentToServer message as plain values; sub-messages the agent left out are undefined. */
export interface OpampMessage {
  instanceUid: Uint8Array;
  sequenceNum: number;
  /** AgentCapabilities by name (ReportsStatus, AcceptsRemoteConfig, …). */
  capabilities: string[];
  /** The RequestInstanceUid flag. */
  requestInstanceUid: boolean;
  description?: OpampDescription;
  health?: OpampHealth;
  /** The effective configuration's files by name (a Collector uses ""). */
  effectiveConfig?: Record<string, OpampConfigFile>;
  disconnect: boolean;
}

/** Server capabilities this server has, by name. */
export type ServerCapability = 'AcceptsStatus' | 'AcceptsEffectiveConfig' | 'OffersRemoteConfig' | 'OffersConnectionSettings';

/** What to answer, as plain values (the edge writes the ServerToAgent). */
export interface OpampReply {
  /** Set alone: the message could not be processed. */
  error?: { type: 'BadRequest' | 'Unavailable'; message: string };
  /** Ask the agent for a full state report (unknown to this server, or a sequence gap). */
  reportFullState?: boolean;
  capabilities?: ServerCapability[];
  /** A server-assigned instance id (after RequestInstanceUid). */
  newInstanceUid?: Uint8Array;
}

/** What the server remembers per instance between messages (the stored document lags by a flush interval). */
interface Seen {
  sequenceNum: number;
  health: OpampHealth | undefined;
}

const SERVER_CAPABILITIES: ServerCapability[] = ['AcceptsStatus', 'AcceptsEffectiveConfig'];
/** Re-enrollment leaves these reasons as they are (upstream). */
const KEEP_REASONS = new Set(['orphaned', 'reenrolled']);

export class OpampService {
  private readonly seen = new LruCache<string, Seen>(100_000);

  constructor(private readonly store: Store, private readonly bookkeeper: Bookkeeper, private readonly log: Logger,
    private readonly clock: Clock = systemClock) {}

  async handle(enrollment: EnrollmentRecord, msg: OpampMessage): Promise<OpampReply> {
    const uid = uuidText(msg.instanceUid);
    if (uid === undefined) return { error: { type: 'BadRequest', message: 'failed to parse instance_uid' } };
    let found: Hit<AgentDoc> | undefined;
    try {
      found = await this.store.getAgent(uid);
    } catch (err) {
      this.log.warn({ err, 'fleet.agent.id': uid }, 'OpAMP agent search failed');
      return { error: { type: 'Unavailable', message: 'agent search failed' } };
    }

    if (msg.disconnect) {
      if (!found || msg.requestInstanceUid) return { error: { type: 'BadRequest', message: 'agent_disconnect set on new enrollment message' } };
      this.seen.delete(uid);
      this.bookkeeper.enqueue(uid, { status: 'disconnected', message: '', sequenceNum: msg.sequenceNum });
      return {};
    }

    let id = uid;
    let enrolled = false;
    if (!found || msg.requestInstanceUid) {
      try {
        id = await this.enroll(uid, found, enrollment, msg);
      } catch (err) {
        this.log.warn({ err, 'fleet.agent.id': uid }, 'OpAMP agent enrollment failed');
        return { error: { type: 'Unavailable', message: 'failed to enroll agent' } };
      }
      enrolled = true;
    }

    const prev = enrolled ? undefined : this.seen.get(id);
    const stored = enrolled ? undefined : found!._source;
    const expected = (prev?.sequenceNum ?? stored?.sequence_num ?? -2) + 1;
    if (!enrolled && msg.sequenceNum !== expected) {
      this.log.debug({ 'fleet.agent.id': id, expected, got: msg.sequenceNum }, 'OpAMP sequence gap; asking for a full state report');
    }
    // A report without health keeps the status its last health gave (upstream would say online).
    const health = msg.health ?? prev?.health ?? healthFromDocument(stored?.['health'] as JsonObject | undefined);
    this.seen.set(id, { sequenceNum: msg.sequenceNum, health });
    this.bookkeeper.enqueue(id, this.checkinRecord(id, msg, health, stored));
    return {
      reportFullState: enrolled || msg.sequenceNum !== expected,
      capabilities: SERVER_CAPABILITIES,
      ...(msg.requestInstanceUid ? { newInstanceUid: uuidBytes(id)! } : {}),
    };
  }

  /** Creates the agent's document; returns its id (the instance's, or a new one when the agent asked for it). */
  private async enroll(uid: string, found: Hit<AgentDoc> | undefined, enrollment: EnrollmentRecord, msg: OpampMessage): Promise<string> {
    const now = rfc3339(this.clock.now());
    const id = msg.requestInstanceUid ? uuidV7(this.clock.now()) : uid;
    const doc = enrollmentDocument(id, enrollment, msg.description, now);
    if (!(await this.store.createAgent(id, doc))) throw new Error(`agent ${id} exists already`);
    if (found && !KEEP_REASONS.has(found._source.audit_unenrolled_reason ?? '')) {
      await this.store.updateAgent({ id: uid, doc: { updated_at: now, audit_unenrolled_time: now, audit_unenrolled_reason: 'reenrolled' } });
    }
    this.log.info({ 'fleet.agent.id': id, 'fleet.policy.id': enrollment.policyId }, 'OpAMP agent enrolled');
    return id;
  }

  private checkinRecord(id: string, msg: OpampMessage, health: OpampHealth | undefined, stored: AgentDoc | undefined): CheckinRecord {
    const rec: CheckinRecord = { ...statusOf(health), sequenceNum: msg.sequenceNum };
    if (msg.health) rec.health = healthDocument(msg.health);
    if (msg.capabilities.length > 0) rec.capabilities = msg.capabilities;
    const yaml = msg.effectiveConfig?.['']?.body;
    if (yaml && yaml.length > 0) {
      try {
        const config = effectiveConfigDocument(yaml.toString('utf8'));
        if (config) rec.effectiveConfig = config;
        else this.log.warn({ 'fleet.agent.id': id }, 'OpAMP effective configuration is not a YAML mapping; not stored');
      } catch (err) {
        this.log.warn({ err, 'fleet.agent.id': id }, 'OpAMP effective configuration is not valid YAML; not stored');
      }
    }
    if (stored?.audit_unenrolled_reason || stored?.unenrolled_at) rec.clearAudit = true;
    return rec;
  }
}
