// The screening instruments this module hosts: the Questionnaires (tagged screening-instrument) and
// the screening-* CodeSystems in fhir-profiles/, and how a response's canonical finds its Questionnaire.
import type { CodeSystem, Questionnaire, Resource, StructureDefinition } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { loadConformanceResources } from '@tic/fhir-profiles';
import { BASE, SCREENING_CODES } from './constants.ts';

export function isScreeningInstrument(r: Resource): r is Questionnaire {
  return r.resourceType === 'Questionnaire' && (r.meta?.tag ?? []).some((t) => t.system === SCREENING_CODES && t.code === 'screening-instrument');
}

function isScreeningCodeSystem(r: Resource): r is CodeSystem {
  return r.resourceType === 'CodeSystem' && (r.url ?? '').startsWith(`${BASE}/CodeSystem/screening-`);
}

/** The definitions of the project extensions the instruments use (screening-cutoff, -band, -cluster). */
function isScreeningExtension(r: Resource): r is StructureDefinition {
  return r.resourceType === 'StructureDefinition' && r.type === 'Extension' && (r.url ?? '').startsWith(`${BASE}/StructureDefinition/screening-`);
}

export type ScreeningConformanceResource = Questionnaire | CodeSystem | StructureDefinition;

/** Questionnaires, CodeSystems and extension definitions this module seeds, read from fhir-profiles/. */
export function screeningConformanceResources(): ScreeningConformanceResource[] {
  return loadConformanceResources().filter((r): r is ScreeningConformanceResource => isScreeningInstrument(r) || isScreeningCodeSystem(r) || isScreeningExtension(r));
}

export function splitCanonical(canonical: string): { url: string; version?: string } {
  const [url, version] = canonical.split('|', 2);
  return version ? { url, version } : { url };
}

export interface InstrumentIndex {
  all: Questionnaire[];
  find(canonical: string): Questionnaire | undefined;
}

export function indexInstruments(questionnaires: Questionnaire[]): InstrumentIndex {
  return {
    all: questionnaires,
    find(canonical) {
      const { url, version } = splitCanonical(canonical);
      const matches = questionnaires.filter((q) => q.url === url && (!version || q.version === version));
      return matches.sort((a, b) => (b.version ?? '').localeCompare(a.version ?? '', undefined, { numeric: true }))[0];
    },
  };
}

/**
 * Stored Questionnaires already seen, by id and versionId: the same version is the same content, so
 * the first copy is handed out again and the caches keyed by the Questionnaire object (its items by
 * linkId, the score's item map, the response shapes validated) stay warm from one intake to the
 * next instead of being rebuilt for every response (measured: 223 intakes/s for a stored PCL-5
 * variant against 287/s for the same Questionnaire hosted). The search still runs on every intake,
 * with the caller's visibility, so a new version or a Questionnaire the caller may not see is never
 * served from here.
 */
const storedVersions = new Map<string, Questionnaire>();
const MAX_STORED_VERSIONS = 500;

/** The Questionnaire a canonical names: a hosted instrument, else one stored in the repository. */
export async function resolveQuestionnaire(canonical: string, index: InstrumentIndex, repo?: ResourceRepository): Promise<Questionnaire | undefined> {
  const hosted = index.find(canonical);
  if (hosted || !repo) return hosted;
  const { url, version } = splitCanonical(canonical);
  const found = await repo.search<Questionnaire>('Questionnaire', version ? { url, version } : { url });
  const q = indexInstruments(found).find(canonical);
  const versionId = q?.meta?.versionId;
  if (!q?.id || !versionId) return q;
  const key = `${q.id}/_history/${versionId}`;
  const seen = storedVersions.get(key);
  if (seen) return seen;
  if (storedVersions.size >= MAX_STORED_VERSIONS) storedVersions.clear();
  storedVersions.set(key, q);
  return q;
}
