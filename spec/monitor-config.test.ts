// inputs.0.monitor.*: the policy monitor and the action dispatcher wait for changes no longer than
// poll_timeout. Observed from outside, on the Elasticsearch double: each wait is one
// `_fleet/global_checkpoints?wait_for_advance` request, so a short poll_timeout shows as a steady stream
// of them where the 4-minute default would show none after the first.
import { EsDouble } from './support/es-double/server';
import { esSettings } from './support/es-mode';
import { removeDir, startFleetServer } from './support/fleet-server';

jest.setTimeout(60_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a configured monitor.poll_timeout reaches the policy monitor and the action dispatcher', async () => {
  const es = await new EsDouble().start();
  const server = await startFleetServer({ overrides: [...esSettings(es), 'inputs.0.monitor.poll_timeout=300ms'] });
  try {
    await server.waitFor('fleet-server running');
    const polls = (): number => es.stats.requests['global_checkpoints'] ?? 0;
    const from = polls();
    // Two monitors, each renewing its wait every 300 ms: 12 more waits take about a second. The bound
    // is generous for a slow machine and still far below the default's 4 minutes.
    const deadline = Date.now() + 30_000;
    while (polls() < from + 12 && Date.now() < deadline) await sleep(100);
    expect(polls()).toBeGreaterThanOrEqual(from + 12);
  } finally {
    await server.stop();
    await es.stop();
    removeDir(server.dataDir);
  }
});

test('with the default poll_timeout each monitor holds one wait open', async () => {
  const es = await new EsDouble().start();
  const server = await startFleetServer({ overrides: esSettings(es) });
  try {
    await server.waitFor('fleet-server running');
    const from = es.stats.requests['global_checkpoints'] ?? 0;
    await sleep(2000);
    // One initial checkpoint read and one held wait per monitor; no renewals within 4 minutes.
    expect(es.stats.requests['global_checkpoints'] ?? 0).toBeLessThanOrEqual(Math.max(from, 4));
  } finally {
    await server.stop();
    await es.stop();
    removeDir(server.dataDir);
  }
});
