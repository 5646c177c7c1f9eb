// Check-in bodies as upstream decodes them and `.fleet-agents` maps them: a value of the wrong type in a
// typed upgrade_details field is the request's 400, not a document Elasticsearch refuses later.
import { validators } from '../../src/fleet/messages';

const agentMetadata = {
  elastic: { agent: { id: 'a', version: '9.6.0', snapshot: false, upgradeable: true, unprivileged: true, fips: false, log_level: 'info' } },
  host: { hostname: 'web-1', architecture: 'x86_64' }, os: { family: 'debian', name: 'Ubuntu' },
};
const details = (metadata: Record<string, unknown>) => ({ target_version: '9.6.1', action_id: 'x', state: 'UPG_DOWNLOADING', metadata });

test('what Elastic Agent sends passes', () => {
  for (const body of [
    { status: 'online', local_metadata: agentMetadata },
    { status: 'online', local_metadata: { elastic: { agent: { upgradeable: null } } } },
    // Elasticsearch takes a quoted boolean; local_metadata Elasticsearch would refuse is checked by the
    // check-in itself, which stores the rest (local-metadata-types.test.ts).
    { status: 'online', local_metadata: { elastic: { agent: { snapshot: 'false' } } } },
    { status: 'online', local_metadata: { host: 'web-1' } },
    { status: 'online', upgrade_details: details({ download_percent: 12.5, download_rate: 1500000 }) },
    { status: 'online', upgrade_details: details({ download_rate: '1.5MBps' }) },
    { status: 'online', upgrade_details: { ...details({ scheduled_at: '2030-01-01T00:00:00Z' }), state: 'UPG_SCHEDULED' } },
    { status: 'online', upgrade_details: { ...details({ retry_until: '0001-01-01T00:00:00Z', retry_error_msg: 'x' }), state: 'UPG_DOWNLOADING' } },
  ]) expect([body, validators.checkin.check(body)]).toEqual([body, true]);
});

test('a typed field of another type is refused, naming where', () => {
  for (const [body, where] of [
    [{ status: 'online', upgrade_details: details({ download_percent: '12%' }) }, '/upgrade_details/metadata/download_percent'],
    [{ status: 'online', upgrade_details: { ...details({ scheduled_at: 'tomorrow' }), state: 'UPG_SCHEDULED' } }, '/upgrade_details/metadata/scheduled_at'],
  ] as const) {
    // Old: accepted; Elasticsearch refused the agent's document (the check-in record dropped, or a 500 on
    // every check-in for upgrade details).
    expect(validators.checkin.check(body)).toBe(false);
    expect(validators.checkin.explain(body)).toContain(where);
  }
});
