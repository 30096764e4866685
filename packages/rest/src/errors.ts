// The one Express error handler: any error becomes an OperationOutcome with the status taken from
// its issue code. Unknown errors answer a generic 500; their stack goes to the log only.
import type { ErrorRequestHandler } from 'express';
import type { Logger } from 'pino';
import { safeError } from './logging.ts';
import { isOperationOutcomeError, outcome, payloadTooLarge, statusForOutcome, badRequest } from '@tic/fhir';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

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
    log.error({ err: safeError(e) }, 'unhandled error');
    res.status(500).type(FHIR_JSON).send(JSON.stringify(outcome('exception', 'Internal server error')));
  };
}
