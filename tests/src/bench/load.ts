// Loads the generated data set through the API: transaction Bundles of `bundleSize` entries,
// `bundlesInFlight` at a time, and keeps the ids the server assigned (scenarios read, update,
// search and delete them).
import type { Bundle } from '@medplum/fhirtypes';
import { personEntries, RESOURCES_PER_PERSON, transactionBundle } from './data.ts';

export interface LoadedData {
  persons: number;
  /** Patient id of person i. */
  patients: string[];
  /** Observation ids, person i's n-th at i * 5 + n. */
  observations: string[];
  responses: string[];
  serviceRequests: string[];
  tasks: string[];
  seconds: number;
  resourcesPerSecond: number;
}

function idOf(location: string | undefined): string {
  const m = /^(?:.*\/)?([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/.*)?$/.exec(location ?? '');
  if (!m) throw new Error(`unexpected entry location "${location}"`);
  return m[2];
}

export async function loadData(options: { fhirBase: string; token: () => Promise<string>; resources: number; bundleSize: number; inFlight: number; progress?: (done: number) => void }): Promise<LoadedData> {
  const persons = Math.ceil(options.resources / RESOURCES_PER_PERSON);
  const perBundle = Math.max(1, Math.floor(options.bundleSize / RESOURCES_PER_PERSON));
  const data: LoadedData = { persons, patients: [], observations: [], responses: [], serviceRequests: [], tasks: [], seconds: 0, resourcesPerSecond: 0 };
  let next = 0;
  let done = 0;
  let token = await options.token();
  let tokenAt = Date.now();
  const started = performance.now();

  const worker = async () => {
    while (next < persons) {
      const first = next;
      const last = Math.min(persons, first + perBundle);
      next = last;
      const entries = [];
      for (let p = first; p < last; p++) entries.push(...personEntries(p));
      if (Date.now() - tokenAt > 120_000) {
        tokenAt = Date.now();
        token = await options.token();
      }
      const res = await fetch(`${options.fhirBase}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' },
        body: JSON.stringify(transactionBundle(entries)),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`loading persons ${first}..${last - 1}: transaction answered ${res.status}: ${text.slice(0, 2000)}`);
      const bundle = JSON.parse(text) as Bundle;
      const out = bundle.entry ?? [];
      if (out.length !== entries.length) throw new Error(`transaction answered ${out.length} entries for ${entries.length}`);
      for (let p = first; p < last; p++) {
        const base = (p - first) * RESOURCES_PER_PERSON;
        const ids = out.slice(base, base + RESOURCES_PER_PERSON).map((e) => idOf(e.response?.location));
        data.patients[p] = ids[0];
        for (let n = 0; n < 5; n++) data.observations[p * 5 + n] = ids[1 + n];
        data.responses[p] = ids[6];
        data.serviceRequests[p] = ids[7];
        data.tasks[p * 2] = ids[8];
        data.tasks[p * 2 + 1] = ids[9];
      }
      done += entries.length;
      options.progress?.(done);
    }
  };
  await Promise.all(Array.from({ length: options.inFlight }, worker));
  data.seconds = (performance.now() - started) / 1000;
  data.resourcesPerSecond = (persons * RESOURCES_PER_PERSON) / data.seconds;
  return data;
}
