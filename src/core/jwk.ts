/**
 * What a key can verify, from the key itself: a PEM public key, an HMAC
 * secret or a JSON Web Key (RFC 7517) becomes key material the verifier
 * reads and the algorithms it may check with it. A key's algorithms are
 * pinned by its type (`kty`, `crv`) and, for a JWK, narrowed by its own
 * `alg`: an RSA key never verifies an HMAC token, whatever the token's
 * header says. Pure: node:crypto only, no I/O.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'

export const HMAC_ALGORITHMS: readonly string[] = ['HS256', 'HS384', 'HS512']
export const ASYMMETRIC_ALGORITHMS: readonly string[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']
/** Every `alg` the gateway can verify ("none" never is). */
export const ALL_ALGORITHMS: ReadonlySet<string> = new Set([...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS])

/** A key ready for the verifier: its material, its `kid` when it has one, and what it may verify. */
export interface KeyMaterial {
  /** An HMAC secret, or a PEM (SPKI) public key. */
  readonly key: string | Buffer
  readonly kind: 'secret' | 'public-key'
  readonly kid?: string
  /** The algorithms this key's type allows (before JWT_ALGORITHMS narrows them), in a fixed order. */
  readonly algorithms: readonly string[]
}

/**
 * What a public key can verify. ES* each name one curve (RFC 7518 3.4). No
 * RSA-PSS (`rsa-pss`) keys: the verifier (fast-jwt) cannot read them; PS*
 * tokens verify with a plain RSA key.
 */
export function publicKeyAlgorithms (key: KeyObject): string[] {
  const curve = key.asymmetricKeyDetails?.namedCurve
  switch (key.asymmetricKeyType) {
    case 'rsa': return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'ec': return curve === 'prime256v1' ? ['ES256'] : curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : []
    case 'ed25519': return ['EdDSA']
    default: return []
  }
}

/** "rsa", "ec P-256"...: a key's type as a message names it. */
export function keyTypeName (key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve
  return key.asymmetricKeyType === 'ec' ? `ec ${curve ?? ''}`.trim() : key.asymmetricKeyType ?? 'unknown'
}

/**
 * One JWK as key material, or why it cannot verify a token (a sentence that
 * names the key by its `kid` or position, never its value). Skipped rather
 * than refused by a key set: an identity provider may publish encryption
 * keys (`use: "enc"`) beside its signing keys. `allowSecret` admits `oct`
 * keys (a local file may hold HMAC secrets; a remote set never may: a key
 * fetched over the network is public, and a public key used as an HMAC
 * secret is the classic algorithm-confusion forgery).
 */
export function jwkMaterial (jwk: unknown, allowSecret: boolean): KeyMaterial | string {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return 'is not a JSON object'
  const k = jwk as Record<string, unknown>
  if (k.kid !== undefined && (typeof k.kid !== 'string' || k.kid.length === 0 || k.kid.length > 256)) return 'has a `kid` that is not a string of 1 to 256 characters'
  const kid = k.kid as string | undefined
  if (k.use !== undefined && k.use !== 'sig') return `is for \`use: ${JSON.stringify(k.use)}\`, not signatures`
  if (Array.isArray(k.key_ops) && !k.key_ops.includes('verify')) return 'has `key_ops` without "verify"'
  if (k.d !== undefined) return 'holds a private key (`d`): publish only the public part'
  let material: KeyMaterial
  if (k.kty === 'oct') {
    if (!allowSecret) return 'is an HMAC secret (`kty: oct`), which is never taken from a remote key set'
    if (typeof k.k !== 'string' || !/^[A-Za-z0-9_-]+$/.test(k.k)) return 'is `kty: oct` without a base64url `k`'
    const secret = Buffer.from(k.k, 'base64url')
    if (secret.length < 32) return 'is an HMAC secret shorter than 32 bytes (HS256 needs a 256-bit key)'
    material = { key: secret, kind: 'secret', algorithms: HMAC_ALGORITHMS, ...(kid !== undefined ? { kid } : {}) }
  } else if (k.kty === 'RSA' || k.kty === 'EC' || k.kty === 'OKP') {
    let key: KeyObject
    try {
      key = createPublicKey({ key: k as JsonWebKey, format: 'jwk' })
    } catch {
      return `is a \`kty: ${k.kty}\` key that cannot be read`
    }
    const algorithms = publicKeyAlgorithms(key)
    if (algorithms.length === 0) return `is a ${keyTypeName(key)} key; only RSA, EC (P-256/384/521) and Ed25519 keys are supported`
    material = { key: key.export({ type: 'spki', format: 'pem' }).toString(), kind: 'public-key', algorithms, ...(kid !== undefined ? { kid } : {}) }
  } else {
    return `has \`kty: ${JSON.stringify(k.kty)}\`; supported: RSA, EC, OKP (Ed25519)${allowSecret ? ', oct' : ''}`
  }
  if (k.alg !== undefined) {
    // The key's own `alg` pins it further (RFC 7517 4.4): an RS256 key does not verify PS512.
    if (typeof k.alg !== 'string' || !material.algorithms.includes(k.alg)) return `has \`alg: ${JSON.stringify(k.alg)}\`, which its type cannot verify (${material.algorithms.join(', ')})`
    material = { ...material, algorithms: [k.alg] }
  }
  return material
}
