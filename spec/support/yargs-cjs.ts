// yargs is an ES module, which jest's CommonJS cannot load: made CommonJS once per test file, as
// scripts/build.mjs makes dist/vendor/yargs.js. Call in a file's top level: it adds the beforeAll and
// afterAll, and the returned function gives the factory once beforeAll has run.
import { buildSync } from 'esbuild';
import { join, resolve } from 'node:path';
import type yargsFactory from 'yargs';
import { removeDir, tempDir } from './fleet-server';

export function yargsForTests(): () => typeof yargsFactory {
  let yargs: typeof yargsFactory | undefined;
  const vendor = tempDir('fleet-yargs-');
  beforeAll(() => {
    const outfile = join(vendor, 'yargs.js');
    buildSync({
      stdin: { contents: "module.exports = require('yargs').default;", resolveDir: resolve(__dirname, '../..'), loader: 'js' },
      bundle: true, platform: 'node', format: 'cjs', target: 'node24', outfile, logLevel: 'error',
      banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
      define: { 'import.meta.url': '__import_meta_url' },
    });
    yargs = require(outfile) as typeof yargsFactory;
  });
  afterAll(() => removeDir(vendor));
  return () => yargs!;
}
