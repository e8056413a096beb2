/**
 * The token verifier seam: a token in, its claims out, or an
 * {@link AuthError}. Async, so a verifier may fetch what it needs (a JWKS
 * key set) before it answers; the static-key verifier answers at once.
 * Every verifier ends with {@link checkedClaims}, so a route can rely on the
 * same shape whoever verified the token.
 */
import { isValidSubject } from '../core/channels.js'
import { Errors } from '../core/errors.js'
import { AuthError } from './auth-error.js'

/** A verified token's payload: a numeric `exp` and, when present, a valid user claim (`sub` unless JWT_USER_CLAIM names another). */
export type Claims = Readonly<Record<string, unknown>>

export interface TokenVerifier {
  /**
   * Resolves with the claims of a token whose signature, `alg`, `exp`, `nbf`
   * and (when configured) `aud` and `iss` hold; rejects with an
   * {@link AuthError} (`invalid` or `expired`) otherwise. `token` is never
   * empty: an empty credential is refused before a verifier is asked.
   */
  verify (token: string): Promise<Claims>
  /** Gets ready before the gateway listens (fetches key sets); never throws. */
  start?: () => Promise<void>
  /** Stops what it runs (a fetch in flight). */
  close?: () => void
  /** What `/readyz` shows of it (`jwks`: each issuer's key set); never makes the replica unready. */
  readiness?: () => Readonly<Record<string, string>> | undefined
}

/**
 * The payload of a token whose signature holds, as claims the routes may
 * trust, or an {@link AuthError}: checks the verification library does not
 * make (or makes only when the claim is present).
 */
export function checkedClaims (payload: unknown, userClaim = 'sub'): Claims {
  // Array or primitive payloads must never pass as a set of claims.
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: its payload is not a JSON object.')
  }
  const claims = payload as Record<string, unknown>
  const exp = claims.exp
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: it needs a numeric `exp` claim.')
  }
  const user = claims[userClaim]
  if (user !== undefined && (typeof user !== 'string' || !isValidSubject(user))) {
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, `The token was rejected: \`${userClaim}\` must be a string of 1 to 256 characters with no control characters.`)
  }
  return claims
}
