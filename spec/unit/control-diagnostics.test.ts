// What Fleet Server puts in an agent's diagnostics bundle (which goes to Fleet): the output's headers
// and the credentials in host URLs are redacted, in the configuration and in the output TLS file.
import { buildConfig } from '../../src/config/config';
import { diagnosticHooks } from '../../src/control/diagnostics';
import { redact, redactUrl } from '../../src/util/redact';

test('every output header value is redacted, names kept; proxy_headers stay redacted as a whole', () => {
  expect(redact({ output: { elasticsearch: {
    headers: { Authorization: 'ApiKey c2VjcmV0', Cookie: 'sid=abc', 'X-Gateway-Secret': 's3', 'X-Elastic-Product-Origin': 'fleet' },
    proxy_headers: { 'Proxy-Authorization': 'Basic eHl6' },
  } } })).toEqual({ output: { elasticsearch: {
    headers: { Authorization: '[REDACTED]', Cookie: '[REDACTED]', 'X-Gateway-Secret': '[REDACTED]', 'X-Elastic-Product-Origin': '[REDACTED]' },
    proxy_headers: '[REDACTED]',
  } } });
});

test('user:password@ in hosts (a list or a string) becomes [REDACTED]@; hosts without credentials are kept', () => {
  expect(redact({
    output: { elasticsearch: { hosts: ['https://elastic:changeme@es1:9200', 'es2:9200', 'admin:pw@es3:9200/prefix', 'https://es4:9200/a@b'] } },
    inputs: [{ server: { instrumentation: { hosts: 'http://apm:t0ken@apm:8200' } } }],
  })).toEqual({
    output: { elasticsearch: { hosts: ['https://[REDACTED]@es1:9200', 'es2:9200', '[REDACTED]@es3:9200/prefix', 'https://es4:9200/a@b'] } },
    inputs: [{ server: { instrumentation: { hosts: 'http://[REDACTED]@apm:8200' } } }],
  });
});

test('an unencoded @ in a password leaves nothing of it behind', () => {
  expect(redactUrl('https://user:p@ss@es:9200')).toBe('https://[REDACTED]@es:9200');
  expect(redactUrl('http://fleet:hunter2@proxy.corp:3128')).toBe('http://[REDACTED]@proxy.corp:3128');
  expect(redactUrl('https://es:9200?q=a@b')).toBe('https://es:9200?q=a@b');
});

test('fleet-server.yml and fleet-server-output-tls.txt show no header value and no host credentials', async () => {
  const config = buildConfig({
    output: { elasticsearch: { hosts: ['https://elastic:changeme@es1:9200'], service_token: 'AAEAAWVs', headers: { Authorization: 'ApiKey c2VjcmV0' } } },
  });
  const hooks = diagnosticHooks(() => config, () => Promise.resolve('9.6.0'));
  const text = async (filename: string): Promise<string> => String(await hooks.find((h) => h.filename === filename)!.collect());
  const yml = await text('fleet-server.yml');
  const tls = await text('fleet-server-output-tls.txt');
  for (const secret of ['changeme', 'c2VjcmV0', 'AAEAAWVs']) {
    expect(yml).not.toContain(secret);
    expect(tls).not.toContain(secret);
  }
  expect(yml).toContain('Authorization: "[REDACTED]"');
  expect(tls).toContain('hosts: https://[REDACTED]@es1:9200');
});
