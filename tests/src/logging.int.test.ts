// Issue 2: request logs carry route, status and timing, never resource bodies, names, identifier
// values or query values.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Patient } from '@medplum/fhirtypes';
import type { DomainModule } from '@tic/fhir';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { fhir } from './helpers.ts';

let t: TestApi;
let a: Fhir;
const lines: string[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  // A module that fails unexpectedly with patient data in its error message (as a driver error
  // quoting a value would): the 500 must not carry it to the client or the log.
  const faulty: DomainModule = {
    name: 'faulty',
    resourceTypes: ['Patient'],
    async beforeWrite(resource) {
      const family = (resource as Patient).name?.[0]?.family;
      if (family?.startsWith('Crash')) throw new Error(`cannot handle ${family}`);
    },
  };
  t = await createTestApi({ logger: pino({ level: 'trace' }, sink), modules: [faulty] });
  a = fhir(t, await t.client('a'));
}, 120_000);
afterAll(async () => t?.close());

describe('logging', () => {
  it('keeps patient data out of the log', async () => {
    const family = 'Zyxwvutsrqfamily';
    const given = 'Qwertzuiopgiven';
    const mrn = 'MRN98765432123';
    const phone = '555-0199-7734';
    lines.length = 0;
    const p = await a.create<Patient>({
      resourceType: 'Patient',
      name: [{ family, given: [given] }],
      identifier: [{ system: 'urn:test:mrn', value: mrn }],
      telecom: [{ system: 'phone', value: phone }],
      birthDate: '1971-03-14',
    });
    await a.get(`Patient?family=${family}&identifier=urn:test:mrn|${mrn}`, { 'X-Request-Id': 'req-logging-1' });
    await a.get(`Patient?name=${given}&_count=1`);
    await a.put(`Patient/${p.id}`, { ...p, name: [{ family, given: [given, 'Second'] }] });
    await a.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient?family=${family}` } }] });
    // Failing requests too: validation errors must not echo the value into the log.
    await a.post('Patient', { resourceType: 'Patient', name: [{ family }], gender: `${given}-gender` });
    await a.get(`Patient?birthdate=bad${mrn}`);
    await a.get(`Patient/${mrn}`);
    await a.post('Patient', `{"resourceType":"Patient","name":[{"family":"${family}"`);

    expect(lines.length).toBeGreaterThan(5);
    if (process.env.SHOW_LOG) process.stdout.write(lines.join('\n'));
    const text = lines.join('\n');
    for (const secret of [family, given, mrn, phone, '1971-03-14', 'Bearer ', (await t.client('a')).token.slice(0, 30)]) {
      expect(text).not.toContain(secret);
    }
    // The log still says what happened.
    const completed = lines.map((l) => JSON.parse(l) as { req?: { id?: string; path?: string }; res?: { statusCode?: number; resourceType?: string; interaction?: string }; responseTime?: number }).filter((l) => l.res?.statusCode);
    expect(completed.some((l) => l.req?.id === 'req-logging-1' && l.res?.interaction === 'search-type' && l.res.resourceType === 'Patient' && typeof l.responseTime === 'number')).toBe(true);
    expect(completed.some((l) => l.res?.statusCode === 201)).toBe(true);
  });

  it('an unexpected error answers a generic 500 and logs no patient data', async () => {
    lines.length = 0;
    const family = 'CrashVeryDistinctiveSurname';
    const res = await a.post('Patient', { resourceType: 'Patient', name: [{ family }] });
    expect(res.status).toBe(500);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(res.body)).not.toContain(family);
    const errors = lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
    expect(errors.length).toBeGreaterThan(0);
    expect(lines.join('\n')).not.toContain(family);
  });
});
