// Seeds conformance resources (Questionnaires, CodeSystems, ValueSets, profiles) idempotently:
// a resource with the same url and version is never stored twice.
import type { Resource } from '@medplum/fhirtypes';
import type { Logger } from 'pino';
import type { Repository } from '@tic/store';

export async function seedConformance(repo: Repository, resources: Resource[], logger: Logger): Promise<number> {
  let created = 0;
  const seen = new Set<string>();
  for (const r of resources) {
    const { url, version } = r as { url?: string; version?: string };
    if (!url) continue;
    const key = `${r.resourceType}|${url}|${version ?? ''}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const query = new URLSearchParams({ url, ...(version ? { version } : {}) }).toString();
    const { id: _id, meta: _meta, ...body } = r as Resource & { id?: string };
    void _id;
    void _meta;
    const result = await repo.conditionalCreate({ ...body, ...(r.id ? { id: r.id } : {}) } as Resource, query);
    if (result.created) created++;
  }
  logger.info({ created, total: seen.size }, 'conformance resources seeded');
  return created;
}
