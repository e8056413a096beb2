/**
 * The token verifier a configuration asks for, made in this one place: a
 * new kind of key (a JWKS URL bound to an issuer) is one more case here and
 * one new verifier file.
 */
import type { JwtSettings } from '../core/config.js'
import { StaticKeyVerifier } from './static-key-verifier.js'
import type { TokenVerifier } from './token-verifier.js'

/** `undefined` when no key is configured: only public topics can be read, and nobody can publish. */
export function verifierFromConfig (jwt: JwtSettings | undefined): TokenVerifier | undefined {
  if (jwt === undefined) return undefined
  return new StaticKeyVerifier(jwt)
}
