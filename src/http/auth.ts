/**
 * Who is connecting: the token (header, query parameter or cookie), verified
 * with @fastify/jwt, reduced to a principal. Errors carry stable codes and
 * never echo the token.
 */
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { TopicPatterns, isValidSubject, topicsFromClaim } from '../core/channels.js'
import type { JwtSettings } from '../core/config.js'
import { Errors, GatewayError } from '../core/errors.js'
import type { AuthFailure } from '../core/protocol.js'

export type TokenSource = 'header' | 'query' | 'cookie'

export interface Principal {
  readonly sub: string | undefined
  readonly topics: TopicPatterns
  /** `exp` in ms since epoch. */
  readonly expiresAtMs: number
}

export class AuthError extends GatewayError {
  constructor (readonly reason: AuthFailure, spec: { code: string, statusCode: number }, message: string) {
    super(spec, message)
  }
}

export async function registerJwt (app: FastifyInstance, jwt: JwtSettings | undefined): Promise<void> {
  if (jwt === undefined) return
  await app.register(fastifyJwt, {
    secret: jwt.kind === 'secret' ? jwt.key : { public: jwt.key },
    verify: {
      algorithms: [...jwt.algorithms] as never,
      // fast-jwt checks aud/iss only when present: a configured one must be required too.
      requiredClaims: ['exp', ...(jwt.audience.length > 0 ? ['aud'] : []), ...(jwt.issuer.length > 0 ? ['iss'] : [])],
      ...(jwt.audience.length > 0 ? { allowedAud: [...jwt.audience] } : {}),
      ...(jwt.issuer.length > 0 ? { allowedIss: [...jwt.issuer] } : {}),
      clockTolerance: jwt.clockToleranceMs,
      // No verify cache: tokens mostly come once per connect, and the cache
      // hashes every token to look it up (a third of the verify time in the
      // connect-rate profile) and keeps about 240 bytes per entry.
      cache: false,
    },
  })
}

/**
 * The token, looked for in this order: `Authorization: Bearer`, the `token`
 * query parameter (browser EventSource cannot set headers), the cookie.
 */
export function extractToken (request: FastifyRequest, cookieName: string): { token: string, via: TokenSource } | undefined {
  const header = request.headers.authorization
  if (typeof header === 'string' && header.length > 0) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
    // A malformed Authorization header is an error, not "no token".
    return { token: m === null ? '' : m[1] as string, via: 'header' }
  }
  const query = request.query as Record<string, unknown> | undefined
  const q = query?.token
  if (typeof q === 'string' && q.length > 0) return { token: q, via: 'query' }
  if (Array.isArray(q)) return { token: '', via: 'query' }
  const cookie = (request as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies?.[cookieName]
  if (typeof cookie === 'string' && cookie.length > 0) return { token: cookie, via: 'cookie' }
  return undefined
}

export function verifyToken (app: FastifyInstance, token: string, topicsClaim: string): Principal {
  const claims = verifyClaims(app, token)
  return { sub: claims.sub as string | undefined, topics: new TopicPatterns(topicsFromClaim(claims[topicsClaim])), expiresAtMs: (claims.exp as number) * 1000 }
}

/**
 * Verifies a token and returns its claims: an object with a numeric `exp`
 * and, when present, a valid `sub`. Throws {@link AuthError} otherwise.
 */
export function verifyClaims (app: FastifyInstance, token: string): Readonly<Record<string, unknown>> {
  if (!('jwt' in app)) {
    throw new AuthError('not-configured', Errors.AUTH_NOT_CONFIGURED, 'This gateway has no JWT key configured (JWT_SECRET or JWT_PUBLIC_KEY), so it cannot accept tokens; only public topics can be read without one.')
  }
  if (token === '') throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'Malformed credentials: send `Authorization: Bearer <jwt>` or one `token` query parameter.')
  let payload: unknown
  try {
    payload = app.jwt.verify(token)
  } catch (err) {
    const { code, message } = err as { code?: string, message?: string }
    if (code === 'FAST_JWT_EXPIRED') throw new AuthError('expired', Errors.AUTH_EXPIRED_TOKEN, 'The token has expired: get a fresh one and reconnect.')
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, `The token was rejected: ${describe(code, message)}`)
  }
  // Array or primitive payloads must never pass as a set of claims.
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: its payload is not a JSON object.')
  }
  const claims = payload as Record<string, unknown>
  const exp = claims.exp
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: it needs a numeric `exp` claim.')
  }
  if (claims.sub !== undefined && (typeof claims.sub !== 'string' || !isValidSubject(claims.sub))) {
    throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: `sub` must be a string of 1 to 256 characters with no control characters.')
  }
  return claims
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
