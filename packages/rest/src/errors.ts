// The one Express error handler: any error becomes an OperationOutcome with the status taken from
// its issue code. Unknown errors answer a generic 500; their stack goes to the log only.
import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'pino';
import { safeError } from './logging.ts';
import { isOperationOutcomeError, outcome, payloadTooLarge, statusForOutcome, badRequest } from '@tic/fhir';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/**
 * The database cannot take the request now (PostgreSQL out of connections or restarting, the
 * connection refused or lost): a transient condition the client may retry, not a server bug.
 */
export function isDatabaseUnavailable(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string') {
    // SQLSTATE class 08 (connection exception), 53 (insufficient resources), 57P01-57P03 (shutdown, cannot connect now).
    if (/^(08|53)[0-9A-Z]{3}$/.test(code) || /^57P0[123]$/.test(code)) return true;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EPIPE') return true;
  }
  const message = e instanceof Error ? e.message : '';
  return /^(timeout exceeded when trying to connect|Connection terminated)/.test(message);
}

export function fhirErrorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) return next(err);
    let e = err;
    const type = (err as { type?: string })?.type;
    if (type === 'entity.too.large') e = payloadTooLarge('The request body is larger than 5 MB');
    else if (type === 'entity.parse.failed' || type === 'encoding.unsupported' || type === 'charset.unsupported') e = badRequest('The request body could not be read');
    if (isOperationOutcomeError(e)) {
      const status = statusForOutcome(e);
      for (const [k, v] of Object.entries(e.headers ?? {})) res.setHeader(k, v);
      res.status(status).type(FHIR_JSON).send(JSON.stringify(e.outcome));
      return;
    }
    // Never the message or stack to the client; to the log without request data.
    const log = (req as { log?: Logger }).log ?? logger;
    if (isDatabaseUnavailable(e)) {
      log.warn({ err: safeError(e) }, 'database unavailable');
      res.setHeader('Retry-After', '1');
      res.status(503).type(FHIR_JSON).send(JSON.stringify(outcome('transient', 'The database is unavailable; retry shortly')));
      return;
    }
    log.error({ err: safeError(e) }, 'unhandled error');
    res.status(500).type(FHIR_JSON).send(JSON.stringify(outcome('exception', 'Internal server error')));
  };
}
