// Observation/$lastn: the most recent Observations per code for a patient (max per code, default 1),
// as a searchset Bundle. Implemented with repository searches sorted by -date.
import type { Bundle, Observation, OperationDefinition } from '@medplum/fhirtypes';
import type { FhirOperation, SearchQuery } from '@tic/fhir';
import { badRequest } from '@tic/fhir';
import { stringParams } from './params.ts';

/** Observations fetched when no code is given, grouped by code afterwards. */
const UNCODED_FETCH = 1000;

export const lastnDefinition: OperationDefinition = {
  resourceType: 'OperationDefinition',
  url: 'https://tic-exchange.org/fhir/OperationDefinition/Observation-lastn',
  name: 'LastN',
  status: 'active',
  kind: 'operation',
  code: 'lastn',
  base: 'http://hl7.org/fhir/OperationDefinition/Observation-lastn',
  resource: ['Observation'],
  system: false,
  type: true,
  instance: false,
  affectsState: false,
  parameter: [
    { name: 'max', use: 'in', min: 0, max: '1', type: 'positiveInt' },
    { name: 'patient', use: 'in', min: 0, max: '1', type: 'string', searchType: 'reference' },
    { name: 'subject', use: 'in', min: 0, max: '1', type: 'string', searchType: 'reference' },
    { name: 'category', use: 'in', min: 0, max: '*', type: 'string', searchType: 'token' },
    { name: 'code', use: 'in', min: 0, max: '*', type: 'string', searchType: 'token' },
    { name: 'return', use: 'out', min: 1, max: '1', type: 'Bundle' },
  ],
};

function codeKey(o: Observation): string {
  const c = o.code?.coding?.[0];
  return c ? `${c.system ?? ''}|${c.code ?? ''}` : `text:${o.code?.text ?? ''}`;
}

export function lastnOperation(): FhirOperation {
  return {
    code: 'lastn',
    resourceTypes: ['Observation'],
    type: true,
    affectsState: false,
    definition: lastnDefinition,
    async handler(req) {
      const patient = stringParams(req, 'patient')[0];
      const subject = stringParams(req, 'subject')[0];
      if (!patient && !subject) throw badRequest('$lastn needs a patient or subject parameter', 'patient');
      const maxRaw = stringParams(req, 'max')[0];
      const max = maxRaw === undefined ? 1 : Number(maxRaw);
      if (!Number.isInteger(max) || max < 1) throw badRequest('max must be a positive integer', 'max');
      const query: SearchQuery = { _sort: '-date' };
      if (patient) query.patient = patient.includes('/') ? patient : `Patient/${patient}`;
      if (subject) query.subject = subject;
      const category = stringParams(req, 'category');
      if (category.length) query.category = category.join(',');
      const codes = stringParams(req, 'code').flatMap((c) => c.split(',')).filter(Boolean);
      let found: Observation[];
      if (codes.length) {
        found = [];
        for (const code of codes) found.push(...(await req.repo.search<Observation>('Observation', { ...query, code, _count: String(max) })));
      } else {
        found = await req.repo.search<Observation>('Observation', { ...query, _count: String(UNCODED_FETCH) });
      }
      const perCode = new Map<string, Observation[]>();
      const seen = new Set<string>();
      for (const o of found) {
        if (o.id && seen.has(o.id)) continue;
        if (o.id) seen.add(o.id);
        const list = perCode.get(codeKey(o)) ?? [];
        if (list.length < max) list.push(o);
        perCode.set(codeKey(o), list);
      }
      const base = req.request.baseUrl?.replace(/\/+$/, '');
      const entries = [...perCode.values()].flat();
      const bundle: Bundle<Observation> = {
        resourceType: 'Bundle',
        type: 'searchset',
        total: entries.length,
        entry: entries.map((resource) => ({
          ...(base && resource.id ? { fullUrl: `${base}/Observation/${resource.id}` } : {}),
          resource,
          search: { mode: 'match' },
        })),
      };
      return bundle;
    },
  };
}
