// Agent mode replaces its server instance when its configuration changes; the process's counters must go
// on growing as upstream's process-global ones do (a decrease is a reset to Prometheus), in-process.
import { request } from 'node:http';
import pino from 'pino';
import { buildConfig } from '../../src/config/config';
import { localStats } from '../../src/http/metrics';
import { ServerInstance } from '../../src/runtime/server-instance';
import { removeDir, tempDir } from '../support/fleet-server';
import { freePort } from '../support/ports';

const status = (port: number): Promise<number> => new Promise((resolve, reject) => {
  request({ host: '127.0.0.1', port, path: '/api/status', agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); })
    .on('error', reject).end();
});

test('a replaced instance\'s counts carry into the next one\'s /stats', async () => {
  const dir = tempDir();
  const port = await freePort();
  const config = buildConfig({ path: { data: dir }, logging: { level: 'error' },
    inputs: [{ type: 'fleet-server', server: { host: '127.0.0.1', port, internal_port: 0, workers: 1 } }] });
  const stats = async (s: ServerInstance): Promise<any> => (await localStats(s.fleet, s.http)({ gc: false }))['http_server'];
  let first: ServerInstance | undefined = await ServerInstance.create(config, pino({ level: 'silent' }));
  let second: ServerInstance | undefined;
  try {
    await first.start({ metrics: false });
    for (let i = 0; i < 3; i++) await status(port);
    const before = await stats(first);
    await first.stop();
    first = undefined;
    second = await ServerInstance.create(config, pino({ level: 'silent' }));
    await second.start({ metrics: false });
    await status(port);
    const after = await stats(second);
    expect(after.routes.status.total).toBe(before.routes.status.total + 1);
    expect(after.tcp_open).toBe(before.tcp_open + 1);
    // The first instance's connections are all closed: only the one just made may be open.
    expect(after.tcp_active).toBeLessThanOrEqual(1);
    expect(after.routes.status.active).toBe(0);
  } finally {
    await first?.stop();
    await second?.stop();
    removeDir(dir);
  }
});
