// What each process loads: the libraries only one mode uses live beside the bundle (dist/vendor/, see
// scripts/build.mjs) and are read by the processes that use them, and by no other; Node's own modules
// that only TLS or the agent's log relay use are not loaded by a plain-HTTP server.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { esSettings } from './support/es-mode';
import { EsDouble } from './support/es-double/server';
import { DIST, removeDir, startFleetServer, tempDir } from './support/fleet-server';

jest.setTimeout(60_000);

/**
 * A preload that writes, as the process exits, the files and Node modules it loaded: one JSON file per
 * process.
 */
function preload(dir: string): string {
  const file = join(dir, 'record-modules.js');
  writeFileSync(file, `process.on('exit', () => require('node:fs').writeFileSync(
    require('node:path').join(${JSON.stringify(dir)}, 'modules-' + process.pid + '.json'),
    JSON.stringify({ files: Object.keys(require.cache), builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)) })));`);
  return file;
}

interface Loaded {
  files: string[];
  builtins: string[];
}

function loads(dir: string): Loaded[] {
  return readdirSync(dir).filter((f) => /^modules-\d+\.json$/.test(f)).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Loaded);
}

/** Per process that ran (the primary and each worker), the names of the dist/vendor files it loaded. */
function vendorLoads(dir: string): string[][] {
  return loads(dir).map((l) => l.files.filter((m) => m.includes('/dist/vendor/')).map((m) => m.split('/').pop()!).sort());
}

/** Per process, which of the named Node modules it loaded. */
function builtinLoads(dir: string, names: string[]): string[][] {
  return loads(dir).map((l) => names.filter((n) => l.builtins.includes(n)));
}

test('the bundle leaves out the Elasticsearch client, gRPC, yargs, and the control protocol\'s and OpAMP\'s messages', () => {
  const bundle = readFileSync(DIST, 'utf8');
  expect(bundle).toContain('import("./vendor/yargs.js")');
  expect(bundle).not.toContain('node_modules/cliui/');
  expect(bundle).toContain('require("./vendor/elasticsearch.js")');
  expect(bundle).toContain('require("./vendor/grpc.js")');
  expect(bundle).toContain('require("./vendor/control-messages.js")');
  expect(bundle).not.toContain('StateObserved');
  expect(bundle).toContain('require("./vendor/opamp-messages.js")');
  expect(bundle).not.toContain('PackageDownloadDetails');
  expect(bundle).not.toContain('node_modules/undici/');
  expect(bundle).not.toContain('node_modules/@grpc/grpc-js/');
});

test('on the embedded store no process loads the Elasticsearch client or gRPC', async () => {
  const dir = tempDir();
  const server = await startFleetServer({
    overrides: ['inputs.0.server.workers=2'], readyText: 'fleet-server workers ready',
    env: { NODE_OPTIONS: `--require ${preload(dir)}` },
  });
  expect(await server.stop()).toBe(0);
  const vendor = vendorLoads(dir);
  expect(vendor).toHaveLength(3);
  expect(vendor).toEqual([[], [], []]);
  // Over plain HTTP no process loads TLS (~2 MiB of RSS each) or readline (the agent's log relay); and
  // none that sat idle loads what only traffic or metrics need: perf_hooks (util/clock.ts),
  // fs/promises (util/fs-async.ts), or what pino's transports would bring (scripts/build.mjs logger-slim).
  // Each did load node:http, so the record is of what they ran.
  expect(builtinLoads(dir, ['http', 'https', 'tls', 'readline', 'perf_hooks', 'fs/promises', 'worker_threads', 'assert', 'module']))
    .toEqual([['http'], ['http'], ['http']]);
  removeDir(dir);
  removeDir(server.dataDir);
});

test('on Elasticsearch the server loads the client, and not gRPC', async () => {
  const dir = tempDir();
  const es = await new EsDouble().start();
  try {
    const server = await startFleetServer({ overrides: esSettings(es), env: { NODE_OPTIONS: `--require ${preload(dir)}` } });
    expect(await server.stop()).toBe(0);
    expect(vendorLoads(dir)).toEqual([['elasticsearch.js']]);
    removeDir(server.dataDir);
  } finally {
    await es.stop();
    removeDir(dir);
  }
});

// runtime/start-up-tiering.ts: start-up compiles nothing with Maglev (whose machine code would then be
// resident in a process that sits idle), and the process tiers up at V8's own threshold once it serves.
// V8 writes its trace to stdout (the logs go to stderr). The functions start-up runs hot (measured at V8's
// own threshold: Node's path normalisation as modules load, esbuild's module initialiser, the timer list);
// those are what must not be marked — counting every mark would also count whatever tiers up after the
// threshold is back, during the stop.
const START_UP_HOT = ['isPosixPathSeparator', 'normalizeString', '__init', 'compareTimersLists', 'hasSubscribers', 'parsePath'];
const startUpMarks = (stdout: string): string[] => [...stdout.matchAll(/<JSFunction (\S+) [^>]*> for optimization to MAGLEV/g)]
  .map((m) => m[1]!).filter((f) => START_UP_HOT.includes(f));

test('a start compiles none of its hot functions with Maglev, and the threshold goes back to V8\'s once the server listens', async () => {
  const server = await startFleetServer({ nodeFlags: ['--trace-opt'] });
  await server.waitFor('V8 tiers functions up at its own thresholds');
  expect(await server.stop()).toBe(0);
  const set = server.stderr.split('\n').find((l) => l.includes('V8 tiers functions up at its own thresholds'));
  expect(JSON.parse(set!)['v8.flags']).toEqual(['--invocation-count-for-maglev=400']);
  expect(startUpMarks(server.stdout)).toEqual([]);
  removeDir(server.dataDir);
});

test('started at V8\'s own threshold (an operator\'s value stands), the same start compiles them with Maglev', async () => {
  const server = await startFleetServer({ nodeFlags: ['--trace-opt', '--invocation-count-for-maglev=400'] });
  expect(await server.stop()).toBe(0);
  expect(server.stderr).not.toContain('V8 tiers functions up at its own thresholds');
  expect(startUpMarks(server.stdout).length).toBeGreaterThan(0);
  removeDir(server.dataDir);
});

/** Every function marked for Maglev after the same 600 status requests, by a server started with `nodeFlags`. */
async function marksAfterRequests(nodeFlags: string[]): Promise<number> {
  const server = await startFleetServer({ nodeFlags: ['--trace-opt', ...nodeFlags] });
  for (let i = 0; i < 600; i++) await (await fetch(`${server.url}/api/status`)).arrayBuffer();
  expect(await server.stop()).toBe(0);
  removeDir(server.dataDir);
  return (server.stdout.match(/for optimization to MAGLEV/g) ?? []).length;
}

test('once it serves, the server tiers up at V8\'s threshold: 600 requests compile more than at the start-up one', async () => {
  // Functions first run by a request get their budget after the threshold is back at 400; a server an
  // operator keeps at 4000 compiles few or none of them in 600 requests.
  const back = await marksAfterRequests([]);
  const kept = await marksAfterRequests(['--invocation-count-for-maglev=4000']);
  expect(back).toBeGreaterThan(2 * kept); // measured: 174–175 against 38
});
