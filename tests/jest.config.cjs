// jose 6 and fhir-kit-client ship ESM only: let @swc/jest compile them to CommonJS with the rest.
const base = require('../jest.base.cjs');
module.exports = {
  ...base,
  transformIgnorePatterns: [base.transformIgnorePatterns[0].replace('(fhir-kit-client|', '(jose|fhir-kit-client|')],
  testTimeout: 60_000,
};
