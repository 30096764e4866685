import type { CodeSystem, Extension, Questionnaire, QuestionnaireItem, QuestionnaireResponse, StructureDefinition } from '@medplum/fhirtypes';
import { validateResource } from '@medplum/core';
import { createValidator, loadDefinitions } from '@tic/fhir';
import { loadExamples } from '@tic/fhir-profiles';
import { BASE, CALCULATED_EXPRESSION, DATA_ABSENT_REASON, LOINC, OBSERVATION_EXTRACT } from './constants.ts';
import { indexInstruments, screeningConformanceResources } from './instruments.ts';
import { weightedOptions } from './items.ts';
import { responseIssues } from './validate-response.ts';

// LOINC codes verified in /work/shared/domain/instruments.md (✅ only; ◐ codes are not allowed).
const VERIFIED_LOINC = new Set([
  // PC-PTSD-5
  '102010-6', '102011-4', '102012-2', '102013-0', '102014-8', '102015-5', '102016-3', '102017-1', 'LA33-6', 'LA32-8',
  // PCL-5
  '101697-1', '101698-9', '101703-7', '101704-5', '101705-2', '101706-0', '101707-8', '101708-6', '101709-4', '101710-2',
  '101699-7', '101700-3', '101701-1', '101711-0', '101712-8', '101713-6', '101714-4', '101702-9', '101715-1', '101716-9',
  '101717-7', '101718-5', 'LA6568-5', 'LA13863-8', 'LA13902-4',
  // ACE
  '112441-1', '112442-9', '111771-2',
  // PHQ-9 / PHQ-2
  '44249-1', '44261-6', '44250-9', '44255-8', '44259-0', '44254-1', '44251-7', '44258-2', '44252-5', '44253-3', '44260-8',
  'LA6569-3', 'LA6570-1', 'LA6571-9', '55757-9', '55758-7',
  // GAD-7 (panel 69737-5 is only ◐ and therefore absent)
  '69725-0', '68509-9', '69733-4', '69734-2', '69735-9', '69689-8', '69736-7', '70274-6',
]);

const resources = screeningConformanceResources();
const questionnaires = resources.filter((r): r is Questionnaire => r.resourceType === 'Questionnaire');
const codeSystems = resources.filter((r): r is CodeSystem => r.resourceType === 'CodeSystem');
const extensions = resources.filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition');

function allItems(items: QuestionnaireItem[] | undefined): QuestionnaireItem[] {
  return (items ?? []).flatMap((i) => [i, ...allItems(i.item)]);
}

function loincCodes(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v) => loincCodes(v, out));
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (o.system === LOINC && typeof o.code === 'string') out.push(o.code);
    Object.values(o).forEach((v) => loincCodes(v, out));
  }
  return out;
}

describe('screening conformance resources', () => {
  it('hosts the six instruments, three code systems and the definitions of its three extensions', () => {
    expect(questionnaires.map((q) => q.id).sort()).toEqual(['ace', 'gad-7', 'pc-ptsd-5', 'pcl-5', 'phq-9', 'qpr-15']);
    expect(codeSystems.map((c) => c.id).sort()).toEqual(['screening-answers', 'screening-codes', 'screening-severity']);
    expect(extensions.map((e) => e.id).sort()).toEqual(['screening-band', 'screening-cluster', 'screening-cutoff']);
  });

  // Every project extension a Questionnaire uses has a definition, and each use of it has the
  // sub-extensions that definition lists ("`name` (valueType, min..max)"), with their value types
  // and counts. (The definitions are differentials without slices: the project's snapshot
  // generator does not do slices, so the sub-extensions are documented, and checked here.)
  it.each(questionnaires.map((q) => [q.id, q] as const))('%s uses project extensions as their StructureDefinitions define them', (_, q) => {
    const uses = allItems(q.item).flatMap((i) => (i.extension ?? []).filter((e) => e.url.startsWith(`${BASE}/`)));
    for (const ext of uses) {
      const sd = extensions.find((e) => e.url === ext.url);
      expect(sd).toBeDefined();
      const subs = [...(sd!.description ?? '').matchAll(/`(\w+)` \((value\w+), (\d)\.\.(\d|\*)\)/g)].map((m) => ({ name: m[1], type: m[2], min: Number(m[3]), max: m[4] }));
      expect(subs.length).toBeGreaterThan(0);
      const given: Extension[] = ext.extension ?? [];
      expect(Object.keys(ext).filter((k) => k.startsWith('value'))).toEqual([]);
      for (const x of given) expect(subs.map((d) => d.name)).toContain(x.url);
      for (const d of subs) {
        const mine = given.filter((x) => x.url === d.name);
        expect(mine.length).toBeGreaterThanOrEqual(d.min);
        if (d.max !== '*') expect(mine.length).toBeLessThanOrEqual(Number(d.max));
        for (const x of mine) expect(Object.keys(x).filter((k) => k.startsWith('value'))).toEqual([d.type]);
      }
      const minSubs = sd!.differential?.element?.find((e) => e.id === 'Extension.extension')?.min ?? 0;
      expect(given.length).toBeGreaterThanOrEqual(minSubs);
    }
  });

  const validator = createValidator({ terminology: codeSystems, profiles: extensions });
  beforeAll(() => loadDefinitions());

  it.each(resources.map((r) => [`${r.resourceType}/${r.id}`, r] as const))('%s is structurally valid R4', (_, r) => {
    expect(validateResource(r).filter((i) => i.severity === 'error')).toEqual([]);
    expect(validator.validate(r).filter((i) => i.severity === 'error')).toEqual([]);
  });

  it.each(questionnaires.map((q) => [q.id, q] as const))('%s has a canonical URL, version, copyright and only verified LOINC codes', (id, q) => {
    expect(q.url).toBe(`https://tic-exchange.org/fhir/Questionnaire/${id}`);
    expect(q.version).toBe('1.0.0');
    expect(q.copyright?.length).toBeGreaterThan(20);
    const unverified = loincCodes(q).filter((c) => !VERIFIED_LOINC.has(c));
    expect(unverified).toEqual([]);
  });

  it.each(questionnaires.map((q) => [q.id, q] as const))('%s: every question can be declined, every scored item is weighted', (_, q) => {
    const questions = allItems(q.item).filter((i) => i.type === 'choice');
    for (const item of questions) {
      expect(item.answerOption?.some((o) => o.valueCoding?.system === DATA_ABSENT_REASON && o.valueCoding.code === 'asked-declined')).toBe(true);
    }
    const scores = allItems(q.item).filter((i) => i.extension?.some((e) => e.url === CALCULATED_EXPRESSION));
    expect(scores).toHaveLength(1);
    expect(scores[0].extension?.some((e) => e.url === OBSERVATION_EXTRACT)).toBe(true);
    const expression = scores[0].extension?.find((e) => e.url === CALCULATED_EXPRESSION)?.valueExpression?.expression ?? '';
    const scored = questions.filter((i) => expression.includes(`'${i.linkId}'`));
    expect(scored.length).toBeGreaterThan(0);
    for (const item of scored) expect(weightedOptions(item).length).toBe((item.answerOption?.length ?? 0) - 1);
  });

  it('every example QuestionnaireResponse is valid against its Questionnaire', () => {
    const index = indexInstruments(questionnaires);
    const examples = loadExamples().filter((r): r is QuestionnaireResponse => r.resourceType === 'QuestionnaireResponse');
    expect(examples.length).toBeGreaterThanOrEqual(3);
    for (const qr of examples) {
      const q = index.find(qr.questionnaire ?? '');
      expect(q).toBeDefined();
      expect(responseIssues(qr, q as Questionnaire)).toEqual([]);
      expect(validator.validate(qr).filter((i) => i.severity === 'error')).toEqual([]);
    }
  });
});
