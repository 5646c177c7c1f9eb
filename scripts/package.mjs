// npm run package: the bundled program as a Node single executable (dist/fleet-server, runs with no
// Node installed), the Elastic Agent component spec (dist/fleet-server.spec.yml), and both in
// dist/fleet-server-<version>-<platform>.tar.gz with its .sha512 beside it, laid out as an agent
// artifact bundle expects a component: one top directory holding the executable and its spec.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { inject } from 'postject';
import { sourceDateEpoch } from './source-date.mjs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const dist = new URL('../dist/', import.meta.url).pathname;
// The names Elastic Agent's packaging gives and looks for (its magefile's platformPackages:
// linux-x86_64, linux-arm64, darwin-x86_64, darwin-aarch64 .tar.gz; windows-x86_64.zip, not made here).
const PLATFORMS = { 'linux-x64': 'linux-x86_64', 'linux-arm64': 'linux-arm64', 'darwin-x64': 'darwin-x86_64', 'darwin-arm64': 'darwin-aarch64' };
const platformName = PLATFORMS[`${platform()}-${arch()}`];
if (!platformName) {
  process.stderr.write(`npm run package: no Elastic Agent package for ${platform()}/${arch()}; linux and darwin, x64 and arm64 are packaged\n`);
  process.exit(1);
}
// The tarball is made with GNU tar's options for an archive that depends only on its content.
if (!execFileSync('tar', ['--version']).toString().includes('GNU tar')) {
  process.stderr.write('npm run package: GNU tar is needed (gtar on macOS: put it first on PATH as tar)\n');
  process.exit(1);
}
const name = `fleet-server-${pkg.version}-${platformName}`;
// One date for the program's build time and the tarball's entries (scripts/source-date.mjs), given to the
// build below so that both agree even outside a git checkout.
const epoch = sourceDateEpoch();

// The single executable runs one script, the program without a shebang line (it carries the shebang's
// flags itself), and carries the libraries dist/vendor/ holds for the bundle as assets, read when first
// required (src/runtime/sea-vendor.ts).
execFileSync(process.execPath, [new URL('build.mjs', import.meta.url).pathname, '--single-file'], { stdio: 'inherit', env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } });
const assets = JSON.parse(readFileSync(`${dist}sea-assets.json`, 'utf8'));
writeFileSync(`${dist}sea-config.json`, JSON.stringify({
  main: `${dist}fleet-server.sea.js`,
  output: `${dist}sea-prep.blob`,
  disableExperimentalSEAWarning: true,
  useCodeCache: true,
  execArgv: pkg.fleetServer.nodeFlags,
  assets: Object.fromEntries(assets.map((name) => [name, `${dist}${name}`])),
}));
// The code cache is made under the flags the executable runs with: V8 rejects a cache made under other
// flags (their hash is part of it), and the program would then compile from source at every start.
const cacheEnv = { ...process.env };
delete cacheEnv.NODE_OPTIONS; // a V8 flag there would be hashed into the cache too
execFileSync(process.execPath, [...pkg.fleetServer.nodeFlags, '--experimental-sea-config', `${dist}sea-config.json`], { stdio: 'inherit', env: cacheEnv });
const exe = `${dist}fleet-server`;
rmSync(exe, { force: true });
copyFileSync(process.execPath, exe);
chmodSync(exe, 0o755);
await inject(exe, 'NODE_SEA_BLOB', readFileSync(`${dist}sea-prep.blob`), { sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2' });
chmodSync(exe, 0o755);

// Spec version 2: one input, `fleet-server`, whose only output is `elasticsearch`; the agent appends
// its monitoring -E settings and path.data to these args.
const spec = `version: 2
inputs:
  - name: fleet-server
    description: "Fleet Server"
    platforms:
      - linux/amd64
      - linux/arm64
      - darwin/amd64
      - darwin/arm64
      - windows/amd64
      - container/amd64
      - container/arm64
    outputs:
      - elasticsearch
    command:
      args:
        - "--agent-mode"
        - "-E"
        - "logging.level=debug"
        - "-E"
        - "logging.to_stderr=true"
`;
writeFileSync(`${dist}fleet-server.spec.yml`, spec);

const dir = `${dist}${name}`;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir);
chmodSync(dir, 0o755);
copyFileSync(exe, `${dir}/fleet-server`);
copyFileSync(`${dist}fleet-server.spec.yml`, `${dir}/fleet-server.spec.yml`);
copyFileSync(new URL('../README.md', import.meta.url).pathname, `${dir}/README.md`);
writeFileSync(`${dir}/fleet-server.yml`, [
  '# Standalone Fleet Server. Under Elastic Agent this file is not read: configuration comes from the agent.',
  'output.elasticsearch:',
  '  hosts: ["http://localhost:9200"]',
  '  service_token: ${FLEET_SERVER_SERVICE_TOKEN}',
  'inputs:',
  '  - type: fleet-server',
  '    server: {host: 0.0.0.0, port: 8220}',
  '',
].join('\n'));
// Modes as shipped, whatever the umask; then an archive that names no builder: entries in name order,
// owned by 0:0 with no user or group names, each dated `epoch` (the commit packaged, or SOURCE_DATE_EPOCH),
// and gzip'd without a name or a time of its own (Node's gzip header carries neither).
for (const f of ['fleet-server.spec.yml', 'README.md', 'fleet-server.yml']) chmodSync(`${dir}/${f}`, 0o644);
chmodSync(`${dir}/fleet-server`, 0o755);
const tarball = `${dist}${name}.tar.gz`;
const tar = spawn('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=@${epoch}`, '--format=gnu', '-cf', '-', '-C', dist, name],
  { stdio: ['ignore', 'pipe', 'inherit'] });
const tarExit = new Promise((resolve) => tar.once('close', resolve));
await pipeline(tar.stdout, createGzip({ level: 9 }), createWriteStream(tarball));
if (await tarExit !== 0) throw new Error('tar failed');
// What Elastic Agent's packaging checks beside each artifact: `<tarball>.sha512` in sha512sum's format.
const sha512 = createHash('sha512');
for await (const chunk of createReadStream(tarball)) sha512.update(chunk);
writeFileSync(`${tarball}.sha512`, `${sha512.digest('hex')}  ${name}.tar.gz\n`);
rmSync(dir, { recursive: true, force: true });
for (const f of ['fleet-server.sea.js', 'sea-config.json', 'sea-prep.blob', 'sea-assets.json']) rmSync(`${dist}${f}`, { force: true });
process.stdout.write(`packaged ${exe} and ${tarball} (with ${name}.tar.gz.sha512)\n`);
