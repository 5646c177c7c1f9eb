// `inputs.0.server.workers` sized from the host (src/runtime/sizing.ts sizeWorkers): CPUs, the control
// group's quota and memory, on the boxes an operator runs it on.
// The host chooseWorkers reads: 64 CPUs, no CPU quota, a 512 MiB memory limit (a pod without a CPU limit).
jest.mock('node:os', () => ({ ...jest.requireActual('node:os'), availableParallelism: () => 64 }));
jest.mock('../../src/util/cgroup', () => ({ ...jest.requireActual('../../src/util/cgroup'), cpuQuota: () => undefined, memoryLimit: () => 512 * 1024 * 1024 }));
// Required after the mocks (imports would be read before them).
const { buildConfig } = require('../../src/config/config') as typeof import('../../src/config/config');
const { chooseWorkers, PROCESS_MEMORY_MIB, sizeWorkers } = require('../../src/runtime/sizing') as typeof import('../../src/runtime/sizing');

test('chooseWorkers: auto in a 512 MiB container on 64 CPUs forks no more workers than the memory holds', () => {
  const config = buildConfig({ inputs: [{ type: 'fleet-server', server: {} }] });
  expect(config.server.limits.profile).toBe('lte1000'); // the profile sees the same 512 MiB
  const s = chooseWorkers(config);
  expect(s.workers).toBeLessThan(64);
  expect((s.workers + 1) * PROCESS_MEMORY_MIB).toBeLessThanOrEqual(512);
});

describe('auto', () => {
  test('a 512 MiB container on a 64-CPU node with no CPU quota does not fork a worker per CPU', () => {
    const s = sizeWorkers('auto', { cpus: 64, memoryMiB: 512 });
    // Every process (the primary too) has room for PROCESS_MEMORY_MIB.
    expect((s.workers + 1) * PROCESS_MEMORY_MIB).toBeLessThanOrEqual(512);
    expect(s).toEqual({ workers: 3, reason: '512 MiB of memory (64 CPUs)' });
  });

  test('with too little memory for two workers and a primary it is one process', () => {
    expect(sizeWorkers('auto', { cpus: 8, memoryMiB: 256 })).toMatchObject({ workers: 1 });
    expect(sizeWorkers('auto', { cpus: 8, memoryMiB: 100 })).toMatchObject({ workers: 1 });
  });

  test('with memory to spare: one per CPU, or per CPU of the quota (rounded up by cgroup.ts)', () => {
    expect(sizeWorkers('auto', { cpus: 64, memoryMiB: 262_144 })).toEqual({ workers: 64, reason: '64 CPUs' });
    expect(sizeWorkers('auto', { cpus: 64, quota: 2, memoryMiB: 262_144 })).toEqual({ workers: 2, reason: '2 CPUs (control group quota)' });
    // A quota above the CPUs Node may use (a cpuset narrower than the quota) does not add workers.
    expect(sizeWorkers('auto', { cpus: 4, quota: 16, memoryMiB: 262_144 })).toEqual({ workers: 4, reason: '4 CPUs' });
  });

  test('one CPU, or a quota below one CPU, is one process', () => {
    expect(sizeWorkers('auto', { cpus: 1, memoryMiB: 4096 })).toEqual({ workers: 1, reason: 'one CPU' });
    expect(sizeWorkers('auto', { cpus: 64, quota: 1, memoryMiB: 4096 })).toEqual({ workers: 1, reason: 'one CPU' });
  });
});

test('a configured count is the operator\'s, whatever the host', () => {
  expect(sizeWorkers(8, { cpus: 1, memoryMiB: 256 })).toEqual({ workers: 8, reason: 'configured' });
  expect(sizeWorkers(1, { cpus: 64, memoryMiB: 65_536 })).toEqual({ workers: 1, reason: 'configured' });
});
