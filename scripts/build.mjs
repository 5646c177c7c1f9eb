// Bundles the whole program into one file, dist/fleet-server.js.
import { build } from 'esbuild';
import { execFileSync, execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync, writeFileSync, chmodSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { buildTime, sourceDateEpoch } from './source-date.mjs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// V8 flags the program is meant to run with (package.json fleetServer.nodeFlags): in the shebang for
// direct runs and `npm start`, in the single executable's execArgv, and in tests and benchmarks.
const nodeFlags = pkg.fleetServer.nodeFlags.join(' ');
// ...and the environment it is meant to start in (fleetServer.env: the C library's allocator settings),
// set by `env` in the shebang before node starts.
const startEnv = Object.entries(pkg.fleetServer.env).map(([k, v]) => `${k}=${v} `).join('');
let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch { /* not a git checkout */ }
// Dated by the sources, not the clock: the same commit builds the same bundle (scripts/source-date.mjs).
const builtAt = buildTime(sourceDateEpoch());

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

// Node keeps a module's source in memory as a string: one byte per character if it is all Latin-1, two
// otherwise. A few characters in comments and regular expressions (’ → µ …) would double a bundle's share
// of the heap; written as \u escapes (equivalent in strings, regexes and identifiers, inert in comments)
// the text stays ASCII.
function asciiOnly(file) {
  const text = readFileSync(file, 'utf8');
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (ascii !== text) writeFileSync(file, ascii);
}

// Libraries only one mode uses, each bundled on its own beside the program (dist/vendor/) and read
// when first required: the Elasticsearch client (with undici, its transport and OpenTelemetry) only on
// the Elasticsearch store, gRPC only under Elastic Agent. Every process keeps its whole program's source
// text in its heap and the parser's leftovers in its malloc heap, ~2.4 bytes of idle RSS per byte
// of bundle: in one file these 3.6 MB cost each process (the primary and every worker) ~9 MiB though an
// embedded server never runs them. They import nothing of ours, so no module of the program is
// duplicated. The single executable (`--single-file`, for npm run package) carries them as assets.
const VENDOR = { '@elastic/elasticsearch': 'elasticsearch', '@grpc/grpc-js': 'grpc', yargs: 'yargs' };
// The control protocol's messages (protobufjs static code, 0.18 MB), which only agent mode reads, likewise,
// and OpAMP's (0.1 MB), read at the first OpAMP message (src/opamp/codec.ts); with them goes the protobuf
// runtime, which nothing else uses. A single process idle: 66.2-66.7 -> 64.7-64.8 MiB RSS. And yargs (0.2 MB
// with cliui), which only the admin commands and an unusual start's command line load (src/cli/server-args.ts):
// 63.9-64.1 MiB.
// Each as dist/vendor/<name>-messages.js.
const PROTO_VENDOR = { control: 'src/control/generated/control.js', opamp: 'src/opamp/generated/opamp.js' };
const singleFile = process.argv.includes('--single-file');
/** The vendor bundle (dist/vendor/<name>.js) a module of the program imports, if it is one. */
function vendorOf(b, onVendor) {
  b.onResolve({ filter: /^(@elastic\/elasticsearch|@grpc\/grpc-js|yargs)$/ }, (a) => onVendor(VENDOR[a.path]));
  const generated = new RegExp(`[\\\\/]generated[\\\\/](${Object.keys(PROTO_VENDOR).join('|')})$`);
  b.onResolve({ filter: generated }, (a) => onVendor(`${generated.exec(a.path)[1]}-messages`));
}
const vendorExternal = {
  name: 'vendor-external',
  setup(b) {
    vendorOf(b, (name) => ({ path: `./vendor/${name}.js`, external: true }));
  },
};
// The single executable carries the same bundles as assets (scripts/package.mjs), each read when first
// required (src/runtime/sea-vendor.ts).
const seaLoader = fileURLToPath(new URL('../src/runtime/sea-vendor.ts', import.meta.url));
const vendorAssets = {
  name: 'vendor-assets',
  setup(b) {
    vendorOf(b, (name) => ({ path: name, namespace: 'sea-vendor' }));
    b.onLoad({ filter: /.*/, namespace: 'sea-vendor' }, (a) => ({
      contents: `module.exports = require(${JSON.stringify(seaLoader)}).seaVendor(${JSON.stringify(a.path)});`,
      loader: 'js',
      resolveDir: '.',
    }));
  },
};
// In the Elasticsearch client's bundle: the client runs on its HttpConnection (node:http, the
// parser built into Node; src/store/elasticsearch/connection.ts), so undici (0.7 MB of source, and a
// WebAssembly HTTP parser compiled at its first request) is replaced by a module that refuses to be
// used; and of @opentelemetry/core the transport calls only suppressTracing, which is taken from its
// own file instead of the package's index (that pulls in 0.2 MB of semantic conventions).
const esClientSlim = {
  name: 'es-client-slim',
  setup(b) {
    // Only for the transport's own imports: anything else asking for these gets the real packages.
    const fromTransport = (a) => /[\\/]@elastic[\\/]transport[\\/]/.test(a.importer);
    b.onResolve({ filter: /^undici$/ }, (a) => (fromTransport(a) ? { path: 'undici', namespace: 'no-undici' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'no-undici' }, () => ({
      contents: "const refuse = () => { throw new Error('undici is not bundled: the Elasticsearch client runs on its HttpConnection'); };"
        + ' module.exports = { Pool: refuse, buildConnector: refuse, errors: {} };',
      loader: 'js',
    }));
    b.onResolve({ filter: /^@opentelemetry\/core$/ }, (a) => (fromTransport(a) ? {
      path: fileURLToPath(new URL('../node_modules/@opentelemetry/core/build/src/trace/suppress-tracing.js', import.meta.url)),
    } : undefined));
  },
};
// pino's transports run log writers in worker threads; the program writes through pino's own destinations
// (SonicBoom) and multistream, never a transport, and runs no worker thread. Loading the transport code
// loads thread-stream, worker_threads, node:module and node:assert with it, and SonicBoom loads node:assert
// for one internal check (that its descriptor is a number, when it closes): with the rest of the start-up
// cuts of 2026-12-04, docs/workers.md (Cost). Those imports get stand-ins that say so if they are reached.
const loggerSlim = {
  name: 'logger-slim',
  setup(b) {
    const from = (pkg) => (a) => new RegExp(`[\\\\/]node_modules[\\\\/]${pkg}[\\\\/]`).test(a.importer);
    const stub = (ns, contents) => b.onLoad({ filter: /.*/, namespace: ns }, () => ({ contents, loader: 'js' }));
    b.onResolve({ filter: /^\.\/(lib\/)?transport$/ }, (a) => (from('pino')(a) ? { path: 'transport', namespace: 'no-pino-transport' } : undefined));
    stub('no-pino-transport', "module.exports = () => { throw new Error('pino transports are not bundled: log through a destination'); };");
    // tools.js asks only whether it runs on the main thread, to flush at exit: it always does here.
    b.onResolve({ filter: /^worker_threads$/ }, (a) => (from('pino')(a) ? { path: 'worker_threads', namespace: 'main-thread' } : undefined));
    stub('main-thread', 'module.exports = { isMainThread: true };');
    b.onResolve({ filter: /^assert$/ }, (a) => (from('sonic-boom')(a) ? { path: 'assert', namespace: 'plain-assert' } : undefined));
    stub('plain-assert', "module.exports = (ok, message) => { if (!ok) throw new Error(message); };");
  },
};
const common = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  legalComments: 'none',
  // Without the indentation and line breaks: the source text every process holds is a third smaller,
  // and the line-ends table V8 builds for a stack trace (pino asks for one at each logger it makes)
  // shrinks from 55,000 lines to a few hundred: ~1.1 MiB less idle RSS per process. Names are kept, so
  // stack traces still name every function; `node --enable-source-maps` maps them back to src/ through
  // the linked source map.
  minifyWhitespace: true,
  define: { 'import.meta.url': '__import_meta_url' },
  logLevel: 'warning',
};
const metaUrl = "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;";

const outfile = singleFile ? 'dist/fleet-server.sea.js' : 'dist/fleet-server.js';
await build({
  ...common,
  entryPoints: ['src/main.ts'],
  outfile,
  sourcemap: singleFile ? false : 'linked',
  plugins: singleFile ? [vendorAssets, loggerSlim] : [vendorExternal, loggerSlim],
  // CommonJS output (a Node single executable needs it); ESM-only dependencies read import.meta.url.
  // The single executable runs without a shebang line, with the flags the shebang carries.
  banner: { js: `${singleFile ? '' : `#!/usr/bin/env -S ${startEnv}node ${nodeFlags}\n`}${metaUrl}` },
  define: {
    ...common.define,
    __FLEET_VERSION__: JSON.stringify(pkg.version),
    __FLEET_COMMIT__: JSON.stringify(commit),
    __FLEET_BUILD_TIME__: JSON.stringify(builtAt),
    __FLEET_NODE_FLAGS__: JSON.stringify(pkg.fleetServer.nodeFlags),
    __FLEET_START_ENV__: JSON.stringify(pkg.fleetServer.env),
  },
});
asciiOnly(outfile);
if (!singleFile) chmodSync(outfile, 0o755);
const vendorBuilds = [...Object.entries(VENDOR), ...Object.entries(PROTO_VENDOR).map(([n, f]) => [`./${f}`, `${n}-messages`])];
const vendorFiles = vendorBuilds.map(([, file]) => file);
for (const [name, file] of vendorBuilds) {
  await build({
    ...common,
    // yargs is an ES module read through `import()`, which takes module.exports as its default export.
    stdin: { contents: `module.exports = require(${JSON.stringify(name)})${name === 'yargs' ? '.default' : ''};`, resolveDir: '.', loader: 'js' },
    outfile: `dist/vendor/${file}.js`,
    banner: { js: metaUrl },
    plugins: file === 'elasticsearch' ? [esClientSlim] : [],
  });
  asciiOnly(`dist/vendor/${file}.js`);
}
if (singleFile) {
  // What the executable carries as assets (scripts/package.mjs): the bundles just built, by the names
  // src/runtime/sea-vendor.ts asks for.
  writeFileSync('dist/sea-assets.json', JSON.stringify(vendorFiles.map((f) => `vendor/${f}.js`)));
  process.exit(0);
}

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
