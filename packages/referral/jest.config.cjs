// fhir-kit-client ships ESM only and its exports map offers only an "import" condition: point jest
// at its entry (the base config already lets @swc/jest compile it to CommonJS).
const base = require('../../jest.base.cjs');
module.exports = {
  ...base,
  moduleNameMapper: { '^fhir-kit-client$': '<rootDir>/node_modules/fhir-kit-client/dist/index.js' },
  testTimeout: 30_000,
};
