// Where a policy's path-form secrets (`secrets: {<key>: {id}}`) are read, as upstream's internal/pkg/secret:
// at the root of each output, of agent.download and fleet, and of each OTel component; in inputs wherever
// a `secrets` object holds a reference. A `secrets` key anywhere else is a setting and reaches the agent.
import type { Hit, PolicyDoc, PolicyData } from '../../src/store/documents';
import { ParsedPolicy } from '../../src/fleet/parsed-policy';

const SECRETS: Record<string, string> = { 's-pass': 'hunter2', 's-token': 'tok', 's-dl': 'dl-pass' };
const lookup = (id: string): string | undefined => SECRETS[id];

function policyData(data: Record<string, unknown>): Record<string, any> {
  const hit: Hit<PolicyDoc> = {
    _id: 'p1:1',
    _source: {
      '@timestamp': '2026-01-01T00:00:00.000Z', policy_id: 'p1', revision_idx: 1, coordinator_idx: 0, default_fleet_server: false,
      data: { id: 'p1', revision: 1, output_permissions: { default: {} }, ...data } as unknown as PolicyData,
    },
  };
  const parsed = new ParsedPolicy(hit, lookup);
  const action = JSON.parse(parsed.template.render(parsed.values('agent-1', { default: 'id:key' }))) as { data: { policy: Record<string, any> } };
  return action.data.policy;
}

test('an input stream whose `secrets` holds no reference goes out as it is', () => {
  const stream = { id: 's1', data_stream: { dataset: 'aws.x' }, secrets: { region: 'x' } };
  const p = policyData({
    outputs: { default: { type: 'elasticsearch', hosts: ['http://es:9200'] } },
    inputs: [{ id: 'i1', type: 'aws-s3', streams: [stream] }],
  });
  expect(p['inputs'][0].streams[0]).toEqual(stream);
  expect(p).not.toHaveProperty('secret_paths');
});

test("an output's path-form secret is resolved at its root; a `secrets` object deeper in it, or deeper in agent.download or fleet, is left", () => {
  const nested = { secrets: { password: { id: 's-pass' } } };
  const p = policyData({
    outputs: {
      default: { type: 'elasticsearch', hosts: ['http://es:9200'] },
      kafka: { type: 'kafka', hosts: ['k:9092'], secrets: { password: { id: 's-pass' }, ssl: { key: { id: 's-token' } } }, sasl: nested },
    },
    agent: { download: { sourceURI: 'https://dl', secrets: { auth: { password: { id: 's-dl' } } }, proxy: nested } },
    fleet: { hosts: ['https://fleet:8220'], ssl: nested },
  });
  expect(p['outputs'].kafka).toEqual({ type: 'kafka', hosts: ['k:9092'], password: 'hunter2', ssl: { key: 'tok' }, sasl: nested });
  expect(p['agent'].download).toEqual({ sourceURI: 'https://dl', auth: { password: 'dl-pass' }, proxy: nested });
  expect(p['fleet']).toEqual({ hosts: ['https://fleet:8220'], ssl: nested });
  expect(p['secret_paths']).toEqual(['agent.download.auth.password', 'outputs.kafka.password', 'outputs.kafka.ssl.key']);
});

test('inputs read the path form at any depth (upstream since 9.2.x), inline references too', () => {
  const p = policyData({
    outputs: { default: { type: 'elasticsearch', hosts: ['http://es:9200'] } },
    inputs: [{
      id: 'i1', type: 'httpjson', secrets: { token: { id: 's-token' } },
      streams: [{ id: 's1', request: { secrets: { password: { id: 's-pass' } }, user: 'u' }, header: 'Bearer $co.elastic.secret{s-token}' }],
    }],
  });
  expect(p['inputs'][0]).toEqual({
    id: 'i1', type: 'httpjson', token: 'tok', streams: [{ id: 's1', request: { password: 'hunter2', user: 'u' }, header: 'Bearer tok' }],
  });
  expect(p['secret_paths']).toEqual(['inputs.0.streams.0.header', 'inputs.0.streams.0.request.password', 'inputs.0.token']);
});

test("an OTel component's path-form secret is resolved at the component's root only", () => {
  const p = policyData({
    outputs: { default: { type: 'elasticsearch', hosts: ['http://es:9200'] } },
    receivers: { 'httpcheck/1': { secrets: { password: { id: 's-pass' } }, targets: [{ secrets: { x: { id: 's-pass' } } }] } },
  });
  expect(p['receivers']).toEqual({ 'httpcheck/1': { password: 'hunter2', targets: [{ secrets: { x: { id: 's-pass' } } }] } });
});
