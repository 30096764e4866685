// Prints an access token for the embedded mode's development client.
//   node packages/auth/src/cli/get-token.ts [--base-url http://localhost:8080] [--data-dir ./data/dev-client] [--scope "system/Task.rs"]
// Runs under Node 24 directly (type stripping). Exit code 1 with the server's error on failure.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { JWK } from 'jose';
import { signClientAssertion, tokenRequestBody } from '../client-assertion.ts';

interface Registration {
  clientId: string;
  scopes: string[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'base-url': { type: 'string', default: process.env.TIC_BASE_URL ?? 'http://localhost:8080' },
      'data-dir': { type: 'string', default: './data/dev-client' },
      scope: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const dir = values['data-dir'] as string;
  const registration = JSON.parse(await readFile(join(dir, 'client.json'), 'utf8')) as Registration;
  const privateJwk = JSON.parse(await readFile(join(dir, 'private-key.jwk.json'), 'utf8')) as JWK;
  const tokenUrl = `${(values['base-url'] as string).replace(/\/+$/, '')}/auth/token`;
  const assertion = await signClientAssertion({ clientId: registration.clientId, tokenUrl, privateJwk });
  const scope = values.scope ?? registration.scopes.join(' ');
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: tokenRequestBody(assertion, scope),
  });
  const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
  if (!res.ok || !body.access_token) {
    process.stderr.write(`token request failed (${res.status}): ${body.error ?? ''} ${body.error_description ?? ''}\n`);
    return 1;
  }
  process.stdout.write(values.json ? JSON.stringify(body, null, 2) + '\n' : body.access_token + '\n');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`get-token: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
