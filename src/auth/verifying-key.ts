/**
 * One key, ready to check tokens with: a fast-jwt verifier made for that
 * key alone and pinned to the algorithms the key may verify. Made once per
 * key (at start-up for configured keys, once per fetched key set for a
 * JWKS), so a token costs one decode and one signature check per key tried.
 */
import { createVerifier, type Algorithm } from 'fast-jwt'
import type { KeyMaterial } from '../core/jwk.js'

/** The claim checks every key applies (fast-jwt checks `aud`/`iss` only when present, so configured ones are required too). */
export interface ClaimChecks {
  readonly audience: readonly string[]
  /** Issuers this key may verify tokens of (exact strings); empty: any or none. */
  readonly issuers: readonly string[]
  readonly clockToleranceMs: number
}

export interface VerifyingKey {
  readonly kid: string | undefined
  readonly algorithms: readonly string[]
  /** The token's payload, or throws fast-jwt's error (`FAST_JWT_*` code). */
  readonly verify: (token: string) => unknown
}

export function verifyingKey (material: KeyMaterial, checks: ClaimChecks): VerifyingKey {
  // fast-jwt reads no algorithms as "any the key fits": never what a key here means.
  if (material.algorithms.length === 0) throw new Error('a verifying key needs at least one algorithm')
  const audience = checks.audience.length > 0
  const issuer = checks.issuers.length > 0
  const verify = createVerifier({
    key: material.key,
    // The key's own algorithms, never the token's word: an HMAC `alg` cannot reach an RSA key.
    algorithms: [...material.algorithms] as Algorithm[],
    requiredClaims: ['exp', ...(audience ? ['aud'] : []), ...(issuer ? ['iss'] : [])],
    ...(audience ? { allowedAud: [...checks.audience] } : {}),
    ...(issuer ? { allowedIss: [...checks.issuers] } : {}),
    clockTolerance: checks.clockToleranceMs,
    // No verify cache: tokens mostly come once per connect, and the cache
    // hashes every token to look it up (a third of the verify time in the
    // connect-rate profile) and keeps about 240 bytes per entry.
    cache: false,
  }) as (token: string) => unknown
  return { kid: material.kid, algorithms: material.algorithms, verify }
}
