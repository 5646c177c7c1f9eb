// A worker runs the configuration its primary built, asked for over the IPC channel
// (src/runtime/worker-config.ts), not the -c file again, and not through its environment.
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/cli/load-config';
import { buildConfig, type FleetServerConfig } from '../../src/config/config';
import { configAnswer, configFromPrimary, type PrimaryChannel } from '../../src/runtime/worker-config';

/** A worker's channel to a primary that answers with `config` as Node's IPC does (JSON). */
function channelTo(answer: (() => FleetServerConfig) | undefined): PrimaryChannel & EventEmitter {
  const ch = new EventEmitter() as PrimaryChannel & EventEmitter;
  ch.send = (m) => {
    if (m.t === 'config?' && answer) setImmediate(() => ch.emit('message', JSON.parse(JSON.stringify(configAnswer(answer())))));
    return true;
  };
  return ch;
}

test("a worker started after the file was edited runs the primary's configuration, not the edit", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-worker-config-'));
  try {
    const file = join(dir, 'fleet-server.yml');
    writeFileSync(file, `path.data: ${dir}/a\ninputs:\n  - type: fleet-server\n    server: { port: 8220, workers: 2, limits: { max_agents: 5000 } }\n`);
    const primary = loadConfig({ config: file, E: ['inputs.0.server.timeouts.drain=7s'] });
    writeFileSync(file, `path.data: ${dir}/b\ninputs:\n  - type: fleet-server\n    server: { port: 9999, workers: 2 }\n`);
    const worker = await configFromPrimary(channelTo(() => primary));
    expect(worker).toEqual(primary);
    expect(worker.server.port).toBe(8220);
    expect(worker.pathData).toBe(`${dir}/a`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every setting survives the trip over the channel (plain data: no Infinity, Map or Buffer would)', async () => {
  const config = buildConfig({
    output: { elasticsearch: { hosts: ['https://es:9200'], service_token: 'tok', ssl: { certificate_authorities: ['/ca.pem'] } } },
    inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port: 8220, workers: 4,
      ssl: { certificate: '/c.pem', key: '/k.pem', key_passphrase: 'p', curve_types: ['X25519'], certificate_reload: { enabled: true } },
      limits: { max_agents: 100_000, max_connections: 0, checkin_limit: { max: 0 } } } }],
    http: { enabled: true, port: 5066 },
    logging: { level: 'debug', to_files: true },
  });
  await expect(configFromPrimary(channelTo(() => config))).resolves.toEqual(config);
});

test('a primary that goes before answering fails the worker\'s start; the request leaves no listener behind', async () => {
  const ch = channelTo(undefined);
  const asked = configFromPrimary(ch);
  ch.emit('disconnect');
  await expect(asked).rejects.toThrow(/primary went before/);
  expect(ch.listenerCount('message') + ch.listenerCount('disconnect')).toBe(0);
});
