import { createPostgresDatabase } from '@tic/store/testing';
import { createBenchClient } from './auth.ts';
import { startApi } from './processes.ts';
import { loadData } from './load.ts';
const db = await createPostgresDatabase('postgres://postgres@127.0.0.1:5432/postgres', 'tic_bench');
const client = await createBenchClient('/tmp/bench-clients.json');
const t0 = Date.now();
const api = await startApi({ databaseUrl: db.url, clientsFile: client.clientsFile });
console.log('started in', Date.now() - t0, api.url);
try {
  const data = await loadData({ fhirBase: `${api.url}/fhir`, token: () => client.token(api.url), resources: Number(process.env.R ?? 2000), bundleSize: Number(process.env.BS ?? 500), inFlight: 4, progress: (d) => console.log(d) });
  console.log(data.seconds, data.resourcesPerSecond, data.patients.slice(0, 3), data.observations.slice(0, 3));
  const token = await client.token(api.url);
  for (const q of [`Patient/${data.patients[0]}`, `Patient?identifier=https://bench.tic-exchange.org/mrn|MRN-3`, 'Patient?name=Abara', 'Observation?date=ge2024-03-01&date=lt2024-03-08', `Observation?subject=Patient/${data.patients[1]}&_include=Observation:subject`, 'Questionnaire?url=https://tic-exchange.org/fhir/Questionnaire/pcl-5']) {
    const res = await fetch(`${api.url}/fhir/${q}`, { headers: { authorization: `Bearer ${token}` } });
    const j = await res.json() as any;
    console.log(q, res.status, j.resourceType, j.total, j.entry?.length, j.issue ? JSON.stringify(j.issue) : '');
  }
} finally {
  console.log(api.output());
  await api.stop();
  await db.drop();
}
