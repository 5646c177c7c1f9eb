// Bundles the whole program into one file, dist/fleet-server.js.
import { build } from 'esbuild';
import { execFileSync, execSync } from 'node:child_process';
import { readFileSync, writeFileSync, chmodSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// V8 flags the program is meant to run with (package.json fleetServer.nodeFlags): in the shebang for
// direct runs and `npm start`, in the single executable's execArgv, and in tests and benchmarks.
const nodeFlags = pkg.fleetServer.nodeFlags.join(' ');
let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch { /* not a git checkout */ }

// Protocol messages: proto/*.proto compiled by protobufjs into static code and its typings (the
// generated directories are not committed), bundled below; no .proto file is read at run time.
// The control protocol (src/control/generated) and OpAMP (src/opamp/generated).
const protos = readdirSync('proto').filter((f) => f.endsWith('.proto')).map((f) => `proto/${f}`);
const bin = (name) => new URL(`../node_modules/.bin/${name}`, import.meta.url).pathname;
for (const { dir, name, entry, slim = [] } of [
  { dir: 'src/control/generated', name: 'control', entry: 'proto/elastic-agent-client.proto' },
  // OpAMP needs only encode and decode: no JSON conversion, verification or delimited forms.
  { dir: 'src/opamp/generated', name: 'opamp', entry: 'proto/opamp.proto', slim: ['--no-verify', '--no-convert', '--no-delimited', '--no-typeurl'] },
]) {
  const generated = `${dir}/${name}.js`;
  const stale = !existsSync(generated) || protos.some((p) => statSync(p).mtimeMs > statSync(generated).mtimeMs);
  if (!stale) continue;
  mkdirSync(dir, { recursive: true });
  execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'commonjs', '--no-beautify', '--force-number', ...slim, '-p', 'proto', '-o', generated, entry], { stdio: 'inherit' });
  execFileSync(bin('pbts'), ['-o', `${dir}/${name}.d.ts`, generated], { stdio: 'inherit' });
}

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/fleet-server.js',
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  sourcemap: 'linked',
  legalComments: 'none',
  // CommonJS output (a Node single executable needs it); ESM-only dependencies read import.meta.url.
  banner: { js: `#!/usr/bin/env -S node ${nodeFlags}\nconst __import_meta_url = require('node:url').pathToFileURL(__filename).href;` },
  define: {
    'import.meta.url': '__import_meta_url',
    __FLEET_VERSION__: JSON.stringify(pkg.version),
    __FLEET_COMMIT__: JSON.stringify(commit),
    __FLEET_BUILD_TIME__: JSON.stringify(new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')),
    __FLEET_NODE_FLAGS__: JSON.stringify(pkg.fleetServer.nodeFlags),
  },
  logLevel: 'warning',
});
// Node keeps a module's source in memory as a string: one byte per character if it is all Latin-1, two
// otherwise. A few characters in comments and regular expressions (’ → µ …) would double the 5 MB
// bundle's share of the heap; written as \u escapes (equivalent in strings, regexes and identifiers,
// inert in comments) the text stays ASCII.
const bundle = readFileSync('dist/fleet-server.js', 'utf8');
const ascii = bundle.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
if (ascii !== bundle) writeFileSync('dist/fleet-server.js', ascii);
chmodSync('dist/fleet-server.js', 0o755);

// The Elasticsearch double (test support), runnable on its own: `npm run es-double`.
await build({
  entryPoints: ['spec/support/es-double/main.ts'],
  outfile: 'dist/es-double.js',
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__import_meta_url' },
  logLevel: 'warning',
});
