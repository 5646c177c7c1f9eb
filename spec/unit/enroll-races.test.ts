// Enrolls racing on one client-chosen agent id: whichever way they interleave, every access key left
// valid is the one the agent's document names (an agent's credentials must all be ones its unenroll
// revokes); the loser is told EnrollDuplicate (429), and its retry replaces.
import type { EnrollResponseItem } from '../../src/fleet/enroll';
import type { EnrollRequest } from '../../src/fleet/messages';
import { esPolicy, InProcessFleet, VERSION } from '../support/in-process-fleet';

let f: InProcessFleet;
let minted: { id: string; key: string }[];

beforeEach(async () => {
  f = await InProcessFleet.start(esPolicy('p1'), { pbkdf2: { iterations: 1000 } });
  minted = [];
  const createApiKey = f.store.createApiKey.bind(f.store);
  f.store.createApiKey = async (req) => {
    const k = await createApiKey(req);
    minted.push(k);
    return k;
  };
});
afterEach(() => f.stop());

const request = (extra: Partial<EnrollRequest> = {}): EnrollRequest => ({ type: 'PERMANENT', id: 'X', metadata: { local: {} }, ...extra });
const enroll = (extra?: Partial<EnrollRequest>): Promise<EnrollResponseItem> =>
  f.fleet.enrollment.enroll({ policyId: 'p1', namespaces: [] }, VERSION, request(extra));

/** Every minted key is valid exactly when the agent's document names it. */
async function expectNoOrphanKey(agentId = 'X'): Promise<string> {
  const named = (await f.agent(agentId))._source.access_api_key_id!;
  for (const k of minted) expect([k.id, await f.store.checkApiKey(k.id, k.key)]).toEqual([k.id, k.id === named ? 'valid' : 'invalid']);
  return named;
}

test('two enrolls of one new id at once in one process (held apart in process): one enrolls, the other is EnrollDuplicate, and no key is left that no document names', async () => {
  const results = await Promise.allSettled([enroll(), enroll()]);
  const named = await expectNoOrphanKey();
  const fulfilled = results.filter((r) => r.status === 'fulfilled');
  // Old: both fulfilled (the create's 409 taken as success), one with a key nothing names or revokes.
  expect(fulfilled).toHaveLength(1);
  for (const r of fulfilled) expect(r.value.access_api_key_id).toBe(named);
  for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'EnrollDuplicate' });
});

test('two replacing enrolls at once in one process (held apart in process): one replaces, the other is EnrollDuplicate; the replaced key and the loser\'s are invalid', async () => {
  await enroll({ replace_token: 'swap' });
  const results = await Promise.allSettled([enroll({ replace_token: 'swap' }), enroll({ replace_token: 'swap' })]);
  const named = await expectNoOrphanKey();
  const fulfilled = results.filter((r) => r.status === 'fulfilled');
  expect(fulfilled).toHaveLength(1);
  for (const r of fulfilled) expect(r.value.access_api_key_id).toBe(named);
});

test('an id created meanwhile elsewhere (the create finds it taken): EnrollDuplicate, its key invalidated; the retry replaces', async () => {
  const first = await enroll({ replace_token: 'swap' });
  // Another worker or instance created the document after this enroll looked for it.
  const getAgent = f.store.getAgent.bind(f.store);
  let hidden = false;
  f.store.getAgent = async (id) => {
    if (!hidden) {
      hidden = true;
      return undefined;
    }
    return getAgent(id);
  };
  // Old: fulfilled, with a key the document does not name.
  await expect(enroll({ replace_token: 'swap' })).rejects.toMatchObject({ code: 'EnrollDuplicate' });
  expect(await expectNoOrphanKey()).toBe(first.access_api_key_id);
  const retry = await enroll({ replace_token: 'swap' });
  expect(await expectNoOrphanKey()).toBe(retry.access_api_key_id);
});

test('a replace overtaken by another process\'s replace between its read and its write: its write is refused, EnrollDuplicate, and no key left unnamed', async () => {
  const first = await enroll({ replace_token: 'swap' });
  const updateAgent = f.store.updateAgent.bind(f.store);
  let other: { id: string; key: string } | undefined;
  f.store.updateAgent = async (u) => {
    if (!other) {
      // The other process read the same document, minted its key and recorded it first (over the key
      // both read), then retired that key.
      other = await f.store.createApiKey({ name: 'X', roleDescriptors: {}, metadata: {} });
      minted.push(other);
      await updateAgent({ id: 'X', doc: { access_api_key_id: other.id }, whileAccessKeyId: first.access_api_key_id });
      await f.store.invalidateApiKeys([first.access_api_key_id]);
    }
    return updateAgent(u);
  };
  // Old: this pass wrote over the other's key and, reading its own back, answered 200: the other's key
  // (answered 200 too) stayed valid with no document naming it.
  await expect(enroll({ replace_token: 'swap' })).rejects.toMatchObject({ code: 'EnrollDuplicate' });
  expect(await expectNoOrphanKey()).toBe(other!.id);
});
