// The generated data set: synthetic people (no real data) with screening results, referrals and
// their Tasks. Ten resources per person: 1 Patient, 5 Observations, 1 QuestionnaireResponse
// (a completed PC-PTSD-5), 1 ServiceRequest and 2 Tasks. Everything is derived from the person's
// number, so a run is reproducible and a scenario can rebuild any resource it needs.
// Codes: LOINC codes verified in shared/domain/instruments.md; answer codes as in
// fhir-profiles/examples/QuestionnaireResponse-pc-ptsd-5-positive.json.
import type { Bundle, BundleEntry, Observation, Patient, QuestionnaireResponse, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';

export const MRN_SYSTEM = 'https://bench.tic-exchange.org/mrn';
export const RESPONSE_ID_SYSTEM = 'https://bench.tic-exchange.org/screening';
export const RESOURCES_PER_PERSON = 10;

/** Synthetic surnames (string search); each is shared by 1/FAMILIES of the people. */
export const FAMILIES = [
  'Abara', 'Belloni', 'Castellan', 'Dunmore', 'Eskridge', 'Fairweather', 'Galloway', 'Hartigan', 'Ingleby', 'Jessop',
  'Kilbride', 'Lachance', 'Merriweather', 'Northcott', 'Oyelaran', 'Pemberton', 'Quintero', 'Rainsford', 'Sandoval', 'Thackeray',
  'Underhill', 'Valderrama', 'Whitcombe', 'Xiong', 'Yardley', 'Zabaleta', 'Ashworth', 'Blackwood', 'Cordova', 'Delacroix',
  'Ellsworth', 'Fitzroy', 'Greenhalgh', 'Holloway', 'Iwasaki', 'Jankowski', 'Kowalczyk', 'Lindqvist', 'Montague', 'Nakamura',
];
const GIVEN = ['Alex', 'Sam', 'Jordan', 'Taylor', 'Morgan', 'Casey', 'Riley', 'Jamie', 'Avery', 'Quinn', 'Rowan', 'Emery'];

/** Score codes (LOINC, verified) used for the generated Observations, with their score ranges. */
export const SCORE_CODES: Array<{ code: string; display: string; max: number }> = [
  { code: '102017-1', display: 'PC-PTSD-5 total score', max: 5 },
  { code: '101698-9', display: 'PCL-5 total score', max: 80 },
  { code: '55758-7', display: 'PHQ-2 total score', max: 6 },
  { code: '70274-6', display: 'GAD-7 total score', max: 21 },
  { code: '112442-9', display: 'ACE total score', max: 10 },
];

/** Observation dates spread over 2024 (date range search). */
export const DATE_START = Date.UTC(2024, 0, 1);
export const DATE_DAYS = 365;

function rand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function familyOf(person: number): string {
  return FAMILIES[person % FAMILIES.length];
}

export function patient(person: number): Patient {
  const r = rand(person * 7 + 1);
  const birth = new Date(Date.UTC(1940, 0, 1) + Math.floor(r() * 80 * 365) * 86_400_000);
  return {
    resourceType: 'Patient',
    identifier: [{ system: MRN_SYSTEM, value: `MRN-${person}` }],
    active: true,
    name: [{ family: familyOf(person), given: [GIVEN[Math.floor(r() * GIVEN.length)]] }],
    gender: r() < 0.5 ? 'female' : 'male',
    birthDate: birth.toISOString().slice(0, 10),
  };
}

export function observationDate(person: number, n: number): string {
  const day = (person * 5 + n * 73) % DATE_DAYS;
  return new Date(DATE_START + day * 86_400_000 + ((person * 37 + n * 11) % 86_400) * 1000).toISOString();
}

export function observation(person: number, n: number, subject: string): Observation {
  const code = SCORE_CODES[n % SCORE_CODES.length];
  const r = rand(person * 31 + n);
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: code.code, display: code.display }] },
    subject: { reference: subject },
    effectiveDateTime: observationDate(person, n),
    valueInteger: Math.floor(r() * (code.max + 1)),
  };
}

const YES = { system: 'http://loinc.org', code: 'LA33-6', display: 'Yes' };
const NO = { system: 'http://loinc.org', code: 'LA32-8', display: 'No' };

/** A completed PC-PTSD-5 response (the shape of the reviewed example), answers derived from the person. */
export function screeningResponse(person: number, subject: string): QuestionnaireResponse {
  const r = rand(person * 13 + 5);
  const answer = (p: number) => [{ valueCoding: r() < p ? YES : NO }];
  return {
    resourceType: 'QuestionnaireResponse',
    identifier: { system: RESPONSE_ID_SYSTEM, value: `pc-ptsd-5-${person}` },
    questionnaire: 'https://tic-exchange.org/fhir/Questionnaire/pc-ptsd-5|1.0.0',
    status: 'completed',
    subject: { reference: subject },
    authored: observationDate(person, 0),
    author: { reference: subject },
    source: { reference: subject },
    item: [
      { linkId: 'exposure', answer: [{ valueCoding: YES }] },
      { linkId: 'q1', answer: answer(0.5) },
      { linkId: 'q2', answer: answer(0.5) },
      { linkId: 'q3', answer: answer(0.4) },
      { linkId: 'q4', answer: answer(0.4) },
      { linkId: 'q5', answer: answer(0.3) },
    ],
  };
}

export function serviceRequest(person: number, subject: string): ServiceRequest {
  return {
    resourceType: 'ServiceRequest',
    status: 'active',
    intent: 'order',
    subject: { reference: subject },
    authoredOn: observationDate(person, 1),
    code: { text: 'Referral to a community support service' },
  };
}

export function task(person: number, n: number, subject: string, focus: string): Task {
  return {
    resourceType: 'Task',
    status: n === 0 ? 'requested' : 'in-progress',
    intent: 'order',
    for: { reference: subject },
    focus: { reference: focus },
    authoredOn: observationDate(person, 2 + n),
    description: n === 0 ? 'Deliver the referral' : 'Follow up the screening result',
  };
}

function entry(fullUrl: string, resource: Resource): BundleEntry {
  return { fullUrl, resource, request: { method: 'POST', url: resource.resourceType } };
}

/** The ten resources of one person with their ids already assigned (direct Repository load). */
export function personResources(person: number, newId: () => string): Resource[] {
  const ids = Array.from({ length: RESOURCES_PER_PERSON }, newId);
  const p = `Patient/${ids[0]}`;
  const qr = `QuestionnaireResponse/${ids[6]}`;
  const sr = `ServiceRequest/${ids[7]}`;
  const list: Resource[] = [
    patient(person),
    ...[0, 1, 2, 3, 4].map((n) => observation(person, n, p)),
    screeningResponse(person, p),
    serviceRequest(person, p),
    task(person, 0, p, sr),
    task(person, 1, p, qr),
  ];
  return list.map((r, i) => ({ ...r, id: ids[i] }));
}

/** The ten resources of one person as transaction entries, linked by urn:uuid fullUrls. */
export function personEntries(person: number): BundleEntry[] {
  const p = `urn:uuid:00000000-0000-4000-8000-${person.toString(16).padStart(12, '0')}`;
  const sr = `urn:uuid:00000000-0000-4000-9000-${person.toString(16).padStart(12, '0')}`;
  const qr = `urn:uuid:00000000-0000-4000-a000-${person.toString(16).padStart(12, '0')}`;
  return [
    entry(p, patient(person)),
    ...[0, 1, 2, 3, 4].map((n) => entry(`urn:uuid:${crypto.randomUUID()}`, observation(person, n, p))),
    entry(qr, screeningResponse(person, p)),
    entry(sr, serviceRequest(person, p)),
    entry(`urn:uuid:${crypto.randomUUID()}`, task(person, 0, p, sr)),
    entry(`urn:uuid:${crypto.randomUUID()}`, task(person, 1, p, qr)),
  ];
}

export function transactionBundle(entries: BundleEntry[]): Bundle {
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}
