// jose 6 and fhir-kit-client ship ESM only: let @swc/jest compile them to CommonJS with the rest.
// fhir-kit-client's exports map offers only an "import" condition, so point jest at its entry.
const base = require('../jest.base.cjs');
module.exports = {
  ...base,
  transformIgnorePatterns: [base.transformIgnorePatterns[0].replace('(fhir-kit-client|', '(jose|fhir-kit-client|graphile-worker|')],
  moduleNameMapper: { '^fhir-kit-client$': '<rootDir>/node_modules/fhir-kit-client/dist/index.js' },
  testTimeout: 60_000,
};
