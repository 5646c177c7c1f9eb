// Started as `node dist/fleet-server.js` (no shebang, no flags), the server replaces itself in place
// with one running the V8 flags and start environment it ships with: same pid, so supervisors and
// signals are unaffected.
import { readFileSync } from 'node:fs';
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
