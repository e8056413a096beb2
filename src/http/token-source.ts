/**
 * Where a request carries its token, read in one place for every route:
 * `Authorization: Bearer`, the `token` query parameter (browser EventSource
 * cannot set headers), the cookie. A route names the places it accepts.
 */
import type { FastifyRequest } from 'fastify'

export type TokenSource = 'header' | 'query' | 'cookie'

/** What `GET /events` accepts, in the order looked at. */
export const ANY_TOKEN_SOURCE: readonly TokenSource[] = Object.freeze(['header', 'query', 'cookie'])
/** A write credential belongs neither in a URL (logs) nor in an ambient cookie. */
export const HEADER_ONLY: readonly TokenSource[] = Object.freeze(['header'])

export interface FoundToken {
  /** `''` when a credential was sent but is malformed: an error, not "no token". */
  readonly token: string
  readonly via: TokenSource
}

/**
 * The token, from the first of `sources` (in the order header, query,
 * cookie) that holds one, or `undefined` when none does.
 */
export function findToken (request: FastifyRequest, sources: readonly TokenSource[], cookieName: string): FoundToken | undefined {
  if (sources.includes('header')) {
    const header = request.headers.authorization
    if (typeof header === 'string' && header.length > 0) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
      // A malformed Authorization header is an error, not "no token".
      return { token: m === null ? '' : m[1] as string, via: 'header' }
    }
  }
  if (sources.includes('query')) {
    const query = request.query as Record<string, unknown> | undefined
    const q = query?.token
    if (typeof q === 'string' && q.length > 0) return { token: q, via: 'query' }
    if (Array.isArray(q)) return { token: '', via: 'query' }
  }
  if (sources.includes('cookie')) {
    const cookie = (request as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies?.[cookieName]
    if (typeof cookie === 'string' && cookie.length > 0) return { token: cookie, via: 'cookie' }
  }
  return undefined
}
