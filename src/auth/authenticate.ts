/**
 * From a credential to a principal, the same for every route: no key
 * configured, then a malformed credential, then the verifier's verdict, in
 * that order (so a gateway with no key says so whatever it was sent).
 */
import { Errors } from '../core/errors.js'
import { AuthError } from './auth-error.js'
import { principalOf, type ClaimNames, type Principal } from './principal.js'
import type { TokenVerifier } from './token-verifier.js'

export interface Authentication {
  /** `undefined` when no key is configured. */
  readonly verifier: TokenVerifier | undefined
  readonly claims: ClaimNames
}

/**
 * Verifies `token` (`''` for a credential that was sent but malformed) and
 * returns its principal, or rejects with an {@link AuthError}.
 * `withoutKey` ends the not-configured message with what that means for the
 * route ("nobody can publish through it.").
 */
export async function authenticate (auth: Authentication, token: string, withoutKey: string): Promise<Principal> {
  if (auth.verifier === undefined) {
    throw new AuthError('not-configured', Errors.AUTH_NOT_CONFIGURED, `This gateway has no JWT key configured (JWT_SECRET or JWT_PUBLIC_KEY), so ${withoutKey}`)
  }
  if (token === '') throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'Malformed credentials: send `Authorization: Bearer <jwt>` or one `token` query parameter.')
  return principalOf(await auth.verifier.verify(token), auth.claims)
}
