// Pure helpers that turn FHIR search values into the bounds the SQL compares against: prefixes,
// OR lists, token parts, number precision ranges and date ranges with the spec's prefix semantics
// (https://hl7.org/fhir/R4/search.html#prefix). No SQL is built here except range conditions over
// given column and placeholder names.
import { dateRange } from './indexer.ts';

export const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'] as const;
export type Prefix = (typeof PREFIXES)[number];

/** Splits a leading comparison prefix ("ge2020") from a number/date/quantity value. */
export function splitPrefix(value: string): [Prefix, string] {
  const head = value.slice(0, 2);
  if ((PREFIXES as readonly string[]).includes(head) && /^[a-z]{2}[-+.\d]/.test(value)) return [head as Prefix, value.slice(2)];
  return ['eq', value];
}

/** Splits a comma-separated OR list, honouring backslash escapes (\, \| \$ \\). */
export function splitOr(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      const n = value[++i];
      // Keep an escaped "|" escaped so splitToken does not treat it as the system separator.
      cur += n === '|' ? '\\|' : n;
    } else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** "system|code", "|code", "system|", "code"; an escaped "\|" is part of the code. */
export function splitToken(value: string): { system?: string; code?: string } {
  let i = -1;
  for (let k = 0; k < value.length; k++) {
    if (value[k] === '\\' && value[k + 1] === '|') {
      k++;
      continue;
    }
    if (value[k] === '|') {
      i = k;
      break;
    }
  }
  const unescape = (s: string) => s.replace(/\\\|/g, '|');
  if (i < 0) return { code: unescape(value) };
  return { system: unescape(value.slice(0, i)), code: unescape(value.slice(i + 1)) };
}

/** Splits on unescaped "|" into at most n parts (quantity: number|system|code). */
export function splitPipes(value: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let k = 0; k < value.length; k++) {
    if (value[k] === '\\' && value[k + 1] === '|') {
      cur += '|';
      k++;
    } else if (value[k] === '|') {
      parts.push(cur);
      cur = '';
    } else cur += value[k];
  }
  parts.push(cur);
  return parts;
}

const NUMBER = /^([-+]?)(\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?$/;

export function isNumber(s: string): boolean {
  return NUMBER.test(s);
}

/**
 * Half a unit of the value's last significant digit as a plain decimal string: the implicit range
 * of "100" is [99.5, 100.5), of "100.0" [99.95, 100.05), of "1e2" [50, 150).
 */
export function numberHalfUnit(s: string): string | undefined {
  const m = NUMBER.exec(s);
  if (!m) return undefined;
  const frac = m[3] ?? '';
  const e = Number(m[4] ?? '0') - frac.length - 1;
  // 5 × 10^e written out in plain decimal notation (numeric accepts exponents too, but be explicit).
  if (e >= 0) return '5' + '0'.repeat(e);
  return '0.' + '0'.repeat(-e - 1) + '5';
}

/**
 * A condition over a target range [lowCol, highCol) (half-open) against the search range
 * [PL, PH) for a prefix, exactly as https://hl7.org/fhir/R4/search.html#prefix defines it:
 * eq: search range contains target; ne: it does not; gt: target reaches above the search range;
 * lt: target reaches below it; ge = gt or eq; le = lt or eq; sa: target starts after the search
 * range ends; eb: target ends before it starts; ap: target overlaps the (widened) search range.
 */
export function rangeCondition(prefix: Prefix, lowCol: string, highCol: string, pl: string, ph: string): string {
  const contains = `(${lowCol} >= ${pl} AND ${highCol} <= ${ph})`;
  // The extra bounds below are implied (a target range is never empty: low < high) but let
  // PostgreSQL use the (code, low) / (code, high) indexes as one range scan.
  switch (prefix) {
    case 'eq':
      return `${lowCol} >= ${pl} AND ${lowCol} < ${ph} AND ${highCol} <= ${ph}`;
    case 'ne':
      return `NOT ${contains}`;
    case 'gt':
      return `${highCol} > ${ph}`;
    case 'lt':
      return `${lowCol} < ${pl}`;
    case 'ge':
      return `${highCol} > ${pl} AND (${highCol} > ${ph} OR ${contains})`;
    case 'le':
      return `${lowCol} < ${ph} AND (${lowCol} < ${pl} OR ${contains})`;
    case 'sa':
      return `${lowCol} >= ${ph}`;
    case 'eb':
      return `${highCol} <= ${pl}`;
    case 'ap':
      return `(${lowCol} < ${ph} AND ${highCol} > ${pl})`;
    default: {
      const never: never = prefix;
      throw new Error(`Unknown prefix ${String(never)}`);
    }
  }
}

/**
 * The condition for a point in time (a resource column such as last_updated) against the search
 * range [PL, PH): the point is the degenerate range [t, t].
 */
export function pointCondition(prefix: Prefix, col: string, pl: string, ph: string): string {
  switch (prefix) {
    case 'eq':
      return `(${col} >= ${pl} AND ${col} < ${ph})`;
    case 'ne':
      return `NOT (${col} >= ${pl} AND ${col} < ${ph})`;
    case 'gt':
    case 'sa':
      return `${col} >= ${ph}`;
    case 'lt':
    case 'eb':
      return `${col} < ${pl}`;
    case 'ge':
      return `${col} >= ${pl}`;
    case 'le':
      return `${col} < ${ph}`;
    case 'ap':
      return `(${col} >= ${pl} AND ${col} < ${ph})`;
    default: {
      const never: never = prefix;
      throw new Error(`Unknown prefix ${String(never)}`);
    }
  }
}

/**
 * The search range of a date value. For `ap` the range is widened by 10% of the distance between
 * now and the value (at least a day), the spec's recommendation for "approximately".
 */
export function searchDateRange(prefix: Prefix, value: string, now = Date.now()): [string, string] | undefined {
  const r = dateRange(value);
  if (!r) return undefined;
  if (prefix !== 'ap') return r;
  const low = Date.parse(r[0]);
  const high = Date.parse(r[1]);
  const margin = Math.max(Math.abs(now - low) * 0.1, 86_400_000);
  return [new Date(low - margin).toISOString(), new Date(high + margin).toISOString()];
}

/** Escapes LIKE wildcards (the pattern is always bound as a parameter). */
export function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, '\\$&');
}

/** For uri :above, every prefix of the value at a "/" boundary, longest first, plus the value. */
export function uriAncestors(value: string): string[] {
  const out = [value];
  const start = value.indexOf('://') >= 0 ? value.indexOf('://') + 3 : 0;
  for (let i = value.length - 1; i > start; i--) {
    if (value[i] === '/') out.push(value.slice(0, i));
  }
  return out;
}
