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
  cutText, DESCRIPTION_FIELDS, descriptionUpdate, effectiveConfigDocument, enrollmentDocument, healthDocument, healthFromDocument,
  MAX_TEXT_BYTES, statusOf, type OpampDescription, type OpampHealth, type RemoteConfig,
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

/** Takes an enrollment slot if one is free now (a TokenBucket: enroll_limit's rate). */
export interface EnrollPacer {
  tryTake(): boolean;
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
/**
 * The most a message may have stored: a config hash (the server's are SHA-256, 32 bytes; a longer one is
 * not ours and is not kept) and an effective configuration (a large Collector's is tens of KiB; parsed,
 * it becomes many times its size in objects). The yaml library parses about 0.5 MiB a second of small
 * nodes (`[1,1,…]`, `- 1` lines) on the event loop: 1 MiB held every request for 2 s, this bound ~0.5 s.
 */
const MAX_CONFIG_HASH_BYTES = 64;
const MAX_EFFECTIVE_CONFIG_BYTES = 256 * 1024;

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
  /** An oversized effective configuration was logged at warn level (later ones at debug: a client can repeat it). */
  private oversizeLogged = false;

  /**
   * `latestPolicy`: the current revision of a policy (the policy monitor's). `enrollPacer`: consulted before
   * each new document (a new instance id), which a token holder could otherwise have written per message.
   */
  constructor(private readonly store: Store, private readonly bookkeeper: Bookkeeper,
    private readonly latestPolicy: (policyId: string) => Promise<ParsedPolicy | undefined>, private readonly log: Logger,
    private readonly clock: Clock = systemClock, private readonly heartbeatSeconds = 30,
    private readonly enrollPacer?: EnrollPacer) {}

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

  /**
   * Refreshes last_checkin for every Collector connected over WebSocket, as the check-in sweep does for
   * held polls (every checkin_timestamp): a connection the server holds, and pings when silent
   * (opamp/websocket.ts), is an agent that is online even when it sends no heartbeats. Its status is
   * the one its last health gave; an instance no longer remembered is left to its own messages.
   */
  refreshSessions(): void {
    for (const id of this.sessions.keys()) {
      const seen = this.seen.get(id);
      if (seen) this.bookkeeper.touch(id, seen.status.status, seen.status.message, { sequenceNum: seen.sequenceNum });
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
    // Before anything is written or registered, on every branch: the id is the client's to choose. A
    // document the token may not act for is left as it is; the Collector is given an id of its own under
    // the token's policy (as for RequestInstanceUid), so one moved to another policy or unenrolled can
    // come back with a new token instead of being refused for good.
    const refused = found && refusal(found._source, enrollment);
    if (refused) {
      this.log.debug({ 'fleet.agent.id': uid, 'fleet.policy.id': enrollment.policyId, reason: refused }, 'OpAMP instance id not this token\'s');
      if (msg.disconnect) return { error: { type: 'BadRequest', message: refused } };
      found = undefined;
    }
    const freshId = refused !== undefined || msg.requestInstanceUid;

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
      if (this.enrollPacer && !this.enrollPacer.tryTake()) {
        this.log.debug({ 'fleet.agent.id': uid }, 'OpAMP enrollment rate limited');
        return { error: { type: 'Unavailable', message: 'enrollment rate limited' } };
      }
      try {
        id = await this.enroll(uid, found, enrollment, msg, freshId);
      } catch (err) {
        this.log.warn({ err, 'fleet.agent.id': uid }, 'OpAMP agent enrollment failed');
        return { error: { type: 'Unavailable', message: 'failed to enroll agent' } };
      }
      enrolled = true;
    }

    const prev = enrolled ? undefined : this.seen.get(id);
    const stored = enrolled ? undefined : found!._source;
    // A description not written now is asked for again (a full state report carries it).
    const descriptionLate = stored !== undefined && msg.description !== undefined && !(await this.recordDescription(id, stored, msg.description));
    const expected = (prev?.sequenceNum ?? stored?.sequence_num ?? -2) + 1;
    if (!enrolled && msg.sequenceNum !== expected) {
      this.log.debug({ 'fleet.agent.id': id, expected, got: msg.sequenceNum }, 'OpAMP sequence gap; asking for a full state report');
    }
    // A report without health keeps the status its last health gave (upstream would say online).
    const status = msg.health ? statusOf(msg.health) : prev?.status ?? statusOf(healthFromDocument(stored?.['health'] as JsonObject | undefined));
    const reported = reportedHash(msg);
    const remoteHash = reported ?? prev?.remoteHash ?? storedRemoteHash(stored);
    const reportFullState = enrolled || msg.sequenceNum !== expected || descriptionLate;
    const offerHeartbeat = this.offersHeartbeat(id, msg, prev, push);
    this.seen.set(id, { sequenceNum: msg.sequenceNum, status, remoteHash, heartbeatOffered: offerHeartbeat || prev?.heartbeatOffered === true });
    this.bookkeeper.enqueue(id, this.checkinRecord(id, msg, status, stored, reported));
    const reply: OpampReply = {
      reportFullState,
      capabilities: offerHeartbeat ? [...SERVER_CAPABILITIES, 'OffersConnectionSettings'] : SERVER_CAPABILITIES,
      ...(id !== uid ? { newInstanceUid: uuidBytes(id)! } : {}),
      ...(offerHeartbeat ? { heartbeatIntervalSeconds: this.heartbeatSeconds } : {}),
    };
    // The token's policy (a stored document of another policy was refused above).
    const policyId = enrollment.policyId;
    const acceptsRemoteConfig = msg.capabilities.includes('AcceptsRemoteConfig');
    if (push) this.register(id, { push, policyId, acceptsRemoteConfig });
    if (acceptsRemoteConfig) {
      reply.capabilities = [...reply.capabilities!, 'OffersRemoteConfig'];
      const desired = await this.desiredConfig(policyId);
      if (desired && desired.hashHex !== remoteHash) reply.remoteConfig = { body: desired.body, hash: desired.hash };
    }
    return reply;
  }

  /**
   * Whether this answer carries the heartbeat interval (OpAMPConnectionSettings.heartbeat_interval_seconds).
   * Only to a Collector that reports heartbeats and does NOT accept OpAMP connection settings: opamp-go
   * applies the interval for ReportsHeartbeat alone, but hands an offer to an accepting client's
   * OnOpampConnectionSettings, and the contrib supervisor then reconnects with the offer's headers only
   * (its Authorization dropped) and without TLS verification when no certificate is offered. Once per
   * instance, and once per WebSocket connection of it (a reconnect may be a restarted Collector); a full
   * state report does not bring it again.
   */
  private offersHeartbeat(id: string, msg: OpampMessage, prev: Seen | undefined, push: Push | undefined): boolean {
    if (this.heartbeatSeconds <= 0 || !msg.capabilities.includes('ReportsHeartbeat')) return false;
    if (msg.capabilities.includes('AcceptsOpAMPConnectionSettings')) return false;
    const newConnection = push !== undefined && this.sessions.get(id)?.push !== push;
    return !prev?.heartbeatOffered || newConnection;
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

  /**
   * A description sent after enrolment (a new version, host name, attributes), written when it differs
   * from the stored one (upstream records it at enrolment only, so an upgraded Collector kept its old
   * version). The write is the store's at once, not the check-in batch's, so the next comparison reads
   * it; as a changed description may come with every message, writes go at enroll_limit's rate. False
   * when it was not written.
   */
  private async recordDescription(id: string, stored: AgentDoc, description: OpampDescription): Promise<boolean> {
    const doc = descriptionUpdate(id, stored, description);
    if (!doc) return true;
    if (this.enrollPacer && !this.enrollPacer.tryTake()) {
      this.log.debug({ 'fleet.agent.id': id }, 'OpAMP agent description update rate limited');
      return false;
    }
    try {
      await this.store.updateAgent({ id, doc, replace: DESCRIPTION_FIELDS });
      return true;
    } catch (err) {
      this.log.warn({ err, 'fleet.agent.id': id }, 'OpAMP agent description update failed');
      return false;
    }
  }

  /** Creates the agent's document; returns its id (the instance's, or a new one when the agent asked for it). */
  private async enroll(uid: string, found: Hit<AgentDoc> | undefined, enrollment: EnrollmentRecord, msg: OpampMessage,
    freshId: boolean): Promise<string> {
    const now = rfc3339(this.clock.now());
    const id = freshId ? uuidV7(this.clock.now()) : uid;
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

  private checkinRecord(id: string, msg: OpampMessage, status: Seen['status'], stored: AgentDoc | undefined,
    reportedHash: string | undefined): CheckinRecord {
    const rec: CheckinRecord = { ...status, sequenceNum: msg.sequenceNum };
    if (msg.health) rec.health = healthDocument(msg.health);
    if (msg.capabilities.length > 0) rec.capabilities = msg.capabilities;
    const yaml = msg.effectiveConfig?.['']?.body;
    if (yaml && yaml.length > MAX_EFFECTIVE_CONFIG_BYTES) {
      const fields = { 'fleet.agent.id': id, bytes: yaml.length, limit: MAX_EFFECTIVE_CONFIG_BYTES };
      if (this.oversizeLogged) this.log.debug(fields, 'OpAMP effective configuration too large; not stored');
      else this.log.warn(fields, 'OpAMP effective configuration too large; not stored (logged once; later ones at debug level)');
      this.oversizeLogged = true;
    } else if (yaml && yaml.length > 0) {
      try {
        const config = effectiveConfigDocument(yaml.toString('utf8'));
        if (config) rec.effectiveConfig = config;
        else this.log.warn({ 'fleet.agent.id': id }, 'OpAMP effective configuration is not a YAML mapping; not stored');
      } catch (err) {
        this.log.warn({ err, 'fleet.agent.id': id }, 'OpAMP effective configuration is not valid YAML; not stored');
      }
    }
    const rcs = msg.remoteConfigStatus;
    if (rcs && reportedHash !== undefined) {
      rec.remoteConfigStatus = {
        status: rcs.status, last_remote_config_hash: reportedHash,
        ...(rcs.errorMessage ? { error_message: cutText(rcs.errorMessage, MAX_TEXT_BYTES) } : {}),
      };
    } else if (rcs) {
      this.log.debug({ 'fleet.agent.id': id, bytes: rcs.hash.length }, 'OpAMP remote_config_status with an oversized hash; not stored');
    }
    // Upstream clears the audit fields when audit_unenrolled_reason is set, and only then (reference §4.7).
    if (stored?.audit_unenrolled_reason) rec.clearAudit = true;
    return rec;
  }
}

/**
 * Why a message for a stored document is refused: the document must be an OpAMP agent of the token's
 * policy (any enrollment token could otherwise report as, take the pushes of, and read the
 * configuration for any agent whose id it names), and active (an unenrolled Collector is not revived).
 */
function refusal(doc: AgentDoc, enrollment: EnrollmentRecord): string | undefined {
  // Upstream's first OpAMP releases wrote no type: such a document is a Collector's unless it has an
  // Elastic Agent's access key.
  const opamp = doc.type === 'OPAMP' || (doc.type === undefined && doc.access_api_key_id === undefined);
  if (!opamp || doc.policy_id !== enrollment.policyId) return 'instance_uid is not an OpAMP agent of this enrollment token\'s policy';
  if (doc.active === false) return 'agent is not active';
  return undefined;
}

/** The remote configuration hash a message reports, in hex; undefined when absent or longer than any of ours. */
function reportedHash(msg: OpampMessage): string | undefined {
  const h = msg.remoteConfigStatus?.hash;
  if (!h || h.length > MAX_CONFIG_HASH_BYTES) return undefined;
  return Buffer.from(h).toString('hex');
}

function storedRemoteHash(doc: AgentDoc | undefined): string | undefined {
  const s = doc?.['remote_config_status'];
  if (!s || typeof s !== 'object') return undefined;
  const h = (s as Record<string, unknown>)['last_remote_config_hash'];
  return typeof h === 'string' ? h : undefined;
}
