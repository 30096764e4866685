// One ajv instance for the package's start-time validation (configuration, client registry).
import { Ajv } from 'ajv';
import type { ErrorObject } from 'ajv';

export const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });

/** "  - /clients/0/organization must match pattern ..." lines, one per problem. */
export function describeErrors(errors: readonly ErrorObject[] | null | undefined, root = ''): string[] {
  return (errors ?? []).map((e) => {
    const where = `${root}${e.instancePath}` || '/';
    const extra = e.keyword === 'additionalProperties' ? ` (${String(e.params.additionalProperty)})` : '';
    return `${where} ${e.message ?? 'is invalid'}${extra}`;
  });
}

/** http: is accepted only for the loopback interface (tests, local development). */
export function isAcceptableKeyUrl(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol === 'https:') return true;
  return u.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
}
