// Bundles the server answers with: searchset and history, with paging links.
import type { Bundle, BundleEntry, BundleLink, Resource } from '@medplum/fhirtypes';
import { allResourceTypes, badRequest, outcome } from '@tic/fhir';
import type { Repository, SearchResult } from '@tic/store';
import { dateRange } from '@tic/store';

function queryString(pairs: Array<[string, string]>): string {
  return new URLSearchParams(pairs).toString();
}

export function searchBundle(result: SearchResult, baseUrl: string, type: string, _kind: 'search'): Bundle {
  const base = `${baseUrl}/${type}`;
  const applied = result.applied.filter(([k]) => k !== '_offset' && k !== '_count' && k !== '_cursor');
  const page = (offset: number): string => queryString([...applied, ['_count', String(result.count)], ...(offset > 0 ? ([['_offset', String(offset)]] as Array<[string, string]>) : [])]);
  const link: BundleLink[] = [{ relation: 'self', url: `${base}?${result.summaryCount ? queryString(result.applied) : page(result.offset)}` }];
  const extra = result as SearchResult & { nextCursor?: string; prevCursor?: string };
  if (!result.summaryCount) {
    if (extra.nextCursor) link.push({ relation: 'next', url: `${base}?${queryString([...applied, ['_count', String(result.count)], ['_cursor', extra.nextCursor]])}` });
    else if (result.hasMore) link.push({ relation: 'next', url: `${base}?${page(result.offset + result.count)}` });
    if (extra.prevCursor) link.push({ relation: 'previous', url: `${base}?${queryString([...applied, ['_count', String(result.count)], ['_cursor', extra.prevCursor]])}` });
    else if (result.offset > 0) link.push({ relation: 'previous', url: `${base}?${page(Math.max(0, result.offset - result.count))}` });
  }
  const entry: BundleEntry[] = result.entries.map((e) => ({
    fullUrl: `${baseUrl}/${e.resource.resourceType}/${e.resource.id}`,
    resource: e.resource,
    search: { mode: e.mode },
  }));
  if (result.warnings.length > 0) {
    const oo = outcome('not-supported', result.warnings.join('; '), undefined, 'warning');
    entry.push({ resource: oo, search: { mode: 'outcome' } });
  }
  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', link, entry };
  if (result.total !== undefined) bundle.total = result.total;
  return bundle;
}

const MAX_HISTORY_COUNT = 1000;

// A FHIR instant or dateTime (Date.parse alone accepts far too much, e.g. "' OR '1'='1").
const instantPattern = /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d{1,9})?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$/;

function isInstant(value: string): boolean {
  return instantPattern.test(value) && !Number.isNaN(Date.parse(value));
}

/**
 * A history Bundle. `permitted` filters system history by resource type (types the client's scopes
 * do not cover, e.g. AuditEvent, are left out in SQL, so pages stay full).
 */
export async function historyBundle(
  repo: Repository,
  type: string | undefined,
  id: string | undefined,
  query: Record<string, string[]>,
  baseUrl: string,
  permitted: (resourceType: string) => boolean = () => true,
): Promise<Bundle> {
  const count = query._count ? Number(query._count[0]) : 50;
  const offset = query._offset ? Number(query._offset[0]) : 0;
  if (!Number.isInteger(count) || count < 0 || !Number.isInteger(offset) || offset < 0) throw badRequest('_count and _offset must be non-negative integers');
  const since = query._since?.[0];
  if (since !== undefined && !isInstant(since)) throw badRequest('_since must be an instant', '_since');
  // _at: versions current at some point in the period the date denotes (a year, a month, a day or
  // a moment; FHIR search date rules without a prefix).
  const atValue = query._at?.[0];
  const at = atValue === undefined ? undefined : dateRange(atValue);
  if (atValue !== undefined && !at) throw badRequest('_at must be a date, dateTime or instant', '_at');
  // Pages are anchored at the time of the first page so that later writes do not shift them.
  const before = query._before?.[0] ?? new Date().toISOString();
  if (!isInstant(before)) throw badRequest('_before must be an instant');
  const n = Math.min(count, MAX_HISTORY_COUNT);
  const excludeTypes = type ? [] : allResourceTypes().filter((t) => !permitted(t));
  const entries = await repo.historyEntries(type, id, { since, before, count: n + 1, offset, ...(at ? { at } : {}), ...(excludeTypes.length ? { excludeTypes } : {}) });
  const hasMore = entries.length > n;
  const path = [baseUrl, type, id, '_history'].filter(Boolean).join('/');
  const params = (off: number): string =>
    new URLSearchParams([...(since ? [['_since', since] as [string, string]] : []), ...(atValue ? [['_at', atValue] as [string, string]] : []), ['_before', before], ['_count', String(n)], ['_offset', String(off)]] as Array<[string, string]>).toString();
  const link: BundleLink[] = [{ relation: 'self', url: `${path}?${params(offset)}` }];
  if (hasMore) link.push({ relation: 'next', url: `${path}?${params(offset + n)}` });
  if (offset > 0) link.push({ relation: 'previous', url: `${path}?${params(Math.max(0, offset - n))}` });
  return {
    resourceType: 'Bundle',
    type: 'history',
    link,
    entry: entries.slice(0, n).map((e) => {
      const r = e.resource as Resource;
      const entry: BundleEntry = {
        fullUrl: `${baseUrl}/${r.resourceType}/${r.id}`,
        request: { method: e.deleted ? 'DELETE' : e.versionId === 1 ? 'POST' : 'PUT', url: e.versionId === 1 && !e.deleted ? r.resourceType : `${r.resourceType}/${r.id}` },
        response: { status: e.deleted ? '204' : e.versionId === 1 ? '201' : '200', etag: `W/"${e.versionId}"`, lastModified: r.meta?.lastUpdated ?? e.lastUpdated },
      };
      if (!e.deleted) entry.resource = r;
      return entry;
    }),
  };
}
