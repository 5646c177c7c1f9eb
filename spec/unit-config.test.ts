// Units → configuration, as upstream's configFromUnits builds it: dotted keys expanded, the bootstrap
// object filling only what the output lacks, the more verbose log level, APM from the component.
import { configFromUnits, outputFromUnit, unitSource } from '../src/control/unit-config';
import { proto } from '../src/control/generated/control';
import { toStruct } from '../src/control/struct';
import { buildConfig } from '../src/config/config';

test('bootstrap values fill only what the output lacks; an output with its own CA keeps verifying', () => {
  const choice = outputFromUnit({
    type: 'elasticsearch', hosts: ['localhost:9200'], ssl: { certificate_authorities: ['/ca.pem'] },
    bootstrap: { protocol: 'https', hosts: ['es.example:9200'], service_token: 'tok', ssl: { verification_mode: 'none', ca_trusted_fingerprint: 'ab' } },
  });
  expect(choice.merged).toEqual({
    hosts: ['localhost:9200'], protocol: 'https', service_token: 'tok',
    ssl: { certificate_authorities: ['/ca.pem'], ca_trusted_fingerprint: 'ab' },
  });
  expect(choice.bootstrap).toMatchObject({ hosts: ['es.example:9200'], service_token: 'tok' });
  expect(outputFromUnit({ type: 'elasticsearch', hosts: ['h:1'] })).toEqual({ merged: { hosts: ['h:1'] }, bootstrap: undefined });
});

test('unit config wins over -E settings; dotted keys nest; the more verbose log level; agent identity; APM', () => {
  const input = { source: toStruct({ type: 'fleet-server', id: 'fleet-server', revision: 3, policy: { id: 'p1' }, 'server.port': 8300, 'server.limits.max_agents': 5000 }) };
  const raw = configFromUnits({ inputs: [{ server: { host: '127.0.0.1', port: 1 } }], logging: { to_stderr: true } }, {
    input: { config: input, logLevel: proto.UnitLogLevel.INFO },
    output: { config: undefined, logLevel: proto.UnitLogLevel.DEBUG },
    agent: { id: 'a-1', version: '9.6.0' },
    elasticsearch: { hosts: ['http://es:9200'], service_token: 't' },
    apm: { hosts: ['https://apm:8200'], environment: 'prod', samplingRate: 0.5 },
  });
  const c = buildConfig(raw);
  expect(unitSource(input)).toMatchObject({ server: { port: 8300, limits: { max_agents: 5000 } } });
  expect(c.server.host).toBe('127.0.0.1');
  expect(c.server.port).toBe(8300);
  expect(c.policyId).toBe('p1');
  expect(c.logging.level).toBe('debug');
  expect(c.logging.toStderr).toBe(true);
  expect(c.agent).toEqual({ id: 'a-1', version: '9.6.0' });
  expect(c.elasticsearch?.hosts).toEqual(['http://es:9200']);
  expect((raw['inputs'] as Record<string, any>[])[0]!['server'].instrumentation).toEqual({ enabled: true, hosts: ['https://apm:8200'], environment: 'prod', transaction_sample_rate: '0.5' });
});
