// npm run package: the bundled program as a Node single executable (dist/fleet-server, runs with no
// Node installed), the Elastic Agent component spec (dist/fleet-server.spec.yml), and both in
// dist/fleet-server-<version>-linux-x86_64.tar.gz, laid out as an agent artifact bundle expects a
// component: one top directory holding the executable and its spec.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { inject } from 'postject';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const dist = new URL('../dist/', import.meta.url).pathname;
const platformName = `${platform()}-${arch() === 'x64' ? 'x86_64' : arch()}`;
const name = `fleet-server-${pkg.version}-${platformName}`;

// The single executable runs one script, the program without a shebang line (it carries the shebang's
// flags itself), and carries the libraries dist/vendor/ holds for the bundle as assets, read when first
// required (src/runtime/sea-vendor.ts).
execFileSync(process.execPath, [new URL('build.mjs', import.meta.url).pathname, '--single-file'], { stdio: 'inherit' });
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
copyFileSync(exe, `${dir}/fleet-server`);
chmodSync(`${dir}/fleet-server`, 0o755);
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
execFileSync('tar', ['-czf', `${dist}${name}.tar.gz`, '-C', dist, name], { stdio: 'inherit' });
rmSync(dir, { recursive: true, force: true });
for (const f of ['fleet-server.sea.js', 'sea-config.json', 'sea-prep.blob', 'sea-assets.json']) rmSync(`${dist}${f}`, { force: true });
process.stdout.write(`packaged ${exe} and ${dist}${name}.tar.gz\n`);
