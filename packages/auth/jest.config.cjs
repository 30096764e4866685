// jose 6 ships ESM only: let @swc/jest compile it to CommonJS with the rest.
const base = require('../../jest.base.cjs');
module.exports = {
  ...base,
  transformIgnorePatterns: [base.transformIgnorePatterns[0].replace('(fhir-kit-client|', '(jose|fhir-kit-client|')],
};
