// The configuration in an agent's diagnostics bundle: secrets replaced at any depth, a proxy's
// credentials too (the user:password of proxy_url, every proxy_headers value).
import { redact } from '../../src/util/redact';

test('secrets, proxy credentials and proxy headers are redacted; the rest is kept', () => {
  expect(redact({
    output: { elasticsearch: {
      hosts: ['https://es:9200'], service_token: 'AAEAAWVs', proxy_url: 'http://fleet:hunter2@proxy.corp:3128',
      proxy_headers: { 'Proxy-Authorization': 'Bearer xyz' }, ssl: { key: '/etc/key.pem', certificate: '/etc/cert.pem' },
    } },
    inputs: [{ server: { proxy_url: 'http://proxy.corp:3128' } }],
  })).toEqual({
    output: { elasticsearch: {
      hosts: ['https://es:9200'], service_token: '[REDACTED]', proxy_url: 'http://[REDACTED]@proxy.corp:3128',
      proxy_headers: '[REDACTED]', ssl: { key: '[REDACTED]', certificate: '/etc/cert.pem' },
    } },
    inputs: [{ server: { proxy_url: 'http://proxy.corp:3128' } }],
  });
});
