// Signals as daemons take them: SIGHUP reopens the log files and keeps every held check-in (Node's
// default would end the process); SIGTERM drains and exits 0.
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';
import { removeDir, startFleetServer, tempDir } from './support/fleet-server';

jest.setTimeout(60_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test('SIGHUP keeps held check-ins, which are answered normally afterwards', async () => {
  const server = await startFleetServer();
  try {
    const agents = [new SimAgent(server.url), new SimAgent(server.url), new SimAgent(server.url)];
    const held = await Promise.all(agents.map(async (a) => {
      expect((await a.enroll((await server.enrollmentToken()))).status).toBe(200);
      expect((await a.checkin()).json.actions[0].type).toBe('POLICY_CHANGE');
      let answered = false;
      const res = a.checkin({ agent_policy_id: 'default-policy', policy_revision_idx: 1 }, { timeoutMs: 30_000 }).finally(() => (answered = true));
      return { res, answered: () => answered };
    }));
    await sleep(500);
    server.child.kill('SIGHUP');
    await server.waitFor('"signal":"SIGHUP"');
    await sleep(500);
    expect(server.exitCode).toBeUndefined();
    expect(held.map((h) => h.answered())).toEqual([false, false, false]);
    // Still held by the same process: an action created now reaches each of them.
    const action = await cli(server.dataDir, ['actions', 'create', '--type', 'REQUEST_DIAGNOSTICS', '--agents', agents.map((a) => a.id).join(',')]);
    for (const h of held) {
      const r = await h.res;
      expect(r.status).toBe(200);
      expect(r.json.actions.map((x: { id: string }) => x.id)).toEqual([action.id]);
    }
    expect(server.logs().some((l) => l['signal'] === 'SIGHUP' && l['log.level'] === 'info')).toBe(true);
    expect(await server.stop()).toBe(0);
  } finally {
    await server.stop();
    removeDir(server.dataDir);
  }
});

test('with logging to files, SIGHUP recreates a log file that was moved away', async () => {
  const dir = tempDir();
  const logs = join(dir, 'logs');
  const file = join(logs, 'fleet-server.log');
  const server = await startFleetServer({ dataDir: dir, overrides: ['logging.to_files=true', `logging.files.path=${logs}`, 'logging.to_stderr=false'],
    readyText: 'Created policy "default-policy"' });
  try {
    await until('the log file', () => existsSync(file) && readFileSync(file, 'utf8').includes('fleet-server internal listener'));
    renameSync(file, `${file}.rotated`);
    server.child.kill('SIGHUP');
    await until('the log file recreated with the SIGHUP line', () => existsSync(file) && readFileSync(file, 'utf8').includes('log files reopened'));
    expect(readFileSync(`${file}.rotated`, 'utf8')).not.toContain('log files reopened');
    expect(await server.stop()).toBe(0);
    // Lines after the reopen, the shutdown's included, go to the new file.
    expect(readFileSync(file, 'utf8')).toContain('fleet-server stopped');
  } finally {
    await server.stop();
    removeDir(dir);
  }
});

// A supervisor may stop the server the moment it starts: before its store is open, while its listeners
// are opening, or (workers) while some workers are ready and others are not. Either way it drains and
// exits 0.
test.each([
  ['the first log line', 1, 'fleet-server starting'],
  ['the first listener', 1, 'fleet-server internal listener'],
  ['the first log line, with workers', 2, 'fleet-server starting'],
  ['the first worker ready, with workers', 2, '"message":"worker ready"'],
])('SIGTERM at %s: a drain and exit 0', async (_name, workers, line) => {
  for (let i = 0; i < 3; i++) {
    const server = await startFleetServer({ readyText: line, overrides: [`inputs.0.server.workers=${workers}`] });
    const code = await server.stop();
    // With the server's own account of its stop beside the code: CI once saw exit 1 here, with nothing to say why.
    expect({ code, stderr: code === 0 ? '' : server.stderr }).toEqual({ code: 0, stderr: '' });
    expect(server.stderr).toContain('fleet-server stopped');
    removeDir(server.dataDir);
  }
});
