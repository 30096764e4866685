// Shared jest config: TypeScript through @swc/jest, compiled to CommonJS for jest's runtime.
// ESM-only dependencies (jose, fhir-kit-client) are transformed too. fhir-kit-client's exports
// map offers only an "import" condition, so jest is pointed at its entry file.
const { realpathSync } = require('node:fs');
const { join } = require('node:path');

const fhirKitClient = join(realpathSync(join(__dirname, 'packages/referral/node_modules/fhir-kit-client')), 'dist/index.js');

module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.(t|j|mj)s$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
      },
    ],
  },
  transformIgnorePatterns: ['/node_modules/(?!(\\.pnpm/)?(jose|fhir-kit-client|graphile-worker|query-string|decode-uri-component|split-on-first|filter-obj)[@/])'],
  moduleNameMapper: { '^fhir-kit-client$': fhirKitClient },
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  testMatch: ['**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
};
