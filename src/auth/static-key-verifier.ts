/**
 * The first {@link TokenVerifier}: one key from the configuration, an HMAC
 * secret (`JWT_SECRET`) or a PEM public key (`JWT_PUBLIC_KEY`), checked with
 * fast-jwt. Nothing to fetch, so it answers at once.
 */
import { createVerifier, type Algorithm } from 'fast-jwt'
import type { JwtSettings } from '../core/config.js'
import { fastJwtRejection } from './fast-jwt-rejection.js'
import { checkedClaims, type Claims, type TokenVerifier } from './token-verifier.js'

export class StaticKeyVerifier implements TokenVerifier {
  readonly #verify: (token: string) => unknown

  constructor (jwt: JwtSettings) {
    const audience = jwt.audience.length > 0
    const issuer = jwt.issuer.length > 0
    this.#verify = createVerifier({
      key: jwt.key,
      algorithms: [...jwt.algorithms] as Algorithm[],
      // fast-jwt checks aud/iss only when present: a configured one must be required too.
      requiredClaims: ['exp', ...(audience ? ['aud'] : []), ...(issuer ? ['iss'] : [])],
      ...(audience ? { allowedAud: [...jwt.audience] } : {}),
      ...(issuer ? { allowedIss: [...jwt.issuer] } : {}),
      clockTolerance: jwt.clockToleranceMs,
      // No verify cache: tokens mostly come once per connect, and the cache
      // hashes every token to look it up (a third of the verify time in the
      // connect-rate profile) and keeps about 240 bytes per entry.
      cache: false,
    })
  }

  async verify (token: string): Promise<Claims> {
    let payload: unknown
    try {
      payload = this.#verify(token)
    } catch (err) {
      throw fastJwtRejection(err)
    }
    return checkedClaims(payload)
  }
}
