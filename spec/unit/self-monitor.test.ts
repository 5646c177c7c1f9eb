// Upstream's standalone self monitor (fleet-http-api.md, the health section): a failed policy read is
// DEGRADED for a server that ran, STARTING for one still starting, FAILED otherwise.
import { InProcessFleet } from '../support/in-process-fleet';

test('a failed store read keeps a starting server STARTING, makes a running one DEGRADED; a good read is HEALTHY "Running"', async () => {
  const f = await InProcessFleet.start();
  try {
    const check = (): Promise<void> => (f.fleet as unknown as { checkStore(): Promise<void> }).checkStore();
    const healthy = f.store.healthCheck.bind(f.store);
    f.store.healthCheck = () => Promise.reject(new Error('no policies index'));
    f.fleet.health.set('STARTING', 'Starting');
    await check();
    expect(f.fleet.health.current).toMatchObject({ state: 'STARTING', message: 'Failed to request policies: no policies index' });
    f.store.healthCheck = healthy;
    await check();
    expect(f.fleet.health.current).toMatchObject({ state: 'HEALTHY', message: 'Running' });
    f.store.healthCheck = () => Promise.reject(new Error('gone'));
    await check();
    expect(f.fleet.health.current.state).toBe('DEGRADED');
    f.fleet.health.set('FAILED', 'x');
    await check();
    expect(f.fleet.health.current.state).toBe('FAILED');
  } finally {
    await f.stop();
  }
});
