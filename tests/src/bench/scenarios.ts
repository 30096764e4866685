// The measured API scenarios. Each one builds autocannon requests over the loaded data: ids are
// taken in turn (writes never race on one resource) or at random (reads and searches), bodies are
// built from the same generator as the data set.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AutocannonRequest } from 'autocannon';
import type { Bundle, BundleEntry, Questionnaire, QuestionnaireItem, QuestionnaireResponse } from '@medplum/fhirtypes';
import { DATE_DAYS, DATE_START, FAMILIES, MRN_SYSTEM, observation, patient, RESPONSE_ID_SYSTEM } from './data.ts';
import type { LoadedData } from './load.ts';
import { repoRoot } from './processes.ts';

export type Kind = 'read' | 'search' | 'create' | 'write';

export interface Scenario {
  name: string;
  kind: Kind;
  /** Database rows of the measured kind one request writes (a 10-entry transaction: 10). */
  rowsPerRequest: number;
  description: string;
  requests(token: string): AutocannonRequest[];
  /** Finite pool of work (delete): stop after this many requests. */
  amount?: () => number;
  /** Runs only when BENCH_ONLY names it (a measurement for a decision, not a path the product has). */
  optIn?: boolean;
}

export const PCL5_URL = 'https://tic-exchange.org/fhir/Questionnaire/pcl-5';

const json = 'application/fhir+json';

function pick<T>(list: T[]): T {
  return list[Math.floor(Math.random() * list.length)];
}

function locationId(headers: Record<string, string | string[]>): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== 'location') continue;
    const m = /\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})\/_history\//.exec(Array.isArray(v) ? v[0] : v);
    return m?.[2];
  }
  return undefined;
}

/** The reviewed PCL-5 example response (fhir-profiles/examples), for a patient of the data set. */
export function pcl5Response(subject: string): QuestionnaireResponse {
  const file = join(repoRoot, 'fhir-profiles', 'examples', 'QuestionnaireResponse-pcl-5-clinician.json');
  const qr = JSON.parse(readFileSync(file, 'utf8')) as QuestionnaireResponse;
  delete qr.id;
  return { ...qr, subject: { reference: subject } };
}

const OBSERVATION_EXTRACT = 'http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract';
/** The bench-only PCL-5 variant whose items are extracted as components of one panel Observation. */
export const PCL5_PANEL_URL = `${PCL5_URL}-bench-panel-components`;
const PANEL_ITEMS = 'items';
const isItemQuestion = (linkId: string) => /^q\d+$/.test(linkId);

/**
 * Issue 5's option (b), for measuring only (not shipped, not a reviewed instrument): the PCL-5
 * Questionnaire with its 20 questions inside one group coded as the PCL-5 panel (the shipped
 * Questionnaire's own code), extracted as an Observation whose components are the answers (SDC
 * 4.0.0 `component`), instead of 20 Observations of their own. Scoring is unchanged (its expression
 * walks `repeat(item)`); the total stays an Observation of its own.
 */
export function pcl5PanelVariant(q: Questionnaire): Questionnaire {
  const items = q.item ?? [];
  const questions = items.filter((i) => isItemQuestion(i.linkId)).map((i): QuestionnaireItem => ({
    ...i,
    extension: [...(i.extension ?? []).filter((e) => e.url !== OBSERVATION_EXTRACT), { url: OBSERVATION_EXTRACT, valueCode: 'component' }],
  }));
  const group: QuestionnaireItem = { linkId: PANEL_ITEMS, type: 'group', text: q.title, code: q.code, extension: [{ url: OBSERVATION_EXTRACT, valueBoolean: true }], item: questions };
  const first = items.findIndex((i) => isItemQuestion(i.linkId));
  const rest = items.filter((i) => !isItemQuestion(i.linkId));
  rest.splice(first, 0, group);
  const { id: _id, meta, ...copy } = q;
  return { ...copy, meta: { tag: meta?.tag }, url: PCL5_PANEL_URL, name: `${q.name ?? 'PCL5'}BenchPanelComponents`, title: `${q.title ?? 'PCL-5'} (bench variant: items as panel components)`, item: rest };
}

/** The PCL-5 example response for the panel variant: its answers inside the group. */
export function pcl5PanelResponse(subject: string, version: string): QuestionnaireResponse {
  const qr = pcl5Response(subject);
  const items = qr.item ?? [];
  const first = items.findIndex((i) => isItemQuestion(i.linkId));
  const rest = items.filter((i) => !isItemQuestion(i.linkId));
  rest.splice(first, 0, { linkId: PANEL_ITEMS, item: items.filter((i) => isItemQuestion(i.linkId)) });
  return { ...qr, questionnaire: `${PCL5_PANEL_URL}|${version}`, item: rest };
}

export interface ScenarioState {
  data: LoadedData;
  /** Observation ids created during the run (the delete scenario removes them). */
  created: string[];
  /** The version of the PCL-5 Questionnaire on the server (the panel variant is stored with it). */
  pcl5Version?: string;
}

export function scenarios(state: ScenarioState): Scenario[] {
  const { data } = state;
  const auth = (token: string) => ({ authorization: `Bearer ${token}` });
  const writeHeaders = (token: string) => ({ ...auth(token), 'content-type': json, prefer: 'return=minimal' });
  const dateOf = (day: number) => new Date(DATE_START + day * 86_400_000).toISOString().slice(0, 10);
  let updateNext = 0;
  let deleteNext = 0;

  const createBodies = Array.from({ length: 500 }, (_, i) => {
    const person = Math.floor(Math.random() * data.persons);
    return JSON.stringify(observation(person, i % 5, `Patient/${data.patients[person]}`));
  });

  const transactionBodies = Array.from({ length: 200 }, (_, i) => {
    const person = data.persons + i;
    const p = `urn:uuid:00000000-0000-4000-b000-${i.toString(16).padStart(12, '0')}`;
    const entries: BundleEntry[] = [{ fullUrl: p, resource: patient(person), request: { method: 'POST', url: 'Patient' } }];
    for (let n = 0; n < 9; n++) entries.push({ resource: observation(person, n, p), request: { method: 'POST', url: 'Observation' } });
    return JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: entries } satisfies Bundle);
  });

  // The same PCL-5 response, completed (validated, scored, Observations and protocol) and
  // in-progress (validated and stored only: the module scores finished responses). The server
  // requires QuestionnaireResponse.questionnaire, so "plain" keeps it. Each response gets its own
  // business identifier (a repeated one updates the same Observations).
  const intakeTemplate = (completed: boolean) => {
    const qr = pcl5Response('Patient/SUBJECT');
    if (!completed) qr.status = 'in-progress';
    qr.identifier = { system: RESPONSE_ID_SYSTEM, value: 'IDENTIFIER' };
    return JSON.stringify(qr);
  };
  const scoredTemplate = intakeTemplate(true);
  // Made when the scenario starts: the variant is stored (with the server's PCL-5 version) after the scenarios are listed.
  const panelTemplate = () => {
    const qr = pcl5PanelResponse('Patient/SUBJECT', state.pcl5Version ?? '1.0.0');
    qr.identifier = { system: RESPONSE_ID_SYSTEM, value: 'IDENTIFIER' };
    return JSON.stringify(qr);
  };
  const plainTemplate = intakeTemplate(false);
  let intakeNext = 0;
  const intakeBody = (template: string) => () => {
    const person = Math.floor(Math.random() * data.persons);
    return template.replace('Patient/SUBJECT', `Patient/${data.patients[person]}`).replace('"IDENTIFIER"', `"bench-${process.pid}-${intakeNext++}"`);
  };

  const keepCreated = (_status: number, _body: string, _ctx: unknown, headers: Record<string, string | string[]>) => {
    const id = locationId(headers);
    if (id) state.created.push(id);
  };

  return [
    {
      name: 'create',
      kind: 'create',
      rowsPerRequest: 1,
      description: 'POST Observation (a score with code, subject, date, value)',
      requests: (token) => {
        let i = 0;
        return [{ method: 'POST', path: '/fhir/Observation', headers: writeHeaders(token), setupRequest: (r) => ({ ...r, body: createBodies[i++ % createBodies.length] }), onResponse: keepCreated }];
      },
    },
    {
      name: 'read',
      kind: 'read',
      rowsPerRequest: 1,
      description: 'GET Observation/{id}, ids at random over the data set',
      requests: (token) => [{ method: 'GET', headers: auth(token), setupRequest: (r) => ({ ...r, path: `/fhir/Observation/${pick(data.observations)}` }) }],
    },
    {
      name: 'update',
      kind: 'write',
      rowsPerRequest: 1,
      description: 'PUT Observation/{id} with a new value, ids in turn',
      requests: (token) => [
        {
          method: 'PUT',
          headers: writeHeaders(token),
          setupRequest: (r) => {
            const k = updateNext++ % data.observations.length;
            const person = Math.floor(k / 5);
            const id = data.observations[k];
            const body = { ...observation(person, k % 5, `Patient/${data.patients[person]}`), id, valueInteger: updateNext % 6 };
            return { ...r, path: `/fhir/Observation/${id}`, body: JSON.stringify(body) };
          },
        },
      ],
    },
    {
      name: 'search: token',
      kind: 'search',
      rowsPerRequest: 1,
      description: 'GET Patient?identifier=system|value (one match)',
      requests: (token) => [
        { method: 'GET', headers: auth(token), setupRequest: (r) => ({ ...r, path: `/fhir/Patient?identifier=${encodeURIComponent(`${MRN_SYSTEM}|MRN-${Math.floor(Math.random() * data.persons)}`)}` }) },
      ],
    },
    {
      name: 'search: string',
      kind: 'search',
      rowsPerRequest: 1,
      description: `GET Patient?name=<family> (each family name is 1/${FAMILIES.length} of the patients; first page of 20)`,
      requests: (token) => [{ method: 'GET', headers: auth(token), setupRequest: (r) => ({ ...r, path: `/fhir/Patient?name=${pick(FAMILIES)}` }) }],
    },
    {
      name: 'search: date range',
      kind: 'search',
      rowsPerRequest: 1,
      description: 'GET Observation?date=geD&date=ltD+7 (a random week of 2024, first page of 20)',
      requests: (token) => [
        {
          method: 'GET',
          headers: auth(token),
          setupRequest: (r) => {
            const day = Math.floor(Math.random() * (DATE_DAYS - 7));
            return { ...r, path: `/fhir/Observation?date=ge${dateOf(day)}&date=lt${dateOf(day + 7)}` };
          },
        },
      ],
    },
    {
      name: 'search: reference + _include',
      kind: 'search',
      rowsPerRequest: 1,
      description: "GET Observation?subject=Patient/{id}&_include=Observation:subject (a patient's Observations and the Patient)",
      requests: (token) => [
        { method: 'GET', headers: auth(token), setupRequest: (r) => ({ ...r, path: `/fhir/Observation?subject=Patient/${pick(data.patients)}&_include=Observation:subject` }) },
      ],
    },
    {
      name: 'transaction (10 entries)',
      kind: 'write',
      rowsPerRequest: 10,
      description: 'POST a transaction Bundle: a Patient and 9 Observations referring to it by urn:uuid',
      requests: (token) => {
        let i = 0;
        return [{ method: 'POST', path: '/fhir', headers: writeHeaders(token), setupRequest: (r) => ({ ...r, body: transactionBodies[i++ % transactionBodies.length] }) }];
      },
    },
    {
      name: 'PCL-5 response: plain create (in-progress)',
      kind: 'create',
      rowsPerRequest: 1,
      description: 'POST the PCL-5 example QuestionnaireResponse as in-progress (validated against the Questionnaire and stored, not scored)',
      requests: (token) => [{ method: 'POST', path: '/fhir/QuestionnaireResponse', headers: writeHeaders(token), setupRequest: (r) => ({ ...r, body: intakeBody(plainTemplate)() }) }],
    },
    {
      name: 'PCL-5 response: scored intake',
      kind: 'create',
      rowsPerRequest: 1,
      description: 'POST the same response completed: validated, scored, its Observations written in the same transaction',
      requests: (token) => [{ method: 'POST', path: '/fhir/QuestionnaireResponse', headers: writeHeaders(token), setupRequest: (r) => ({ ...r, body: intakeBody(scoredTemplate)() }) }],
    },
    {
      name: 'PCL-5 response: scored intake (items as panel components)',
      kind: 'create',
      rowsPerRequest: 1,
      description:
        'the same response to a bench-only PCL-5 variant whose 20 items are extracted as components of one panel Observation (issue 5, option b): response, panel, score and protocol Task; the variant is stored through the API, so each intake also searches for it (a hosted instrument is resolved in memory)',
      optIn: true,
      requests: (token) => {
        const body = intakeBody(panelTemplate());
        return [{ method: 'POST', path: '/fhir/QuestionnaireResponse', headers: writeHeaders(token), setupRequest: (r) => ({ ...r, body: body() }) }];
      },
    },
    {
      name: 'delete',
      kind: 'write',
      rowsPerRequest: 1,
      description: 'DELETE Observation/{id}, the Observations created by the create scenario, in turn',
      amount: () => state.created.length,
      requests: (token) => [
        {
          method: 'DELETE',
          headers: auth(token),
          setupRequest: (r) => ({ ...r, path: `/fhir/Observation/${state.created[deleteNext++ % Math.max(1, state.created.length)] ?? 'none'}` }),
        },
      ],
    },
  ];
}
