// Static policy tokens (server.static_policy_tokens): an enabled token needs a real secret and a policy,
// checked when the configuration is built; the secret alone enrolls, compared in constant time.
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { Authenticator } from '../../src/fleet/auth';
import { EnrollService } from '../../src/fleet/enroll';
import { SqliteStore } from '../../src/store/sqlite/store';
import { esPolicy, InProcessFleet, VERSION } from '../support/in-process-fleet';

const GOOD_KEY = 'static-token-key-0123456789';

function configWith(tokens: unknown, enabled: unknown = true) {
  return () => buildConfig({ inputs: [{ type: 'fleet-server', server: { static_policy_tokens: { enabled, policy_tokens: tokens } } }] });
}

describe('the configuration', () => {
  test.each([
    ['no token_key', [{ policy_id: 'p1' }], 'policy_tokens.0.token_key'],
    ['an empty token_key (an unset ${VAR})', [{ token_key: '', policy_id: 'p1' }], 'policy_tokens.0.token_key'],
    ['a token_key of 15 characters', [{ token_key: 'fifteen-chars-x', policy_id: 'p1' }], 'policy_tokens.0.token_key'],
    ['a short second token', [{ token_key: GOOD_KEY, policy_id: 'p1' }, { token_key: 'fifteen-chars-x', policy_id: 'p1' }], 'policy_tokens.1.token_key'],
    ['no policy_id', [{ token_key: GOOD_KEY }], 'policy_tokens.0.policy_id'],
    ['an empty policy_id', [{ token_key: GOOD_KEY, policy_id: '' }], 'policy_tokens.0.policy_id'],
  ])('an enabled token with %s stops the start, naming the key and never the value', (_n, tokens, key) => {
    let message = '';
    try {
      configWith(tokens)();
    } catch (err) {
      message = (err as Error).message;
    }
    // Old: accepted, and `ApiKey base64("x:")` enrolled into p1.
    expect(message).toContain(`inputs.0.server.static_policy_tokens.${key}`);
    expect(message).not.toContain('\n');
    expect(message).not.toContain('fifteen-chars-x');
    expect(message).not.toContain(GOOD_KEY);
  });

  test('policy_tokens that is not a list is named', () => {
    expect(configWith({ token_key: GOOD_KEY, policy_id: 'p1' })).toThrow(/^config key inputs\.0\.server\.static_policy_tokens\.policy_tokens: expected a list$/);
  });

  test('good tokens are read; tokens of a disabled feature are not checked', () => {
    expect(configWith([{ token_key: GOOD_KEY, policy_id: 'p1' }])().server.staticPolicyTokens)
      .toEqual({ enabled: true, tokens: [{ tokenKey: GOOD_KEY, policyId: 'p1' }] });
    expect(configWith([{ policy_id: 'p1' }], false)().server.staticPolicyTokens.enabled).toBe(false);
  });
});

describe('enrolling with a static token', () => {
  let f: InProcessFleet | undefined;
  afterEach(() => f?.stop());

  test('the configured secret enrolls into its policy, whatever the key id; another or an empty secret is refused', async () => {
    f = await InProcessFleet.start(esPolicy('p1'), { static_policy_tokens: { enabled: true, policy_tokens: [{ token_key: GOOD_KEY, policy_id: 'p1' }] } });
    const record = await f.fleet.enrollment.authenticate({ id: 'anything', key: GOOD_KEY });
    expect(record).toEqual({ policyId: 'p1', namespaces: [] });
    const item = await f.fleet.enrollment.enroll(record, VERSION, { type: 'PERMANENT', metadata: { local: {} } });
    expect((await f.agent(item.id))._source.policy_id).toBe('p1');
    for (const key of ['', `${GOOD_KEY}x`, GOOD_KEY.slice(0, -1)]) {
      await expect(f.fleet.enrollment.authenticate({ id: 'x', key })).rejects.toMatchObject({ code: 'Unauthorized' });
    }
  });

  test('a token with an empty key, however it was configured, never matches a header without a secret', async () => {
    const store = new SqliteStore(':memory:');
    try {
      await store.ready();
      const service = new EnrollService(store, new Authenticator(store, { ttlApiKeyMs: 60_000, jitterApiKeyMs: 0 }), {
        staticPolicyTokens: { enabled: true, tokens: [{ tokenKey: '', policyId: 'p1' }] },
        pbkdf2: { iterations: 1000, keyLength: 32, saltLength: 16 },
        ttlEnrollKeyMs: 60_000,
      }, pino({ level: 'silent' }));
      // Old: matched, and answered PolicyNotFound (or enrolled, had p1 existed).
      await expect(service.authenticate({ id: 'x', key: '' })).rejects.toMatchObject({ code: 'Unauthorized' });
    } finally {
      await store.close();
    }
  });
});
