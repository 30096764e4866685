// Who may see which stored resource. The rule runs inside every SQL query (read, search, include,
// history) so that totals, paging and _include never reveal hidden resources.
//
// Default rule: a client sees resources its organisation wrote, resources shared with its
// organisation (resource_share rows: referrals, care teams, consent grants), and reference data
// written by the server itself (owner_org NULL: conformance resources, the service directory).
// Resources labelled R or V need the client's explicit permission.
import type { RequestContext } from '@tic/fhir';

export interface SqlFragment {
  sql: string;
  params: unknown[];
}

/** Extension point: further visibility rules plug in here (OR-ed with the default rule). */
export interface VisibilityRule {
  /** SQL predicate over alias `r` (a resource or resource_version row); use $? placeholders. */
  predicate(ctx: RequestContext): SqlFragment | undefined;
}

export function isSystemContext(ctx: RequestContext | undefined): boolean {
  return !ctx || ctx.system === true || !ctx.organization;
}

/**
 * The access predicate for alias `r`, with `$?` placeholders to be numbered by the caller.
 * Undefined when the context sees everything (the server itself).
 */
export function visibilityPredicate(ctx: RequestContext | undefined, rules: VisibilityRule[] = []): SqlFragment | undefined {
  if (isSystemContext(ctx)) return undefined;
  const org = ctx!.organization!;
  const ors = [
    'r.owner_org IS NULL',
    'r.owner_org = $?',
    `EXISTS (SELECT 1 FROM resource_share s WHERE s.resource_type = r.resource_type AND s.id = r.id AND s.org = $? AND (s.expires IS NULL OR s.expires > now()))`,
  ];
  const params: unknown[] = [org, org];
  for (const rule of rules) {
    const f = rule.predicate(ctx!);
    if (f) {
      ors.push(`(${f.sql})`);
      params.push(...f.params);
    }
  }
  let sql = `(${ors.join(' OR ')})`;
  if (!ctx!.canReadRestricted) sql += ' AND NOT r.restricted';
  return { sql, params };
}

const restrictedCodes = new Set(['R', 'V']);
const confidentiality = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';

/** True when meta.security carries confidentiality R (restricted) or V (very restricted). */
export function isRestricted(resource: { meta?: { security?: Array<{ system?: string; code?: string }> } }): boolean {
  return (resource.meta?.security ?? []).some((c) => c.system === confidentiality && !!c.code && restrictedCodes.has(c.code));
}

/** Numbers $? placeholders from a starting index. */
export function numberPlaceholders(sql: string, start: number): { sql: string; next: number } {
  let n = start;
  const out = sql.replace(/\$\?/g, () => `$${n++}`);
  return { sql: out, next: n };
}
