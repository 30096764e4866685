// The one catalogue of FHIR errors. Domain code throws OperationOutcomeError built by these helpers;
// the REST layer turns any of them into an OperationOutcome with the HTTP status taken from the
// issue code (see statusForOutcome).
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

export type IssueCode = OperationOutcomeIssue['code'];

export class OperationOutcomeError extends Error {
  readonly outcome: OperationOutcome;
  /** An explicit HTTP status, only where the issue code alone is ambiguous (e.g. 410 vs 404). */
  readonly status: number | undefined;
  /** Extra response headers (e.g. Retry-After on 429, WWW-Authenticate on 401). */
  readonly headers: Record<string, string> | undefined;

  constructor(outcome: OperationOutcome, status?: number, headers?: Record<string, string>) {
    super(outcome.issue?.[0]?.diagnostics ?? outcome.issue?.[0]?.code ?? 'error');
    this.outcome = outcome;
    this.status = status;
    this.headers = headers;
  }
}

export function outcome(code: IssueCode, diagnostics: string, expression?: string | string[], severity: OperationOutcomeIssue['severity'] = 'error'): OperationOutcome {
  const issue: OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression !== undefined) issue.expression = Array.isArray(expression) ? expression : [expression];
  return { resourceType: 'OperationOutcome', issue: [issue] };
}

export function issuesError(issues: OperationOutcomeIssue[], status?: number): OperationOutcomeError {
  return new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues }, status);
}

export const badRequest = (msg: string, expression?: string | string[]): OperationOutcomeError =>
  new OperationOutcomeError(outcome('invalid', msg, expression), 400);
export const unprocessable = (msg: string, expression?: string | string[]): OperationOutcomeError =>
  new OperationOutcomeError(outcome('processing', msg, expression), 422);
export const businessRule = (msg: string, expression?: string | string[]): OperationOutcomeError =>
  new OperationOutcomeError(outcome('business-rule', msg, expression), 422);
export const notFound = (msg = 'Not found'): OperationOutcomeError => new OperationOutcomeError(outcome('not-found', msg), 404);
export const gone = (msg = 'Deleted'): OperationOutcomeError => new OperationOutcomeError(outcome('deleted', msg), 410);
export const conflict = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('conflict', msg), 409);
export const preconditionFailed = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('conflict', msg), 412);
export const preconditionRequired = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('required', msg), 428);
export const forbidden = (msg = 'Forbidden'): OperationOutcomeError => new OperationOutcomeError(outcome('forbidden', msg), 403);
export const unauthorized = (msg = 'Unauthorized', wwwAuthenticate = 'Bearer'): OperationOutcomeError =>
  new OperationOutcomeError(outcome('login', msg), 401, { 'WWW-Authenticate': wwwAuthenticate });
export const tooManyRequests = (retryAfterSeconds: number): OperationOutcomeError =>
  new OperationOutcomeError(outcome('throttled', 'Too many requests'), 429, { 'Retry-After': String(retryAfterSeconds) });
export const payloadTooLarge = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('too-costly', msg), 413);
export const unsupportedMediaType = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('not-supported', msg), 415);
export const methodNotAllowed = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('not-supported', msg), 405);
export const notSupported = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('not-supported', msg), 400);
export const multipleMatches = (msg: string): OperationOutcomeError => new OperationOutcomeError(outcome('multiple-matches', msg), 412);

const statusByCode: Partial<Record<IssueCode, number>> = {
  invalid: 400, structure: 400, required: 400, value: 400, invariant: 400, 'code-invalid': 400,
  processing: 422, 'business-rule': 422,
  security: 403, forbidden: 403, login: 401, unknown: 401, expired: 401,
  'not-found': 404, deleted: 410, conflict: 409, duplicate: 409, 'multiple-matches': 412,
  'too-costly': 413, 'not-supported': 400, throttled: 429, timeout: 504, exception: 500, transient: 503,
  informational: 200,
};

export function statusForOutcome(err: OperationOutcomeError): number {
  if (err.status) return err.status;
  const code = err.outcome.issue?.[0]?.code;
  return (code && statusByCode[code]) || 400;
}

export function allOk(message = 'All OK'): OperationOutcome {
  return outcome('informational', message, undefined, 'information');
}

export function isOperationOutcomeError(e: unknown): e is OperationOutcomeError {
  return e instanceof OperationOutcomeError;
}
