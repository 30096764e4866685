// The referral delivery worker as the benchmark runs it (tests/src/bench/referral.ts starts one or
// more of these as child processes): services/worker's createWorker on server A's database, with a
// static target (server B) and a SMART Backend Services token obtained from B's token endpoint with
// the key the benchmark registered there. services/worker/src/index.ts reads targets from a JSON
// file, which cannot carry a token source; this script is that entry point plus the token.
// Environment: DATABASE_URL (A), SOURCE_BASE (A's FHIR base), TARGET_BASE (B's public URL),
// KEY_FILE (JSON { clientId, kid, jwk } of A's client registered on B), CONCURRENCY, POLL_INTERVAL_MS,
// POOL_SIZE.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { importJWK, SignJWT } from 'jose';
import type { JWK } from 'jose';
import { openDatabase } from '@tic/store';
// tests/package.json does not list the worker service; import it by path.
import { createWorker } from '../../../services/worker/src/app.ts';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}

const line = (level: number) => (obj: object, msg?: string) => {
  if (level >= 40) process.stderr.write(`${JSON.stringify({ level, time: Date.now(), ...obj, msg })}\n`);
};
const logger = { error: line(50), warn: line(40), info: line(30), debug: line(20) };

async function main(): Promise<void> {
  const databaseUrl = env('DATABASE_URL');
  const targetBase = env('TARGET_BASE');
  const key = JSON.parse(readFileSync(env('KEY_FILE'), 'utf8')) as { clientId: string; kid: string; jwk: JWK };
  const privateKey = await importJWK(key.jwk, 'ES384');
  let cached: { token: string; until: number } | undefined;
  const accessToken = async (): Promise<string> => {
    if (cached && cached.until > Date.now()) return cached.token;
    const tokenUrl = `${targetBase}/auth/token`;
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES384', kid: key.kid, typ: 'JWT' })
      .setIssuer(key.clientId)
      .setSubject(key.clientId)
      .setAudience(tokenUrl)
      .setIssuedAt(now)
      .setExpirationTime(now + 240)
      .setJti(randomUUID())
      .sign(privateKey);
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: 'system/*.cruds',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    });
    const res = await fetch(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    const json = (await res.json()) as { access_token?: string; expires_in?: number };
    if (res.status !== 200 || !json.access_token) throw new Error(`token request to the receiving server failed: ${res.status}`);
    cached = { token: json.access_token, until: Date.now() + Math.max(30, (json.expires_in ?? 300) - 60) * 1000 };
    return json.access_token;
  };
  const concurrency = Number(process.env.CONCURRENCY ?? 16);
  const db = await openDatabase({ url: databaseUrl, poolSize: Number(process.env.POOL_SIZE ?? concurrency + 4) });
  const runner = await createWorker({
    databaseUrl,
    db,
    sourceBase: env('SOURCE_BASE'),
    targets: { 'Organization/org-b': { baseUrl: `${targetBase}/fhir`, requester: 'Organization/org-a', owner: 'Organization/org-b', accessToken } },
    pollIntervalMs: Number(process.env.POLL_INTERVAL_MS ?? 3_600_000),
    concurrency,
    logger,
  });
  process.stdout.write('worker ready\n');
  const stop = () => {
    runner.stop().then(
      () => db.close().then(() => process.exit(0)),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`referral worker failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
