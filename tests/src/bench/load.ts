// Loads the generated data set and keeps the ids (scenarios read, update, search and delete them).
// Two ways:
// - 'repository' (default): straight through the Repository of @tic/store on its own pool, acting
//   for Organization/bench, without validation, domain hooks or audit (a bulk load, not a measured
//   path), several persons per database transaction;
// - 'api': transaction Bundles of `bundleSize` entries through POST /fhir, `inFlight` at a time
//   (every rule, hook and audit applies; the rate is reported).
import { randomUUID } from 'node:crypto';
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { PgDb, Repository } from '@tic/store';
import { BENCH_CLIENT_ID, BENCH_ORGANIZATION } from './auth.ts';
import { personEntries, personResources, RESOURCES_PER_PERSON, transactionBundle } from './data.ts';

export interface LoadedData {
  persons: number;
  /** Patient id of person i. */
  patients: string[];
  /** Observation ids, person i's n-th at i * 5 + n. */
  observations: string[];
  responses: string[];
  serviceRequests: string[];
  tasks: string[];
  how: 'repository' | 'api';
  seconds: number;
  resourcesPerSecond: number;
}

function emptyData(persons: number, how: LoadedData['how']): LoadedData {
  return { persons, patients: [], observations: [], responses: [], serviceRequests: [], tasks: [], how, seconds: 0, resourcesPerSecond: 0 };
}

function keep(data: LoadedData, person: number, ids: string[]): void {
  data.patients[person] = ids[0];
  for (let n = 0; n < 5; n++) data.observations[person * 5 + n] = ids[1 + n];
  data.responses[person] = ids[6];
  data.serviceRequests[person] = ids[7];
  data.tasks[person * 2] = ids[8];
  data.tasks[person * 2 + 1] = ids[9];
}

function idOf(location: string | undefined): string {
  const m = /^(?:.*\/)?([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/.*)?$/.exec(location ?? '');
  if (!m) throw new Error(`unexpected entry location "${location}"`);
  return m[2];
}

async function pool(workers: number, items: number, chunk: number, work: (first: number, last: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items) {
      const first = next;
      const last = Math.min(items, first + chunk);
      next = last;
      await work(first, last);
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}

export interface LoadOptions {
  resources: number;
  progress?: (done: number) => void;
}

export async function loadThroughRepository(options: LoadOptions & { databaseUrl: string; connections: number; personsPerTransaction: number }): Promise<LoadedData> {
  const persons = Math.ceil(options.resources / RESOURCES_PER_PERSON);
  const data = emptyData(persons, 'repository');
  const db = new PgDb(options.databaseUrl, options.connections);
  const repo = new Repository(db, { organization: BENCH_ORGANIZATION, clientId: BENCH_CLIENT_ID, canReadRestricted: true }, { modules: [] });
  const started = performance.now();
  let done = 0;
  try {
    await pool(options.connections, persons, options.personsPerTransaction, async (first, last) => {
      await repo.transaction(async (tx) => {
        for (let p = first; p < last; p++) {
          const resources = personResources(p, randomUUID);
          for (const r of resources) await tx.create(r as Resource, { id: r.id });
          keep(data, p, resources.map((r) => r.id!));
        }
      });
      done += (last - first) * RESOURCES_PER_PERSON;
      options.progress?.(done);
    });
  } finally {
    await db.close();
  }
  data.seconds = (performance.now() - started) / 1000;
  data.resourcesPerSecond = (persons * RESOURCES_PER_PERSON) / data.seconds;
  return data;
}

export async function loadThroughApi(options: LoadOptions & { fhirBase: string; token: () => Promise<string>; bundleSize: number; inFlight: number }): Promise<LoadedData> {
  const persons = Math.ceil(options.resources / RESOURCES_PER_PERSON);
  const perBundle = Math.max(1, Math.floor(options.bundleSize / RESOURCES_PER_PERSON));
  const data = emptyData(persons, 'api');
  let done = 0;
  let token = await options.token();
  let tokenAt = Date.now();
  const started = performance.now();
  await pool(options.inFlight, persons, perBundle, async (first, last) => {
    const entries = [];
    for (let p = first; p < last; p++) entries.push(...personEntries(p));
    if (Date.now() - tokenAt > 120_000) {
      tokenAt = Date.now();
      token = await options.token();
    }
    const res = await fetch(options.fhirBase, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' },
      body: JSON.stringify(transactionBundle(entries)),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`loading persons ${first}..${last - 1}: transaction answered ${res.status}: ${text.slice(0, 2000)}`);
    const out = (JSON.parse(text) as Bundle).entry ?? [];
    if (out.length !== entries.length) throw new Error(`transaction answered ${out.length} entries for ${entries.length}`);
    for (let p = first; p < last; p++) {
      const base = (p - first) * RESOURCES_PER_PERSON;
      keep(data, p, out.slice(base, base + RESOURCES_PER_PERSON).map((e) => idOf(e.response?.location)));
    }
    done += entries.length;
    options.progress?.(done);
  });
  data.seconds = (performance.now() - started) / 1000;
  data.resourcesPerSecond = (persons * RESOURCES_PER_PERSON) / data.seconds;
  return data;
}
