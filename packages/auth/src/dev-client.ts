// The embedded mode's development client: created on first start in a data directory (private JWK
// and registry entry), reused afterwards. Production refuses to start with it registered.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { generatePrivateJwk, publicPart } from './keys.ts';
import type { SigningAlg } from './config.ts';
import type { ClientRegistration } from './registry.ts';
import { loadClientRegistry } from './registry.ts';

export const DEV_CLIENT_ID = 'tic-dev-client';
export const DEV_CLIENT_FILE = 'client.json';
export const DEV_PRIVATE_KEY_FILE = 'private-key.jwk.json';
export const SERVER_KEY_FILE = 'server-signing-key.jwk.json';
export const DEV_ORGANIZATION = 'Organization/tic-dev-organization';
const DEV_SCOPES = ['system/*.cruds', 'system/AuditEvent.rs'];

export interface DevClient {
  registration: ClientRegistration;
  privateJwk: JWK;
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`Cannot read ${file}: ${(e as Error).message}`);
  }
}

async function writeSecret(file: string, value: unknown): Promise<void> {
  await writeFile(file, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  await chmod(file, 0o600);
}

/** Reads the development client from dataDir, creating it (and the directory) on first use. */
export async function ensureDevClient(dataDir: string): Promise<DevClient> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const regFile = join(dataDir, DEV_CLIENT_FILE);
  const keyFile = join(dataDir, DEV_PRIVATE_KEY_FILE);
  const existingReg = await readJson(regFile);
  const existingKey = (await readJson(keyFile)) as JWK | undefined;
  if (existingReg && existingKey) {
    const registration = loadClientRegistry([existingReg]).list()[0];
    return { registration, privateJwk: existingKey };
  }
  const privateJwk = await generatePrivateJwk('ES384');
  const registration: ClientRegistration = {
    clientId: DEV_CLIENT_ID,
    name: 'Development client (embedded mode only)',
    organization: DEV_ORGANIZATION,
    scopes: DEV_SCOPES,
    jwks: { keys: [{ ...publicPart(privateJwk), use: 'sig' }] },
    sensitive: true,
    auditor: true,
    development: true,
  };
  await writeSecret(keyFile, privateJwk);
  await writeFile(regFile, JSON.stringify(registration, null, 2) + '\n');
  return { registration, privateJwk };
}

/** The server's signing key kept in dataDir, so development tokens survive a restart. */
export async function ensureServerKey(dataDir: string, alg: SigningAlg): Promise<JWK> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, SERVER_KEY_FILE);
  const existing = (await readJson(file)) as JWK | undefined;
  if (existing && existing.alg === alg) return existing;
  const jwk = await generatePrivateJwk(alg);
  await writeSecret(file, jwk);
  return jwk;
}

/** The one-line command (run from the repository root) that prints a development access token. */
export function devTokenCommand(baseUrl: string, dataDir = './data/dev-client'): string {
  return `node packages/auth/src/cli/get-token.ts --base-url ${baseUrl.replace(/\/+$/, '')} --data-dir ${dataDir}`;
}
