/**
 * fast-jwt's errors as the gateway's: each code a client-facing sentence
 * that says what is wrong with the token, never the library's own text
 * (which may quote the token's claims).
 */
import { Errors } from '../core/errors.js'
import { AuthError } from './auth-error.js'

/** The {@link AuthError} for an error thrown by a fast-jwt verifier. */
export function fastJwtRejection (err: unknown): AuthError {
  const { code, message } = (err ?? {}) as { code?: string, message?: string }
  if (code === 'FAST_JWT_EXPIRED') return new AuthError('expired', Errors.AUTH_EXPIRED_TOKEN, 'The token has expired: get a fresh one and reconnect.')
  return new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, `The token was rejected: ${describe(code, message)}`)
}

function describe (code: string | undefined, message: string | undefined): string {
  switch (code) {
    case 'FAST_JWT_MALFORMED': return 'it is not a well-formed JWT.'
    case 'FAST_JWT_INVALID_SIGNATURE': return 'its signature does not match the configured key.'
    case 'FAST_JWT_INVALID_ALGORITHM': return 'its `alg` is not one this gateway allows (JWT_ALGORITHMS).'
    case 'FAST_JWT_MISSING_SIGNATURE': return 'it is unsigned.'
    case 'FAST_JWT_INACTIVE': return 'it is not valid yet (`nbf`).'
    case 'FAST_JWT_MISSING_REQUIRED_CLAIM': {
      // fast-jwt names the claim ("The aud claim is required."); only our own claim names can appear.
      const claim = /^The (exp|aud|iss) claim is required/.exec(message ?? '')?.[1] ?? 'exp'
      return `it lacks the required \`${claim}\` claim.`
    }
    case 'FAST_JWT_INVALID_CLAIM_VALUE': return 'its `aud` or `iss` is not one this gateway accepts.'
    case 'FAST_JWT_INVALID_CLAIM_TYPE': return 'a claim has the wrong type.'
    case 'FAST_JWT_INVALID_PAYLOAD': return 'its payload is not a JSON object.'
    default: return 'it could not be verified.'
  }
}
