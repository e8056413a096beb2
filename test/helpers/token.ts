/** Signs JWTs for tests with node:crypto only (HS*, RS256, ES256, EdDSA). */
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'

export const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export interface Claims {
  sub?: unknown
  topics?: unknown
  exp?: unknown
  [claim: string]: unknown
}

/** HS256 (or HS384/HS512) token; `exp` defaults to an hour from now. */
export function hsToken (claims: Claims, secret = SECRET, alg: 'HS256' | 'HS384' | 'HS512' = 'HS256'): string {
  const body: Record<string, unknown> = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims }
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k]
  const head = `${b64({ alg, typ: 'JWT' })}.${b64(body)}`
  const hash = alg === 'HS256' ? 'sha256' : alg === 'HS384' ? 'sha384' : 'sha512'
  return `${head}.${createHmac(hash, secret).update(head).digest('base64url')}`
}

export interface KeyPair { publicPem: string, privateKey: KeyObject }

export function keyPair (type: 'rsa' | 'ec' | 'ed25519'): KeyPair {
  const { publicKey, privateKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519')
  return { publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey }
}

/** RS256, ES256 or EdDSA token signed with `key`. */
export function asymmetricToken (claims: Claims, key: KeyObject, alg: 'RS256' | 'ES256' | 'EdDSA'): string {
  const body = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims }
  const head = `${b64({ alg, typ: 'JWT' })}.${b64(body)}`
  const sig = alg === 'EdDSA'
    ? sign(null, Buffer.from(head), key)
    : sign('sha256', Buffer.from(head), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key)
  return `${head}.${sig.toString('base64url')}`
}
