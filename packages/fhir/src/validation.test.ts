import type { Bundle, CodeSystem, Observation, OperationOutcomeIssue, Patient, QuestionnaireResponse, Resource, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { OperationOutcomeError, statusForOutcome } from './outcomes.ts';
import { createValidator } from './validation.ts';

const LOINC = 'http://loinc.org';
// PHQ-9 total score, verified in /work/shared/domain/instruments.md.
const phq9Total = { coding: [{ system: LOINC, code: '44261-6' }] };

const patient: Patient = {
  resourceType: 'Patient',
  id: 'p-1',
  meta: { versionId: '1', lastUpdated: '2024-05-01T10:00:00.000Z' },
  text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Test</div>' },
  identifier: [{ use: 'official', system: 'http://example.org/mrn', value: '123' }],
  active: true,
  name: [{ use: 'official', family: 'Doe', given: ['Alex'] }],
  telecom: [{ system: 'phone', value: '555-0100', use: 'mobile' }],
  gender: 'other',
  birthDate: '1990-02-28',
  address: [{ use: 'home', type: 'physical', city: 'Springfield' }],
  contact: [{ telecom: [{ system: 'email', value: 'c@example.org' }] }],
};

const observation: Observation = {
  resourceType: 'Observation',
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' }] }],
  code: phq9Total,
  subject: { reference: 'Patient/p-1' },
  effectiveDateTime: '2024-05-01T09:30:00Z',
  valueQuantity: { value: 12, comparator: '>=', unit: '{score}', system: 'http://unitsofmeasure.org', code: '{score}' },
};

const questionnaireResponse: QuestionnaireResponse = {
  resourceType: 'QuestionnaireResponse',
  questionnaire: 'http://example.org/fhir/Questionnaire/test|1.0.0',
  status: 'completed',
  subject: { reference: 'Patient/p-1' },
  authored: '2024-05-01T09:30:00+02:00',
  item: [
    { linkId: '1', answer: [{ valueCoding: { system: LOINC, code: 'LA6568-5' } }] },
    { linkId: 'g', item: [{ linkId: 'g.1', answer: [{ valueInteger: 3 }, { valueString: 'free text' }] }] },
  ],
};

const bundle: Bundle = {
  resourceType: 'Bundle',
  type: 'transaction',
  entry: [
    { fullUrl: 'urn:uuid:7f0b6a3e-3c1d-4f5e-9a2b-1c2d3e4f5a6b', resource: patient, request: { method: 'POST', url: 'Patient' } },
    { resource: observation, request: { method: 'POST', url: 'Observation' } },
  ],
};

function exprs(issues: OperationOutcomeIssue[]): string[] {
  return issues.filter((i) => i.severity === 'error').flatMap((i) => i.expression ?? []);
}

function thrown(fn: () => void): OperationOutcomeError {
  try {
    fn();
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err;
    throw err;
  }
  throw new Error('expected an OperationOutcomeError');
}

describe('createValidator', () => {
  const validator = createValidator();

  it.each([
    ['Patient', patient],
    ['Observation', observation],
    ['QuestionnaireResponse', questionnaireResponse],
    ['Bundle', bundle],
  ])('accepts a valid %s', (_type, resource) => {
    expect(validator.validate(resource as Resource)).toEqual([]);
    expect(() => validator.assertValid(resource as Resource)).not.toThrow();
  });

  describe('structure (medplum)', () => {
    it('rejects an unknown element', () => {
      const issues = validator.validate({ ...patient, favouriteColour: 'blue' } as Patient);
      expect(issues).toEqual([expect.objectContaining({ severity: 'error', code: 'structure', expression: ['Patient.favouriteColour'] })]);
    });

    it('rejects a wrong datatype', () => {
      const issues = validator.validate({ ...patient, active: 'yes' } as unknown as Patient);
      expect(exprs(issues)).toEqual(['Patient.active']);
      expect(issues[0]?.code).toBe('structure');
    });

    it('rejects malformed and impossible dates', () => {
      expect(exprs(validator.validate({ ...patient, birthDate: '01/02/1990' }))).toEqual(['Patient.birthDate']);
      expect(exprs(validator.validate({ ...patient, birthDate: '1990-02-30' }))).toEqual(['Patient.birthDate']);
      expect(exprs(validator.validate({ ...observation, effectiveDateTime: '2024-05-01 09:30' }))).toEqual(['Observation.effectiveDateTime']);
    });

    it('rejects a malformed id, also in contained resources', () => {
      const issues = validator.validate({ ...patient, id: 'not valid!' });
      expect(issues).toEqual([expect.objectContaining({ code: 'value', expression: ['Patient.id'] })]);
      const withContained = { ...observation, contained: [{ resourceType: 'Patient', id: 'a_b' }] } as Observation;
      expect(exprs(validator.validate(withContained))).toEqual(['Observation.contained[0].id']);
    });

    it('rejects missing required elements', () => {
      const issues = validator.validate({ resourceType: 'Observation' } as Observation);
      expect(exprs(issues).sort()).toEqual(['Observation.code', 'Observation.status']);
      expect(issues.every((i) => i.code === 'structure')).toBe(true);
    });

    it('rejects an unknown resource type', () => {
      expect(validator.validate({ resourceType: 'Spaceship' } as unknown as Resource)).toEqual([
        expect.objectContaining({ severity: 'error', code: 'structure', expression: ['resourceType'] }),
      ]);
    });

    it('reports invariants', () => {
      const bad = { ...observation, dataAbsentReason: { text: 'not asked' } };
      expect(validator.validate(bad)).toEqual([expect.objectContaining({ code: 'invariant' })]);
    });
  });

  describe('required bindings', () => {
    const badCode = (issues: OperationOutcomeIssue[], expression: string): void => {
      expect(issues).toEqual([expect.objectContaining({ severity: 'error', code: 'code-invalid', expression: [expression] })]);
    };

    it('rejects codes outside required value sets on resource elements', () => {
      badCode(validator.validate({ ...patient, gender: 'robot' } as unknown as Patient), 'Patient.gender');
      badCode(validator.validate({ ...observation, status: 'foo' } as unknown as Observation), 'Observation.status');
      badCode(validator.validate({ ...questionnaireResponse, status: 'done' } as unknown as QuestionnaireResponse), 'QuestionnaireResponse.status');
    });

    it('rejects bad codes inside datatypes, at any depth', () => {
      badCode(validator.validate({ ...patient, identifier: [{ value: 'x' }, { use: 'bogus', value: 'y' }] } as unknown as Patient), 'Patient.identifier[1].use');
      badCode(validator.validate({ ...patient, name: [{ use: 'nickname-ish', family: 'D' }] } as unknown as Patient), 'Patient.name[0].use');
      badCode(validator.validate({ ...patient, contact: [{ telecom: [{ system: 'pigeon', value: 'x' }] }] } as unknown as Patient), 'Patient.contact[0].telecom[0].system');
      badCode(validator.validate({ ...patient, text: { status: 'draft', div: patient.text?.div } } as unknown as Patient), 'Patient.text.status');
    });

    it('names the choice element actually used (valueQuantity) in the expression', () => {
      const bad = { ...observation, valueQuantity: { value: 1, comparator: '~' } } as unknown as Observation;
      badCode(validator.validate(bad), 'Observation.valueQuantity.comparator');
    });

    it('checks a primitive that carries an extension', () => {
      const bad = { ...patient, gender: 'robot', _gender: { extension: [{ url: 'http://example.org/ext', valueString: 'x' }] } } as unknown as Patient;
      badCode(validator.validate(bad), 'Patient.gender');
    });

    it('checks contained resources and Bundle entries', () => {
      const withContained = { ...patient, contained: [{ ...observation, status: 'maybe' }] } as unknown as Patient;
      badCode(validator.validate(withContained), 'Patient.contained[0].status');
      const b = { ...bundle, entry: [{ resource: { ...patient, gender: 'robot' }, request: { method: 'POST', url: 'Patient' } }] } as unknown as Bundle;
      badCode(validator.validate(b), 'Bundle.entry[0].resource.gender');
      badCode(validator.validate({ resourceType: 'Bundle', type: 'pile', entry: [{ resource: patient }] } as unknown as Bundle), 'Bundle.type');
    });

    describe('on a CodeableConcept (Condition.clinicalStatus)', () => {
      const clinical = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
      const condition = (clinicalStatus: unknown): Resource =>
        ({ resourceType: 'Condition', subject: { reference: 'Patient/p-1' }, clinicalStatus }) as Resource;

      it('accepts a coding from the value set, alongside codings of other systems', () => {
        expect(validator.validate(condition({ coding: [{ system: clinical, code: 'active' }] }))).toEqual([]);
        expect(validator.validate(condition({ coding: [{ system: 'http://example.org/local', code: 'x' }, { system: clinical, code: 'resolved' }], text: 'Resolved' }))).toEqual([]);
      });

      it('rejects a concept whose codings are all outside the value set', () => {
        badCode(validator.validate(condition({ coding: [{ system: clinical, code: 'cured' }] })), 'Condition.clinicalStatus');
        badCode(validator.validate(condition({ coding: [{ system: 'http://example.org/local', code: 'active' }] })), 'Condition.clinicalStatus');
      });

      it('rejects text without a coding (required strength)', () => {
        badCode(validator.validate(condition({ text: 'active' })), 'Condition.clinicalStatus');
      });
    });

    it('assertValid throws 400 with the binding issue', () => {
      const err = thrown(() => validator.assertValid({ ...patient, gender: 'robot' } as unknown as Patient));
      expect(statusForOutcome(err)).toBe(400);
      expect(err.outcome.issue?.[0]).toMatchObject({ code: 'code-invalid', expression: ['Patient.gender'] });
      // no resource content in the message
      expect(err.message).not.toContain('robot');
    });
  });

  describe('profiles', () => {
    const profileUrl = 'http://example.org/fhir/StructureDefinition/test-patient-birthdate';
    const birthDateRequired: StructureDefinition = {
      resourceType: 'StructureDefinition',
      url: profileUrl,
      name: 'TestPatientBirthDate',
      status: 'draft',
      kind: 'resource',
      abstract: false,
      type: 'Patient',
      baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient',
      derivation: 'constraint',
      differential: { element: [{ id: 'Patient.birthDate', path: 'Patient.birthDate', min: 1 }] },
    };

    const cs: CodeSystem = {
      resourceType: 'CodeSystem',
      url: 'http://example.org/fhir/CodeSystem/test-score-codes',
      status: 'active',
      content: 'complete',
      concept: [{ code: 'total' }, { code: 'subscore' }],
    };
    const scoreCodes: ValueSet = {
      resourceType: 'ValueSet',
      url: 'http://example.org/fhir/ValueSet/test-score-codes',
      status: 'active',
      compose: { include: [{ system: cs.url }, { system: LOINC, concept: [{ code: '44261-6' }] }] },
    };
    const scoreObservation: StructureDefinition = {
      ...birthDateRequired,
      url: 'http://example.org/fhir/StructureDefinition/test-score-observation',
      name: 'TestScoreObservation',
      type: 'Observation',
      baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Observation',
      differential: {
        element: [
          { id: 'Observation.code', path: 'Observation.code', binding: { strength: 'required', valueSet: scoreCodes.url } },
          { id: 'Observation.subject', path: 'Observation.subject', min: 1 },
        ],
      },
    };
    const v = createValidator({ profiles: [birthDateRequired], terminology: [cs] });
    v.addProfile(scoreObservation);
    v.addTerminology(scoreCodes);

    it('accepts a resource that meets its profile', () => {
      expect(v.validate({ ...patient, meta: { profile: [profileUrl] } })).toEqual([]);
      expect(v.validate({ ...observation, meta: { profile: [scoreObservation.url as string] } })).toEqual([]);
    });

    it('rejects a profile violation with 422', () => {
      const { birthDate: _omit, ...noBirthDate } = patient;
      const resource: Patient = { ...noBirthDate, meta: { profile: [profileUrl] } };
      expect(exprs(validator.validate(resource))).toEqual([]); // the base validator knows no profile
      const err = thrown(() => v.assertValid(resource));
      expect(statusForOutcome(err)).toBe(422);
      expect(err.outcome.issue).toEqual([expect.objectContaining({ severity: 'error', expression: ['Patient.birthDate'] })]);
    });

    it('checks bindings a profile adds, against project terminology (422)', () => {
      const resource: Observation = { ...observation, code: { coding: [{ system: LOINC, code: '44249-1' }] }, meta: { profile: [scoreObservation.url as string] } };
      const err = thrown(() => v.assertValid(resource));
      expect(statusForOutcome(err)).toBe(422);
      expect(err.outcome.issue).toEqual([expect.objectContaining({ code: 'code-invalid', expression: ['Observation.code'] })]);
      const local: Observation = { ...resource, code: { coding: [{ system: cs.url, code: 'subscore' }] } };
      expect(v.validate(local)).toEqual([]);
    });

    it('answers 400, not 422, when base rules fail too', () => {
      const { birthDate: _omit, ...noBirthDate } = patient;
      const resource = { ...noBirthDate, gender: 'robot', meta: { profile: [profileUrl] } } as unknown as Patient;
      const err = thrown(() => v.assertValid(resource));
      expect(statusForOutcome(err)).toBe(400);
      expect(exprs(err.outcome.issue ?? []).sort()).toEqual(['Patient.birthDate', 'Patient.gender']);
    });

    it('reports a base binding error once, with 400, for a resource that claims a profile', () => {
      const resource = { ...patient, gender: 'robot', meta: { profile: [profileUrl] } } as unknown as Patient;
      const err = thrown(() => v.assertValid(resource));
      expect(statusForOutcome(err)).toBe(400);
      expect(err.outcome.issue).toEqual([expect.objectContaining({ code: 'code-invalid', expression: ['Patient.gender'] })]);
    });

    it('enforces profile rules on backbone elements without changing the base definition', () => {
      const contactName: StructureDefinition = {
        ...birthDateRequired,
        url: 'http://example.org/fhir/StructureDefinition/test-contact-name',
        differential: { element: [{ id: 'Patient.contact.name', path: 'Patient.contact.name', min: 1 }] },
      };
      v.addProfile(contactName);
      const resource: Patient = { ...patient, meta: { profile: [contactName.url as string] } };
      const err = thrown(() => v.assertValid(resource));
      expect(statusForOutcome(err)).toBe(422);
      expect(err.outcome.issue).toEqual([expect.objectContaining({ expression: ['Patient.contact[0].name'] })]);
      expect(v.validate(patient)).toEqual([]);
      expect(validator.validate(patient)).toEqual([]);
      expect(v.validate({ ...resource, contact: [{ name: { family: 'Roe' } }] })).toEqual([]);
    });

    it('warns about, but does not enforce, unknown profiles', () => {
      const resource: Patient = { ...patient, meta: { profile: ['http://example.org/fhir/StructureDefinition/unknown'] } };
      expect(v.validate(resource)).toEqual([expect.objectContaining({ severity: 'warning', expression: ['Patient.meta.profile[0]'] })]);
      expect(() => v.assertValid(resource)).not.toThrow();
    });

    it('rejects a profile of another resource type', () => {
      const resource: Observation = { ...observation, meta: { profile: [profileUrl] } };
      const err = thrown(() => v.assertValid(resource));
      expect(statusForOutcome(err)).toBe(422);
      expect(err.outcome.issue?.[0]?.expression).toEqual(['Observation.meta.profile[0]']);
    });

    it('refuses a differential it cannot turn into a snapshot', () => {
      const sliced: StructureDefinition = {
        ...birthDateRequired,
        url: 'http://example.org/fhir/StructureDefinition/test-sliced',
        differential: { element: [{ id: 'Patient.identifier:mrn', path: 'Patient.identifier', sliceName: 'mrn', min: 1 }] },
      };
      expect(() => v.addProfile(sliced)).toThrow(/snapshot/);
    });
  });
});
