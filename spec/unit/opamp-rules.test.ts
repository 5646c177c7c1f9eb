// OpAMP rules in process: the documents a report becomes, and the wire decoding (checked against the
// tests' own protobuf writer, not the server's generated code).
import { agentToServer, CAP } from '../support/collector';
import { capabilityNames, decodeAgentToServer, encodeServerToAgent } from '../../src/opamp/codec';
import {
  cutText, effectiveConfigDocument, enrollmentDocument, healthDocument, healthFromDocument, redactSecrets, statusOf,
} from '../../src/fleet/opamp-document';
import { pbFields, pbGet } from '../support/protowire';
import { serverToAgent } from '../support/collector';
import { uuidText, uuidV7 } from '../../src/util/uuid';

test('status and message from health, as upstream maps them', () => {
  const h = (healthy: boolean, status: string, lastError = '') => ({ healthy, status, lastError, startTimeUnixNano: 0, statusTimeUnixNano: 0, components: {} });
  expect(statusOf(undefined)).toEqual({ status: 'online', message: '' });
  expect(statusOf(h(true, 'StatusOK'))).toEqual({ status: 'online', message: 'StatusOK' });
  expect(statusOf(h(false, 'StatusPermanentError', 'boom'))).toEqual({ status: 'error', message: 'boom' });
  expect(statusOf(h(true, 'StatusRecoverableError'))).toEqual({ status: 'degraded', message: 'StatusRecoverableError' });
});

test('health is stored in Go JSON shape (zero values left out) and read back', () => {
  const health = {
    healthy: false, startTimeUnixNano: 0, lastError: 'x', status: 'StatusStarting', statusTimeUnixNano: 5,
    components: { 'pipeline:logs': { healthy: true, startTimeUnixNano: 0, lastError: '', status: 'StatusOK', statusTimeUnixNano: 0, components: {} } },
  };
  const doc = healthDocument(health);
  expect(doc).toEqual({ last_error: 'x', status: 'StatusStarting', status_time_unix_nano: 5, component_health_map: { 'pipeline:logs': { healthy: true, status: 'StatusOK' } } });
  expect(healthFromDocument(doc)).toEqual(health);
});

test('secrets are redacted at any depth and in lists; routekey is not a secret', () => {
  expect(redactSecrets({
    a: { Password: 'p', nested: [{ api_key: 'k' }, 'plain'] }, routekey: 'r', tls: { cert_file: '/x', key_file: '/y' }, n: 1, empty: null,
  })).toEqual({ a: { Password: '[REDACTED]', nested: [{ api_key: '[REDACTED]' }, 'plain'] }, routekey: 'r', tls: { cert_file: '/x', key_file: '[REDACTED]' }, n: 1, empty: null });
  expect(effectiveConfigDocument('- a\n- b\n')).toBeUndefined();
  expect(() => effectiveConfigDocument('a: [')).toThrow();
  // Alias expansion is bounded.
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`)].join('\n');
  expect(() => effectiveConfigDocument(bomb)).toThrow();
});

test('the enrollment document: attributes, tags from service.name and the tags attribute, empty strings left out', () => {
  const doc = enrollmentDocument('id-1', { policyId: 'p', namespaces: ['ns'] }, {
    identifying: { 'service.name': 'otelcol', 'service.version': '1.0' },
    nonIdentifying: { tags: 'a, b,otelcol', 'os.type': 'linux' },
  }, '2026-01-01T00:00:00Z');
  expect(doc).toEqual({
    active: true, enrolled_at: '2026-01-01T00:00:00Z', type: 'OPAMP', policy_id: 'p', namespaces: ['ns'], policy_revision_idx: 1,
    agent: { id: 'id-1', version: '1.0', type: 'otelcol' },
    local_metadata: { elastic: { agent: { id: 'id-1', version: '1.0', name: 'otelcol' } }, host: {}, os: { platform: 'linux' } },
    identifying_attributes: { 'service.name': 'otelcol', 'service.version': '1.0' },
    non_identifying_attributes: { 'os.type': 'linux' },
    tags: ['otelcol', 'a', 'b'],
  });
  expect(enrollmentDocument('id-2', { policyId: 'p', namespaces: [] }, undefined, 'now')).not.toHaveProperty('identifying_attributes');
});

test('decoding: attribute values of every kind, capabilities by name, flags, disconnect, unknown fields skipped', () => {
  const uid = Buffer.alloc(16, 7);
  const bytes = agentToServer(uid, 42, CAP.ReportsStatus | CAP.AcceptsRemoteConfig | CAP.ReportsHeartbeat, {
    identifying: { s: 'x', i: -3, d: 1.5, b: false, raw: Buffer.from('hi'), arr: ['a', 1], kv: { k: true } },
    health: { healthy: true, status: 'StatusOK', startTimeUnixNano: 1_700_000_000_000_000_000n },
    effectiveConfig: 'a: 1',
    disconnect: true,
    requestInstanceUid: true,
  });
  // An unknown field (number 99, varint) appended: skipped, as any protobuf decoder does.
  const m = decodeAgentToServer(Buffer.concat([bytes, Buffer.from([0x98, 0x06, 0x01])]));
  expect(m).toMatchObject({
    sequenceNum: 42, capabilities: ['ReportsStatus', 'AcceptsRemoteConfig', 'ReportsHeartbeat'], requestInstanceUid: true, disconnect: true,
    description: { identifying: { s: 'x', i: -3, d: 1.5, b: false, raw: 'aGk=', arr: ['a', 1], kv: { k: true } }, nonIdentifying: {} },
    health: { healthy: true, status: 'StatusOK', components: {} },
  });
  expect(m.health!.startTimeUnixNano).toBeCloseTo(1.7e18, -6);
  expect(m.effectiveConfig!['']!.body.toString()).toBe('a: 1');
  expect(Buffer.from(m.instanceUid)).toEqual(uid);
  expect(capabilityNames(0)).toEqual([]);
  expect(() => decodeAgentToServer(Buffer.from([0x0a, 0x10, 0x01]))).toThrow();
});

test('encoding: the fields of a reply, an error alone, the empty custom_capabilities', () => {
  const uid = new Uint8Array(16).fill(1);
  const r = serverToAgent(Buffer.from(encodeServerToAgent(uid, { reportFullState: true, capabilities: ['AcceptsStatus', 'AcceptsEffectiveConfig'], newInstanceUid: new Uint8Array(16).fill(2) }, { customCapabilities: true })));
  expect(r).toMatchObject({ flags: 1, capabilities: 5, hasCustomCapabilities: true, newInstanceUid: Buffer.alloc(16, 2), instanceUid: Buffer.from(uid) });
  const e = serverToAgent(Buffer.from(encodeServerToAgent(uid, { error: { type: 'Unavailable', message: 'm' }, capabilities: ['AcceptsStatus'] }, { customCapabilities: false })));
  expect(e).toMatchObject({ error: { type: 2, message: 'm' }, flags: 0, capabilities: 0, hasCustomCapabilities: false });
});

test('UUIDv7: version and variant bits, time-ordered', () => {
  const a = uuidV7(1_000);
  const b = uuidV7(2_000);
  expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(a < b).toBe(true);
  expect(uuidText(new Uint8Array(15))).toBeUndefined();
});

test('decoding keeps at most 10,000 health components and attribute values of a message', () => {
  const leaf = { healthy: true, status: 'StatusOK' };
  const components = Object.fromEntries(Array.from({ length: 15_000 }, (_, i) => [`c${i}`, leaf]));
  const identifying = Object.fromEntries(Array.from({ length: 15_000 }, (_, i) => [`k${i}`, 'v']));
  const m = decodeAgentToServer(agentToServer(Buffer.alloc(16, 1), 1, CAP.ReportsStatus, { identifying, health: { healthy: true, components } }));
  // Old: every one of them, held while the message waits on the store.
  expect(Object.keys(m.health!.components)).toHaveLength(10_000);
  expect(m.health!.components['c0']).toMatchObject({ healthy: true, status: 'StatusOK' });
  expect(Object.keys(m.description!.identifying)).toHaveLength(10_000);
});

test('the heartbeat offer carries the interval alone: no destination_endpoint, headers, certificate or TLS settings', () => {
  const uid = new Uint8Array(16).fill(1);
  const bytes = Buffer.from(encodeServerToAgent(uid, { capabilities: ['AcceptsStatus', 'OffersConnectionSettings'], heartbeatIntervalSeconds: 30 }, { customCapabilities: false }));
  // Old: nothing at all without the URL the Collector reached (and that URL in destination_endpoint with it).
  expect(serverToAgent(bytes).heartbeatIntervalSeconds).toBe(30);
  const offers = pbFields(pbGet(pbFields(bytes), 4) as Buffer);
  expect(pbGet(offers, 1)).toHaveLength(32);
  const opampSettings = pbFields(pbGet(offers, 2) as Buffer);
  expect(opampSettings.map((f) => f.field)).toEqual([4]);
});

test('client text is cut to 1 KiB of UTF-8, at a character boundary', () => {
  expect(cutText('short')).toBe('short');
  expect(cutText('x'.repeat(5000))).toBe('x'.repeat(1024));
  // 'é' is 2 bytes, '😀' 4: the cut never leaves half a character.
  expect(Buffer.byteLength(cutText('é'.repeat(1000)))).toBe(1024);
  const emoji = cutText(`x${'😀'.repeat(500)}`);
  expect(Buffer.byteLength(emoji)).toBe(1021);
  expect(emoji.endsWith('😀')).toBe(true);
  expect(cutText('abcdef', 4)).toBe('abcd');
});
