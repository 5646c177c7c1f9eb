// The zero-config first start on the embedded store: the default policy always; an enrollment token
// only where standard output is a terminal (an operator reading it), never where it is a log.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { DIST, removeDir, startFleetServer, tempDir } from './support/fleet-server';
import { NODE_FLAGS, START_ENV } from './support/node-flags';
import { freePort } from './support/ports';
import { SimAgent } from './support/agent';
import { cli } from './support/cli';

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

test('on a terminal the token is printed with an enroll command, and enrolls an agent', async () => {
  const dir = tempDir();
  const port = await freePort();
  const cmd = [process.execPath, ...NODE_FLAGS, DIST, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1',
    '-E', `inputs.0.server.port=${port}`, '-E', 'inputs.0.server.internal_port=0', '-E', 'inputs.0.server.workers=1'].map(quote).join(' ');
  // util-linux script(1) runs the server on a pseudo-terminal; its output is the terminal's.
  const child = spawn('script', ['-qfec', `exec ${cmd}`, '/dev/null'], { cwd: dir, env: { ...process.env, ...START_ENV }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  try {
    const deadline = Date.now() + 20_000;
    // The token is printed before the listeners open: wait for both.
    while (!(/enrollment token for it:\s+(\S+)/.test(out) && out.includes('fleet-server listening')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('fleet-server listening');
    const token = /enrollment token for it:\s+(\S+)/.exec(out)?.[1];
    expect(token).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
    expect(out).toContain(`elastic-agent install --url=http://127.0.0.1:${port} --enrollment-token=${token} --insecure`);
    expect((await new SimAgent(`http://127.0.0.1:${port}`).enroll(token!)).status).toBe(200);
  } finally {
    // Ctrl-C on the terminal, as an operator stops it.
    child.stdin.end('\x03');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(timer);
    removeDir(dir);
    expect(code).toBe(0);
  }
});

test('elsewhere (a pipe, the journal) no token is made or printed; the policy is, and the way to a token is told', async () => {
  const server = await startFleetServer();
  try {
    expect(server.stdout).toContain(`Created policy "default-policy". Agents enroll at ${server.url}.`);
    expect(server.stdout).toContain('fleet-server enrollment-token create --policy default-policy');
    expect(server.stdout).not.toMatch(/[A-Za-z0-9+/]{40,}/);
    expect(await cli(server.dataDir, ['enrollment-token', 'list'])).toEqual([]);
    const token = await server.enrollmentToken();
    expect((await new SimAgent(server.url).enroll(token)).status).toBe(200);
  } finally {
    expect(await server.stop()).toBe(0);
    removeDir(server.dataDir);
  }
});

test('a first start that failed (its port taken) leaves the next start still telling the way to a token; once one exists, nothing is said', async () => {
  const dir = tempDir();
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const taken = (blocker.address() as AddressInfo).port;
  try {
    const failed = spawnSync(process.execPath, [...NODE_FLAGS, DIST, '-E', `path.data=${dir}`, '-E', 'inputs.0.server.host=127.0.0.1', '-E', `inputs.0.server.port=${taken}`,
      '-E', 'inputs.0.server.internal_port=0', '-E', 'inputs.0.server.workers=1'], { cwd: dir, env: { ...process.env, ...START_ENV }, encoding: 'utf8', timeout: 20_000 });
    expect(failed.status).toBe(1);
  } finally {
    blocker.close();
  }
  const again = await startFleetServer({ dataDir: dir });
  try {
    await again.waitFor('fleet-server enrollment-token create --policy default-policy');
    // Old: the policy made by the failed start, nothing said: the way to a token was never told.
    expect(again.stdout).toContain(`Policy "default-policy" has no enrollment token yet. Agents enroll at ${again.url}.`);
    await again.enrollmentToken();
  } finally {
    expect(await again.stop()).toBe(0);
  }
  const third = await startFleetServer({ dataDir: dir });
  try {
    expect(third.stdout).not.toContain('default-policy');
  } finally {
    expect(await third.stop()).toBe(0);
    removeDir(dir);
  }
});
