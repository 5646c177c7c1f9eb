// Bundles the whole program into one file, dist/fleet-server.js.
import { build } from 'esbuild';
import { execSync } from 'node:child_process';
import { readFileSync, chmodSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// V8 flags the program is meant to run with (package.json fleetServer.nodeFlags): in the shebang for
// direct runs and `npm start`, in the single executable's execArgv, and in tests and benchmarks.
const nodeFlags = pkg.fleetServer.nodeFlags.join(' ');
let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch { /* not a git checkout */ }

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
  },
  logLevel: 'warning',
});
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
