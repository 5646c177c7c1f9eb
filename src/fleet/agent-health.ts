// Upstream's policy self monitor, used when Elastic Agent runs this server: health follows the policy
// that carries the Fleet Server integration (inputs[0].policy.id, or the default Fleet Server policy).
// During bootstrap (no agent id yet) a running server is DEGRADED and hands the agent an enrollment
// token to enroll itself with. The messages are upstream's, word for word: the agent shows them.
import type { Store } from '../store/port';
import { Admin } from './admin';
import type { HealthStatus } from './self-monitor';

export interface AgentHealthInput {
  /** inputs[0].policy.id; empty selects the policy flagged default_fleet_server. */
  policyId: string;
  /** fleet.agent.id; empty while the hosting agent is not yet enrolled. */
  agentId: string;
}

const BOOTSTRAP = 'missing config fleet.agent.id (expected during bootstrap process)';

export async function agentHealth(store: Store, input: AgentHealthInput): Promise<HealthStatus> {
  const explicit = input.policyId !== '';
  const which = explicit ? `policy with Fleet Server integration: ${input.policyId}` : 'default policy with Fleet Server integration';
  const latest = await store.latestPolicies();
  const policy = explicit ? latest.find((h) => h._source.policy_id === input.policyId) : latest.find((h) => h._source.default_fleet_server);
  if (!policy) return { state: 'STARTING', message: `Waiting on ${which}` };
  const inputs = (policy._source.data.inputs ?? []) as { type?: unknown }[];
  if (!inputs.some((i) => i && i.type === 'fleet-server')) {
    return { state: 'STARTING', message: explicit ? `Waiting on fleet-server input to be added to policy: ${input.policyId}` : 'Waiting on fleet-server input to be added to default policy' };
  }
  if (input.agentId === '') {
    const key = (await store.listEnrollmentKeys(policy._source.policy_id)).find((k) => k._source.active);
    if (!key) return { state: 'STARTING', message: `Waiting on active enrollment keys to be created in ${which}` };
    const token = key._source.api_key || await bootstrapToken(store, policy._source.policy_id);
    return { state: 'DEGRADED', message: `Running on ${which}; ${BOOTSTRAP}`, payload: { enrollment_token: token } };
  }
  return { state: 'HEALTHY', message: `Running on ${which}` };
}

const BOOTSTRAP_NAME = 'Fleet Server bootstrap';

/** A new bootstrap token; those earlier starts minted are revoked, so restarts do not pile up live credentials. */
async function mintBootstrapToken(admin: Admin, policyId: string): Promise<string> {
  const hit = await admin.createEnrollmentToken(policyId, BOOTSTRAP_NAME);
  for (const t of await admin.listEnrollmentTokens(policyId)) {
    if (t.name === BOOTSTRAP_NAME && t.active && t.id !== hit._id) await admin.revokeEnrollmentToken(t.id);
  }
  return hit._source.api_key;
}

/** Per store and policy: minted once, so the 5-second health check does not mint a token each time. */
const minted = new WeakMap<Store, Map<string, Promise<string>>>();

/**
 * The embedded store keeps no enrollment token it could hand out (api_key reads back ''), so the
 * bootstrap payload carries one minted for the purpose, as the zero-config start does.
 */
function bootstrapToken(store: Store, policyId: string): Promise<string> {
  let byPolicy = minted.get(store);
  if (!byPolicy) minted.set(store, (byPolicy = new Map()));
  let token = byPolicy.get(policyId);
  if (!token) {
    token = mintBootstrapToken(new Admin(store), policyId);
    // A failed mint (store unavailable) is tried again on the next check.
    token.catch(() => byPolicy.delete(policyId));
    byPolicy.set(policyId, token);
  }
  return token;
}
