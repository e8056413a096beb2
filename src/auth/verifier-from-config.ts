/**
 * The token verifier a configuration asks for, made in this one place:
 * static keys and JWKS URLs bound to issuers, all in one KeyVerifier.
 */
import type { JwtSettings } from '../core/config.js'
import { KeyVerifier, type KeyVerifierDeps } from './key-verifier.js'
import { StaticKeyVerifier } from './static-key-verifier.js'
import type { TokenVerifier } from './token-verifier.js'

/** `undefined` when no key is configured: only public topics can be read, and nobody can publish. */
export function verifierFromConfig (jwt: JwtSettings | undefined, deps: KeyVerifierDeps = {}): TokenVerifier | undefined {
  if (jwt === undefined) return undefined
  return jwt.jwks.length === 0 ? new StaticKeyVerifier(jwt) : new KeyVerifier(jwt, deps)
}
