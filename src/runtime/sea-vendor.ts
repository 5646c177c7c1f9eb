// The single executable's libraries that only one mode uses (scripts/build.mjs, VENDOR: the Elasticsearch
// client, gRPC, yargs, the control protocol's and OpAMP's messages) are assets of the executable beside
// its one script, compiled when first required, as the bundle reads dist/vendor/. Inline, their 2.1 MB of
// source sat in every process's heap, used or not: an idle embedded server was 61.1 MiB as the executable,
// 56.2-56.7 now (docs/workers.md, Cost). Only the single-file build (scripts/build.mjs --single-file) links this.
import { getAsset } from 'node:sea';
import { dirname, join } from 'node:path';
import { compileFunction } from 'node:vm';

interface CommonJsModule {
  exports: unknown;
}

const loaded = new Map<string, CommonJsModule>();

/** module.exports of the vendor bundle `name` (dist/vendor/<name>.js at build time). */
export function seaVendor(name: string): unknown {
  const done = loaded.get(name);
  if (done) return done.exports;
  // Where the bundle's copy would be: its file name is what the library sees in __filename and stack traces.
  const filename = join(dirname(process.execPath), 'vendor', `${name}.js`);
  const run = compileFunction(getAsset(`vendor/${name}.js`, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename });
  const module: CommonJsModule = { exports: {} };
  loaded.set(name, module);
  try {
    // The executable's require: built-in modules only, all a vendor bundle asks for.
    run.call(module.exports, module.exports, require, module, filename, dirname(filename));
  } catch (err) {
    // As Node's loader does: a module whose top level threw is not kept half-made for the next require.
    loaded.delete(name);
    throw err;
  }
  return module.exports;
}
