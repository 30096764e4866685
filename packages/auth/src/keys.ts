// The built-in authorization server's signing key: loaded from configuration, or generated.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { SigningAlg } from './config.ts';

export interface SigningKey {
  alg: SigningAlg;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

export function publicPart(jwk: JWK): JWK {
  const out: JWK = {};
  for (const [k, v] of Object.entries(jwk)) if (!privateMembers.includes(k)) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** Generates an extractable key pair and returns its private JWK (with kid and alg set). */
export async function generatePrivateJwk(alg: SigningAlg): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = alg;
  return jwk;
}

export async function signingKeyFromJwk(alg: SigningAlg, privateJwk: JWK, kid?: string): Promise<SigningKey> {
  const pub = publicPart(privateJwk);
  const id = kid ?? privateJwk.kid ?? (await calculateJwkThumbprint(pub));
  const privateKey = (await importJWK({ ...privateJwk, alg }, alg)) as CryptoKey;
  const publicKey = (await importJWK({ ...pub, alg }, alg)) as CryptoKey;
  return { alg, kid: id, privateKey, publicKey, publicJwk: { ...pub, kid: id, alg, use: 'sig' } };
}

export async function loadSigningKey(cfg: { alg: SigningAlg; privateJwk?: JWK; kid?: string } | undefined): Promise<SigningKey> {
  const alg = cfg?.alg ?? 'ES384';
  const jwk = cfg?.privateJwk ?? (await generatePrivateJwk(alg));
  return signingKeyFromJwk(alg, jwk, cfg?.kid);
}
