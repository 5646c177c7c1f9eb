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
  type OpampDescription, type OpampHealth, type RemoteConfig,
} from './opamp-document';
import type { ParsedPolicy } from './parsed-policy';

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
  remoteConfigStatus?: { hash: Uint8Array; status: RemoteConfigState; errorMessage: string };
}

export type RemoteConfigState = 'UNSET' | 'APPLIED' | 'APPLYING' | 'FAILED';

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
  /** The configuration the agent should run (its policy's `opamp` section), when it does not run it yet. */
  remoteConfig?: { body: string; hash: Uint8Array };
  /** How often the agent should report (OpAMPConnectionSettings.heartbeat_interval_seconds). */
  heartbeatIntervalSeconds?: number;
}

/** A connected agent the server can push to (WebSocket); `instanceUid` is the id the agent uses. */
export type Push = (instanceUid: Uint8Array, reply: OpampReply) => void;

interface Session {
  push: Push;
  policyId: string;
  acceptsRemoteConfig: boolean;
}

/** What the server remembers per instance between messages (the stored document lags by a flush interval). */
interface Seen {
  sequenceNum: number;
  /**
   * The status the last health gave (a report without health keeps it). Only this: the health tree is
   * the client's, any size, and 100,000 of them would be held.
   */
  status: { status: string; message: string };
  /** The remote configuration hash (hex) the agent last reported. */
  remoteHash: string | undefined;
  /** The heartbeat interval was offered to this instance. */
  heartbeatOffered: boolean;
}

const SERVER_CAPABILITIES: ServerCapability[] = ['AcceptsStatus', 'AcceptsEffectiveConfig'];
/** Instances remembered between messages, and the memory they may take (their strings are the clients'). */
const SEEN_MAX = 100_000;
const SEEN_MAX_BYTES = 64 * 1024 * 1024;
/** An entry with its key (a UUID), the map's slot and the record, before its strings. */
const SEEN_ENTRY_BYTES = 300;
/**
 * Instance ids one connection is pushed to under: a Collector uses one (two around a server-assigned
 * id); past this the oldest is forgotten, so a client cycling ids cannot grow the session map.
 */
const MAX_IDS_PER_CONNECTION = 8;
/** Re-enrollment leaves these reasons as they are (upstream). */
const KEEP_REASONS = new Set(['orphaned', 'reenrolled']);

export class OpampService {
  private readonly seen = new LruCache<string, Seen>(SEEN_MAX, {
    maxWeight: SEEN_MAX_BYTES,
    weigh: (s) => SEEN_ENTRY_BYTES + 2 * (s.status.message.length + s.status.status.length + (s.remoteHash?.length ?? 0)),
  });
  /** Connected agents by id (WebSocket sessions), for pushing a new configuration at once. */
  private readonly sessions = new Map<string, Session>();
  /** Each connection's ids in `sessions` (those whose session is its), so that its close is O(its ids). */
  private readonly idsOf = new Map<Push, Set<string>>();
  /** Connections that closed: a message of theirs still being handled registers nothing. */
  private readonly detached = new WeakSet<Push>();

  /** `latestPolicy`: the current revision of a policy (the policy monitor's). */
  constructor(private readonly store: Store, private readonly bookkeeper: Bookkeeper,
    private readonly latestPolicy: (policyId: string) => Promise<ParsedPolicy | undefined>, private readonly log: Logger,
    private readonly clock: Clock = systemClock, private readonly heartbeatSeconds = 30) {}

  /**
   * A new policy revision: every connected agent of that policy that accepts remote configuration and
   * does not run the new one gets it now (upstream never sends configuration).
   */
  onRevision(policy: ParsedPolicy): void {
    const desired = policy.opamp;
    if (!desired) return;
    for (const [id, s] of this.sessions) {
      if (s.policyId !== policy.policyId || !s.acceptsRemoteConfig) continue;
      if (this.seen.get(id)?.remoteHash === desired.hashHex) continue;
      s.push(uuidBytes(id)!, { remoteConfig: { body: desired.body, hash: desired.hash } });
    }
  }

  /** Forgets a connection's pushes (it closed). */
  detach(push: Push): void {
    this.detached.add(push);
    const ids = this.idsOf.get(push);
    if (!ids) return;
    this.idsOf.delete(push);
    for (const id of ids) this.sessions.delete(id);
  }

  private register(id: string, session: Session): void {
    const { push } = session;
    // A closed connection would stay in the map for good, and could take the place of the session the
    // same Collector has since opened on a new connection.
    if (this.detached.has(push)) return;
    const prev = this.sessions.get(id);
    if (prev && prev.push !== push) this.idsOf.get(prev.push)?.delete(id);
    this.sessions.set(id, session);
    let ids = this.idsOf.get(push);
    if (!ids) this.idsOf.set(push, (ids = new Set()));
    ids.delete(id);
    ids.add(id);
    if (ids.size > MAX_IDS_PER_CONNECTION) {
      const oldest = ids.values().next().value!;
      ids.delete(oldest);
      this.sessions.delete(oldest);
    }
  }

  private unregister(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    this.idsOf.get(s.push)?.delete(id);
  }

  /** `push`: the connection can carry unsolicited messages (WebSocket); it is remembered under the agent's id. */
  async handle(enrollment: EnrollmentRecord, msg: OpampMessage, push?: Push): Promise<OpampReply> {
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
      this.unregister(uid);
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
    const status = msg.health ? statusOf(msg.health) : prev?.status ?? statusOf(healthFromDocument(stored?.['health'] as JsonObject | undefined));
    const remoteHash = msg.remoteConfigStatus ? Buffer.from(msg.remoteConfigStatus.hash).toString('hex')
      : prev?.remoteHash ?? storedRemoteHash(stored);
    const reportFullState = enrolled || msg.sequenceNum !== expected;
    // Offered once per instance (again after a full state report: the agent may have restarted).
    const offerHeartbeat = this.heartbeatSeconds > 0 && msg.capabilities.includes('ReportsHeartbeat')
      && msg.capabilities.includes('AcceptsOpAMPConnectionSettings') && (reportFullState || !prev?.heartbeatOffered);
    this.seen.set(id, { sequenceNum: msg.sequenceNum, status, remoteHash, heartbeatOffered: offerHeartbeat || prev?.heartbeatOffered === true });
    this.bookkeeper.enqueue(id, this.checkinRecord(id, msg, status, stored));
    const reply: OpampReply = {
      reportFullState,
      capabilities: offerHeartbeat ? [...SERVER_CAPABILITIES, 'OffersConnectionSettings'] : SERVER_CAPABILITIES,
      ...(msg.requestInstanceUid ? { newInstanceUid: uuidBytes(id)! } : {}),
      ...(offerHeartbeat ? { heartbeatIntervalSeconds: this.heartbeatSeconds } : {}),
    };
    const policyId = stored?.policy_id ?? enrollment.policyId;
    const acceptsRemoteConfig = msg.capabilities.includes('AcceptsRemoteConfig');
    if (push) this.register(id, { push, policyId, acceptsRemoteConfig });
    if (acceptsRemoteConfig) {
      reply.capabilities = [...reply.capabilities!, 'OffersRemoteConfig'];
      const desired = await this.desiredConfig(policyId);
      if (desired && desired.hashHex !== remoteHash) reply.remoteConfig = { body: desired.body, hash: desired.hash };
    }
    return reply;
  }

  private async desiredConfig(policyId: string): Promise<RemoteConfig | undefined> {
    try {
      return (await this.latestPolicy(policyId))?.opamp;
    } catch (err) {
      // The status was recorded; the configuration goes with a later message.
      this.log.warn({ err, 'fleet.policy.id': policyId }, 'OpAMP remote configuration: policy unavailable');
      return undefined;
    }
  }

  /** Creates the agent's document; returns its id (the instance's, or a new one when the agent asked for it). */
  private async enroll(uid: string, found: Hit<AgentDoc> | undefined, enrollment: EnrollmentRecord, msg: OpampMessage): Promise<string> {
    const now = rfc3339(this.clock.now());
    const id = msg.requestInstanceUid ? uuidV7(this.clock.now()) : uid;
    const doc = enrollmentDocument(id, enrollment, msg.description, now);
    if (!(await this.store.createAgent(id, doc)) && !(await this.sameEnrollment(id, enrollment))) throw new Error(`agent ${id} exists already`);
    if (found && !KEEP_REASONS.has(found._source.audit_unenrolled_reason ?? '')) {
      await this.store.updateAgent({ id: uid, doc: { updated_at: now, audit_unenrolled_time: now, audit_unenrolled_reason: 'reenrolled' } });
    }
    this.log.info({ 'fleet.agent.id': id, 'fleet.policy.id': enrollment.policyId }, 'OpAMP agent enrolled');
    return id;
  }

  /**
   * After a create met 409: whether the stored document is this instance's OpAMP enrolment under the
   * same policy — our own create, landed before a gateway error and retried (or the same Collector's
   * concurrent message). Enrollment treats the same 409 as success (upstream does too); failing here
   * would have the agent ask again and, with RequestInstanceUid, leave the stored agent orphaned.
   */
  private async sameEnrollment(id: string, enrollment: EnrollmentRecord): Promise<boolean> {
    const stored = (await this.store.getAgent(id))?._source;
    return stored !== undefined && stored.type === 'OPAMP' && stored.agent?.id === id && stored.policy_id === enrollment.policyId;
  }

  private checkinRecord(id: string, msg: OpampMessage, status: Seen['status'], stored: AgentDoc | undefined): CheckinRecord {
    const rec: CheckinRecord = { ...status, sequenceNum: msg.sequenceNum };
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
    const rcs = msg.remoteConfigStatus;
    if (rcs) {
      rec.remoteConfigStatus = {
        status: rcs.status, last_remote_config_hash: Buffer.from(rcs.hash).toString('hex'),
        ...(rcs.errorMessage ? { error_message: rcs.errorMessage } : {}),
      };
    }
    if (stored?.audit_unenrolled_reason || stored?.unenrolled_at) rec.clearAudit = true;
    return rec;
  }
}

function storedRemoteHash(doc: AgentDoc | undefined): string | undefined {
  const s = doc?.['remote_config_status'];
  if (!s || typeof s !== 'object') return undefined;
  const h = (s as Record<string, unknown>)['last_remote_config_hash'];
  return typeof h === 'string' ? h : undefined;
}
