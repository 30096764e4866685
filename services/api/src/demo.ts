// Demo data for the embedded mode: a small cross-sector network and a few people, loaded
// idempotently (conditional creates on identifiers) so restarts never duplicate it. Everything
// here is fictional.
import type { Organization, Patient, Resource } from '@medplum/fhirtypes';
import type { Logger } from 'pino';
import { Repository } from '@tic/store';
import { loadExamples } from '@tic/fhir-profiles';

const DEMO = 'https://tic-exchange.org/fhir/demo';

const SECTOR = 'https://tic-exchange.org/fhir/CodeSystem/sector';

const organizations: Array<[id: string, name: string, sector: string]> = [
  ['demo-clinic', 'Harbourside Primary Care (demo)', 'health'],
  ['demo-housing', 'Northgate Housing Trust (demo)', 'housing'],
  ['demo-peer', 'Lantern Peer Support Collective (demo)', 'peer-support'],
  ['tic-dev-organization', 'Development client organisation (demo)', 'health'],
];

/** Directory resources are shared reference data, readable by every organisation. */
const directoryTypes = new Set(['Organization', 'HealthcareService', 'Location', 'Endpoint', 'PractitionerRole']);

const patients: Array<[id: string, family: string, given: string, birthDate: string, gender: Patient['gender']]> = [
  ['demo-p1', 'Rivera', 'Alex', '1988-04-12', 'other'],
  ['demo-p2', 'Okafor', 'Ngozi', '1975-09-30', 'female'],
  ['demo-p3', 'Tane', 'Wiremu', '2001-01-22', 'male'],
];

/** The organisation that owns the demo people; the development client acts for it. */
export const DEMO_OWNER = 'Organization/tic-dev-organization';

export async function loadDemoData(systemRepo: Repository, logger: Logger): Promise<void> {
  // Directory entries are shared reference data (written by the server); the people and their
  // screening results belong to the development client's organisation, like any client's data.
  const examples = loadExamples();
  const directory: Resource[] = [
    ...organizations.map(
      ([id, name, sector]): Organization => ({
        resourceType: 'Organization',
        id,
        active: true,
        name,
        identifier: [{ system: `${DEMO}/organization`, value: id }],
        type: [{ coding: [{ system: SECTOR, code: sector }] }],
      }),
    ),
    ...examples.filter((r) => directoryTypes.has(r.resourceType)),
  ];
  await loadAll(systemRepo, directory, logger);
  const owned = new Repository(systemRepo.db, { organization: DEMO_OWNER, clientId: 'demo-loader', canReadRestricted: true }, systemRepo.services);
  await loadAll(owned, [
    ...patients.map(([id, family, given, birthDate, gender]): Patient => ({
      resourceType: 'Patient',
      id,
      identifier: [{ system: `${DEMO}/patient`, value: id }],
      name: [{ family, given: [given] }],
      birthDate,
      gender,
      managingOrganization: { reference: 'Organization/demo-clinic' },
    })),
    ...examples.filter((r) => !directoryTypes.has(r.resourceType)),
  ], logger);
}

async function loadAll(repo: Repository, resources: Resource[], logger: Logger): Promise<void> {
  let created = 0;
  for (const r of resources) {
    if (!r.id) continue;
    const exists = await repo.readRow(r.resourceType, r.id);
    if (exists) continue;
    try {
      await repo.update(r);
      created++;
    } catch (e) {
      logger.warn({ resourceType: r.resourceType, err: (e as Error).message }, 'demo resource skipped');
    }
  }
  logger.info({ created }, 'demo data loaded');
}
