// Agents' output keys shared by cluster workers through the primary (runtime/shared-secrets.ts): two
// fleets over one store stand for two workers, the IPC channel replaced by direct calls.
import { SecretShareClient, SecretShareHost, type SecretShareAnswer, type SecretShareRequest } from '../../src/runtime/shared-secrets';
import { esPolicy, InProcessFleet } from '../support/in-process-fleet';

/** A worker's client whose requests `host` answers (after a microtask, as a reply arrives later). */
function linked(host: SecretShareHost): SecretShareClient {
  const client: SecretShareClient = new SecretShareClient((m: SecretShareRequest) => {
    const answer = host.handle(m);
    if (answer) queueMicrotask(() => client.answered(answer));
    return true;
  });
  return client;
}

describe('output keys shared by the workers through the primary', () => {
  let a: InProcessFleet | undefined;
  let b: InProcessFleet | undefined;
  afterEach(async () => {
    await b?.fleet.stop();
    await a?.stop();
    a = b = undefined;
  });

  test('a key one worker minted reaches an agent whose poll another holds without a secret read', async () => {
    const host = new SecretShareHost();
    a = await InProcessFleet.start(esPolicy('p1'), undefined, { keys: linked(host) });
    const clientB = linked(host);
    b = new InProcessFleet({}, { keys: clientB }, a.store);
    await b.fleet.start();
    const agent = await a.enroll();
    const first = (await a.checkin(agent.id)).actions![0]!;
    const key = first['data'].policy.outputs.default.api_key as string;
    expect(key).toMatch(/^[^:]+:.+/);
    expect(host.size).toBe(1);

    const reads: string[] = [];
    const getSecret = a.store.getSecret.bind(a.store);
    a.store.getSecret = (id) => (reads.push(id), getSecret(id));
    await a.putPolicy(esPolicy('p1'));
    await b.fleet.policies.latest('p1');
    const second = (await b.checkin(agent.id, { agent_policy_id: 'p1', policy_revision_idx: 1 })).actions![0]!;
    expect(second['data'].policy.revision).toBe(2);
    expect(second['data'].policy.outputs.default.api_key).toBe(key);
    expect(reads).toEqual([]);
    expect(clientB.pending).toBe(0);
  });

  test('a primary that has no copy, cannot be asked, or answers too late leaves the read to the store', async () => {
    const host = new SecretShareHost();
    host.handle({ t: 'secret-keep', id: 's1', value: 'k1:secret' });
    const asked = linked(host);
    expect(await asked.recall('s1')).toBe('k1:secret');
    expect(await asked.recall('s2')).toBeUndefined();
    host.handle({ t: 'secret-forget', ids: ['s1'] });
    expect(await asked.recall('s1')).toBeUndefined();

    const closed = new SecretShareClient(() => false);
    expect(await closed.recall('s1')).toBeUndefined();
    expect(closed.pending).toBe(0);

    const sent: SecretShareRequest[] = [];
    const slow = new SecretShareClient((m) => (sent.push(m), true), 10);
    expect(await slow.recall('s1')).toBeUndefined();
    // The answer that comes after the wait is dropped; nothing is left waiting.
    const late: SecretShareAnswer = { t: 'secret-recalled', n: (sent[0] as { n: number }).n, value: 'k1:secret' };
    slow.answered(late);
    expect(slow.pending).toBe(0);
  });
});
