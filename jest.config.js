/** Tests are TypeScript, transformed by esbuild (already a build dependency). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/spec'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': '<rootDir>/spec/support/esbuild-transform.js' },
  testTimeout: 60000,
  maxWorkers: 2,
};
