// Test support (not exported): a tiny Express app around the auth layer, and client key pairs.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Express, NextFunction, Request, Response } from 'express';
import { exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import type { Auth } from './create-auth.ts';
import type { TicRequest } from './authenticate.ts';

export interface ClientKey {
  alg: 'ES384' | 'RS384';
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function clientKey(alg: 'ES384' | 'RS384', kid: string): Promise<ClientKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicJwk };
}

/** Mounts the auth router, authenticate, rateLimit, one protected route and the error handler. */
export function appWith(auth: Auth): Express {
  const app = express();
  app.use(auth.router);
  app.use(auth.authenticate);
  app.use(auth.rateLimit);
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/fhir/metadata', (_req, res) => {
    res.json({ resourceType: 'CapabilityStatement' });
  });
  app.get('/fhir/Task', (req, res) => {
    res.json({ context: (req as TicRequest).tic });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (isOperationOutcomeError(err)) {
      for (const [k, v] of Object.entries(err.headers ?? {})) res.set(k, v);
      res.status(statusForOutcome(err)).json(err.outcome);
      return;
    }
    res.status(500).json({ error: String(err) });
  });
  return app;
}

/** Serves a JSON document (a JWKS) on 127.0.0.1 at an ephemeral port. */
export async function serveJson(doc: () => unknown): Promise<{ url: string; close: () => Promise<void>; hits: () => number }> {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(doc()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
