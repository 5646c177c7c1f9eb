// audit/unenroll bodies as upstream decodes them: `timestamp` into a time.Time (a malformed one is the
// client's 400, not a string stored for Elasticsearch to refuse with a 503), the reason from its list.
import { auditUnenroll } from '../../src/fleet/audit';
import { validators } from '../../src/fleet/messages';
import { decodeJson, type RawBody } from '../../src/http/body';
import { classify } from '../../src/http/errors';
import { InProcessFleet } from '../support/in-process-fleet';

const body = (value: unknown): RawBody => {
  const b = Buffer.from(JSON.stringify(value));
  return { chunks: [b], size: b.length, wireBytes: b.length, release: () => undefined };
};

const refusal = (value: unknown) => {
  try {
    decodeJson(body(value), 'audit unenroll', validators.auditUnenroll);
  } catch (err) {
    return classify(err);
  }
  return undefined;
};

test('a timestamp that is not RFC 3339 fails the decoding: 400 BadRequest', async () => {
  for (const timestamp of ['not a date', '2030-01-01', '1704067200', '2030-02-30T00:00:00Z']) {
    expect(refusal({ reason: 'uninstall', timestamp })).toMatchObject({ status: 400, error: 'BadRequest', message: expect.stringMatching(/^Bad request: unable to decode audit unenroll request: \/timestamp/) });
  }
  expect(refusal({ reason: 'uninstall', timestamp: '2030-01-01T00:00:00.123+01:00' })).toBeUndefined();
});

test('an unknown reason is refused in upstream\'s words, without repeating the client\'s text', async () => {
  const f = await InProcessFleet.start();
  try {
    const a = await f.enroll();
    const err = await auditUnenroll(f.store, await f.agent(a.id), { reason: 'x'.repeat(1000), timestamp: '2030-01-01T00:00:00Z' }).catch((e: unknown) => e);
    expect(classify(err)).toMatchObject({ status: 400, message: 'Bad request: audit/unenroll request invalid reason' });
    expect((await f.agent(a.id))._source.audit_unenrolled_reason).toBeUndefined();
  } finally {
    await f.stop();
  }
});
