// Jest transformer: TypeScript → CommonJS with esbuild, so tests need no second compiler.
const { transformSync } = require('esbuild');

module.exports = {
  process(source, filename) {
    const out = transformSync(source, {
      loader: 'ts',
      format: 'cjs',
      target: 'node24',
      sourcemap: 'inline',
      sourcefile: filename,
    });
    return { code: out.code };
  },
};
