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
    // Keep the source's own meta (profile, tags, security) but not version bookkeeping.
    const { versionId: _v, lastUpdated: _l, ...meta } = r.meta ?? {};
    void _v;
    void _l;
    const body = { ...r, ...(Object.keys(meta).length > 0 ? { meta } : {}) } as Resource;
    if (Object.keys(meta).length === 0) delete (body as { meta?: unknown }).meta;
    const result = await repo.conditionalCreate(body, query);
    if (result.created) created++;
  }
  logger.info({ created, total: seen.size }, 'conformance resources seeded');
  return created;
}
