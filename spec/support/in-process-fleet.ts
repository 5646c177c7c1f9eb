// The fleet use cases over the real SQLite adapter on ':memory:', with a manual clock: rules are
// exercised in milliseconds, without a spawned server or an HTTP round trip.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { Admin, type PolicyInput } from '../../src/fleet/admin';
import { Fleet, type FleetSharing } from '../../src/fleet/fleet';
import type { CheckinRequest } from '../../src/fleet/messages';
import type { CheckinResult, PollOutcome } from '../../src/fleet/checkin';
import type { ActionDoc, AgentDoc, Hit } from '../../src/store/documents';
import { SqliteStore } from '../../src/store/sqlite/store';
import { ManualClock } from './manual-clock';

/** Well after the real time, so that what the manual clock has not yet expired is live for the store too. */
export const T0 = Date.parse('2030-01-01T00:00:00Z');
export const VERSION = '9.6.0';

export interface CheckinAnswer {
  ack_token: string;
  actions?: Record<string, any>[];
}

export class InProcessFleet {
  readonly clock = new ManualClock(T0);
  readonly store: SqliteStore;
  readonly admin: Admin;
  readonly fleet: Fleet;

  /** `store`: another's, as a second cluster worker would see it (stop that one last: it closes the store). */
  constructor(settings: Record<string, unknown> = {}, sharing?: FleetSharing, store?: SqliteStore) {
    this.store = store ?? new SqliteStore(':memory:');
    this.admin = new Admin(this.store);
    const config = buildConfig({ inputs: [{ type: 'fleet-server', server: { timeouts: { checkin_jitter: '0s' }, ...settings } }] });
    this.fleet = new Fleet(this.store, config, pino({ level: 'silent' }), this.clock, sharing);
  }

  static async start(policy: PolicyInput = esPolicy('p1'), settings?: Record<string, unknown>, sharing?: FleetSharing): Promise<InProcessFleet> {
    const f = new InProcessFleet(settings, sharing);
    await f.admin.putPolicy(policy);
    await f.fleet.start();
    return f;
  }

  stop(): Promise<void> {
    return this.fleet.stop().then(() => this.store.close());
  }

  async enroll(policyId = 'p1'): Promise<{ id: string; accessKeyId: string; accessKey: string }> {
    const item = await this.fleet.enrollment.enroll({ policyId, namespaces: ['default'] }, VERSION, { type: 'PERMANENT', metadata: { local: {} } });
    const [, key] = Buffer.from(item.access_api_key, 'base64').toString().split(':');
    return { id: item.id, accessKeyId: item.access_api_key_id, accessKey: key! };
  }

  async agent(id: string): Promise<Hit<AgentDoc>> {
    const a = await this.store.getAgent(id);
    if (!a) throw new Error(`agent ${id} not found`);
    return a;
  }

  /** Starts a check-in; `pollMs` 0 answers at once when nothing is due. */
  async beginCheckin(id: string, body: Partial<CheckinRequest> = {}, pollMs = 0): Promise<{ result: Promise<CheckinResult>; cancel: () => void }> {
    let settle!: PollOutcome['settle'];
    const result = new Promise<CheckinResult>((resolve, reject) => {
      settle = (err, r) => (r ? resolve(r) : reject(err));
    });
    // Awaited or not, a refusal is the test's to see.
    result.catch(() => undefined);
    const cancel = await this.fleet.checkins.begin(await this.agent(id), VERSION, { status: 'online', message: '', ...body } as CheckinRequest, pollMs, { settle });
    return { result, cancel };
  }

  /** A check-in answered as the HTTP edge would render it. */
  async checkin(id: string, body: Partial<CheckinRequest> = {}, pollMs = 0): Promise<CheckinAnswer> {
    const r = await (await this.beginCheckin(id, body, pollMs)).result;
    const out: CheckinAnswer = { ack_token: r.ackToken };
    if (r.policy) out.actions = [JSON.parse(r.policy.template.render(r.policy.values))];
    else if (r.actionsJson !== undefined) out.actions = JSON.parse(r.actionsJson);
    return out;
  }

  /** A new policy revision, once the policy monitor has taken it in. */
  async putPolicy(policy: PolicyInput): Promise<number> {
    const hit = await this.admin.putPolicy(policy);
    const rev = hit._source.revision_idx;
    await until(async () => (await this.fleet.policies.latest(policy.id))?.revisionIdx === rev);
    return rev;
  }

  /** Actions written as Kibana writes them, once the action dispatcher has seen them. */
  async createActions(docs: Partial<ActionDoc>[]): Promise<Hit<ActionDoc>[]> {
    const hits = await this.store.createActions(docs.map((d, i) => ({
      action_id: `action-${Math.random().toString(36).slice(2)}-${i}`,
      '@timestamp': this.clock.iso(),
      expiration: new Date(this.clock.now() + 3600_000).toISOString(),
      type: 'SETTINGS',
      agents: [],
      ...d,
    } as ActionDoc)));
    const last = hits[hits.length - 1]!._seq_no!;
    await until(() => this.fleet.dispatcher.checkpoint >= last);
    return hits;
  }
}

export function esPolicy(id: string, extra: Partial<PolicyInput> = {}): PolicyInput {
  return { id, outputs: { default: { type: 'elasticsearch', hosts: ['http://localhost:9200'] } }, inputs: [], ...extra };
}

/** Waits (event-loop turns, not wall-clock sleeps) until the condition holds. */
export async function until(cond: () => boolean | Promise<boolean>, turns = 2000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (await cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('condition not reached');
}
