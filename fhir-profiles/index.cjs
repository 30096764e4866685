// Loads the conformance resources kept as reviewed JSON in this folder.
const { readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');

const dirs = ['Questionnaire', 'CodeSystem', 'ValueSet', 'StructureDefinition', 'SearchParameter'];

/** Every conformance resource in this folder (not the examples), parsed. */
function loadConformanceResources() {
  const out = [];
  for (const file of readdirSync(__dirname).sort()) {
    if (file.endsWith('.json') && dirs.some((d) => file.startsWith(d + '-'))) {
      out.push(JSON.parse(readFileSync(join(__dirname, file), 'utf8')));
    }
  }
  return out;
}

/** Example resources under examples/ (used as fixtures and demo data). */
function loadExamples() {
  const dir = join(__dirname, 'examples');
  let files = [];
  try { files = readdirSync(dir).sort(); } catch { return []; }
  return files.filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
}

module.exports = { profilesDir: __dirname, loadConformanceResources, loadExamples };
