// Started as `node dist/fleet-server.js` (no shebang, no flags), the server replaces itself in place
// with one running the V8 flags and start environment it ships with: same pid, so supervisors and
// signals are unaffected.
import { readFileSync } from 'node:fs';
import { isServerStart } from '../src/runtime/node-flags';
import { missingFromEnviron, NODE_FLAGS } from './support/node-flags';
import { removeDir, startFleetServer } from './support/fleet-server';
import { request } from './support/http';

jest.setTimeout(60_000);

test('a server started without the shipped V8 flags and start environment runs with them, in the same process', async () => {
  expect(NODE_FLAGS.length).toBeGreaterThan(0);
  const server = await startFleetServer({ bareNode: true });
  try {
    const pid = server.child.pid!;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    for (const flag of NODE_FLAGS) expect(cmdline).toContain(flag);
    expect(missingFromEnviron(pid)).toEqual([]);
    expect((await request(`${server.url}/api/status`)).status).toBe(200);
  } finally {
    // SIGTERM reaches the re-executed server (same pid) and it stops cleanly.
    expect(await server.stop()).toBe(0);
    removeDir(server.dataDir);
  }
});

test('a server start is told from an admin command before the command line is parsed', () => {
  expect(isServerStart([])).toBe(true);
  expect(isServerStart(['run'])).toBe(true);
  expect(isServerStart(['-c', 'fleet-server.yml', '-E', 'path.data=/x'])).toBe(true);
  expect(isServerStart(['--agent-mode', '-E', 'logging.level=debug'])).toBe(true);
  expect(isServerStart(['--config=/etc/fleet.yml', '-E', 'run'])).toBe(true);
  // A value that looks like a command is a value.
  expect(isServerStart(['-E', 'policy', 'run'])).toBe(true);
  expect(isServerStart(['policy', 'list'])).toBe(false);
  expect(isServerStart(['-E', 'path.data=/x', 'enrollment-token', 'create'])).toBe(false);
  expect(isServerStart(['--json', 'agents', 'list'])).toBe(false);
  expect(isServerStart(['--help'])).toBe(false);
  expect(isServerStart(['run', '--help'])).toBe(false);
});
