// Request logging with pino-http: request id, method, interaction, resource type, status and
// duration. Never URLs with query strings, bodies, headers or anything that can hold patient data.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';

const requestIdPattern = /^[A-Za-z0-9\-_.]{1,64}$/;

export interface LoggedRoute {
  interaction?: string;
  resourceType?: string;
}

export function routeInfo(res: ServerResponse): LoggedRoute {
  return ((res as unknown as { locals?: { route?: LoggedRoute } }).locals?.route ?? {}) as LoggedRoute;
}

/**
 * An error as it may be logged: its type, code and stack frames, never its message, which can quote
 * request data (a driver error naming a value, a hook's message naming a patient).
 */
export function safeError(err: unknown): { type: string; code?: string; stack?: string } {
  // Duck-typed: errors from another realm (vm contexts, workers) are not `instanceof Error`.
  if (!err || typeof err !== 'object' || typeof (err as { stack?: unknown }).stack !== 'string') return { type: typeof err };
  const e = err as { name?: unknown; code?: unknown; stack: string };
  const code = e.code;
  const frames = e.stack.split('\n').filter((l) => /^\s+at /.test(l)).join('\n');
  return { type: typeof e.name === 'string' ? e.name : 'Error', ...(typeof code === 'string' ? { code } : {}), ...(frames ? { stack: frames } : {}) };
}

export function requestLogger(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    wrapSerializers: false,
    serializers: {
      req: (req: IncomingMessage & { id?: string }) => ({ id: req.id, method: req.method, path: (req.url ?? '').split('?')[0].split('/').slice(0, 3).join('/') }),
      res: (res: ServerResponse) => ({ statusCode: res.statusCode, ...routeInfo(res) }),
      err: safeError,
    },
    customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'info'),
    customSuccessMessage: () => 'request completed',
    customErrorMessage: () => 'request failed',
  });
}
