/**
 * The token verifier for every kind of configured key: static keys (HMAC
 * secrets, a PEM bundle, a local JWKS file) and key sets fetched from JWKS
 * URLs, each bound to its issuer. What it decides before any signature is
 * checked, and why:
 *
 *  1. The token decodes, is signed, and its `alg` is allowed.
 *  2. It names no key of its own (`jku`, `x5u`, `jwk`, `x5c`): keys come
 *     from the configuration only, so such a token is refused rather than
 *     have a header that looks honoured and is not.
 *  3. Its `iss` (read unverified) picks the key source, with an exact
 *     match against the configured issuers, before anything is fetched: a
 *     token cannot make the gateway fetch from a URL of its choosing, nor
 *     pick a key of another issuer by `kid` (each issuer has its own set).
 *  4. Its `kid` picks the keys: the key of that `kid` or, failing one, the
 *     keys without a `kid`; with no `kid`, every key in order. Only keys
 *     whose algorithms (pinned by the key's type) include the token's `alg`.
 *     A `kid` a fetched set lacks fetches the set again, at most once per
 *     cooldown.
 *
 * Then each chosen key checks the signature and the claims (fast-jwt), and
 * the payload ends with checkedClaims, as for every verifier.
 */
import { createDecoder } from 'fast-jwt'
import type { Logger } from 'pino'
import type { JwtSettings } from '../core/config.js'
import { Errors } from '../core/errors.js'
import { AuthError } from './auth-error.js'
import { fastJwtRejection } from './fast-jwt-rejection.js'
import { JwksKeySet, type JwksHooks } from './jwks-key-set.js'
import { checkedClaims, type Claims, type TokenVerifier } from './token-verifier.js'
import { verifyingKey, type VerifyingKey } from './verifying-key.js'

/** Header parameters that carry or point at a key (RFC 7515 4.1.2 to 4.1.6). */
const EMBEDDED_KEY_HEADERS = ['jku', 'jwk', 'x5u', 'x5c'] as const

export interface KeyVerifierDeps {
  /** Logs key-set fetches (outages once, recoveries, rotations). */
  readonly logger?: Logger
  readonly hooks?: JwksHooks
  /** The clock of the key-set cache, in ms (tests move it). */
  readonly now?: () => number
}

/** A base64url JSON part of a token; undefined when it does not read as a JSON object or array. */
function jsonPart (part: string): Record<string, unknown> | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(part)) return undefined
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
    return typeof value === 'object' && value !== null ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

const SILENT = { info () {}, warn () {}, debug () {}, error () {} } as unknown as Logger

export class KeyVerifier implements TokenVerifier {
  readonly #decode = createDecoder({ complete: true }) as (token: string) => unknown
  readonly #algorithms: ReadonlySet<string>
  readonly #static: readonly VerifyingKey[]
  readonly #sets = new Map<string, JwksKeySet>()
  readonly #userClaim: string
  /** With JWKS URLs: the issuers of JWT_ISSUER the static keys verify (those bound to no URL). */
  readonly #staticIssuers: ReadonlySet<string>

  constructor (jwt: JwtSettings, deps: KeyVerifierDeps = {}) {
    this.#algorithms = new Set(jwt.algorithms)
    const bound = new Set(jwt.jwks.map(b => b.issuer))
    // Static keys verify the issuers no JWKS URL is bound to (all of them when none is).
    const staticIssuers = jwt.issuer.filter(i => !bound.has(i))
    this.#staticIssuers = new Set(jwt.keys.length > 0 ? staticIssuers : [])
    const checks = { audience: jwt.audience, clockToleranceMs: jwt.clockToleranceMs }
    this.#static = jwt.keys.map(k => verifyingKey(k, { ...checks, issuers: staticIssuers }))
    for (const binding of jwt.jwks) {
      this.#sets.set(binding.issuer, new JwksKeySet(binding, jwt.jwksFetch,
        // A fetched key verifies its own issuer's tokens only, with the algorithms both it and JWT_ALGORITHMS allow.
        material => {
          const algorithms = material.algorithms.filter(a => this.#algorithms.has(a))
          if (algorithms.length === 0) return `verifies ${material.algorithms.join(', ')}, none of which JWT_ALGORITHMS allows`
          return verifyingKey({ ...material, algorithms }, { ...checks, issuers: [binding.issuer] })
        },
        { logger: deps.logger ?? SILENT, hooks: deps.hooks, now: deps.now }))
    }
    this.#userClaim = jwt.userClaim
  }

  async verify (token: string): Promise<Claims> {
    // Only the header is read here (the payload too, with JWKS): each
    // key's verifier decodes the token again, and a full decode more would
    // cost a third of the verify time. What does not read falls to
    // fast-jwt's decoder, for its error.
    const parts = token.split('.')
    const header = parts.length === 3 ? jsonPart(parts[0] as string) : undefined
    if (header === undefined || Array.isArray(header)) return this.#malformed(token)
    const signature = parts[2] as string
    if (signature === '') throw fastJwtRejection({ code: 'FAST_JWT_MISSING_SIGNATURE' })
    const alg = header.alg
    if (typeof alg !== 'string' || !this.#algorithms.has(alg)) throw fastJwtRejection({ code: 'FAST_JWT_INVALID_ALGORITHM' })
    for (const name of EMBEDDED_KEY_HEADERS) {
      if (header[name] !== undefined) {
        throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, `The token was rejected: it carries its own key (\`${name}\` header); this gateway verifies tokens only with its configured keys.`)
      }
    }
    const kid = header.kid
    if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0)) throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: its `kid` header is not a non-empty string.')
    let payload: unknown
    if (this.#sets.size > 0) {
      payload = jsonPart(parts[1] as string)
      if (payload === undefined) return this.#malformed(token)
    }
    const candidates = await this.#candidates(payload, kid, alg)
    let mismatch: unknown
    for (const key of candidates) {
      let verified: unknown
      try {
        verified = key.verify(token)
      } catch (err) {
        // Another key may have signed it (several secrets, a bundle): try the next one.
        if ((err as { code?: string }).code === 'FAST_JWT_INVALID_SIGNATURE') {
          mismatch = err
          continue
        }
        throw fastJwtRejection(err)
      }
      return checkedClaims(verified, this.#userClaim)
    }
    throw fastJwtRejection(mismatch ?? { code: 'FAST_JWT_INVALID_SIGNATURE' })
  }

  /** Rejects a token whose parts do not read, with fast-jwt's own verdict. */
  #malformed (token: string): never {
    try {
      this.#decode(token)
    } catch (err) {
      throw fastJwtRejection(err)
    }
    throw fastJwtRejection({ code: 'FAST_JWT_MALFORMED' })
  }

  /** Fetches every bound issuer's key set (at start-up); failures are logged, never thrown. */
  async start (): Promise<void> {
    await Promise.all([...this.#sets.values()].map(async s => { await s.prefetch() }))
  }

  close (): void {
    for (const s of this.#sets.values()) s.close()
  }

  /** Each bound issuer's key set, for `/readyz`; undefined without JWKS URLs. */
  readiness (): Readonly<Record<string, string>> | undefined {
    if (this.#sets.size === 0) return undefined
    return Object.fromEntries([...this.#sets].map(([issuer, set]) => [issuer, set.status()]))
  }

  /** The keys that may verify this token, or the refusal that says why none may. */
  async #candidates (payload: unknown, kid: string | undefined, alg: string): Promise<readonly VerifyingKey[]> {
    if (this.#sets.size === 0) return choose(this.#static, kid, alg, false)
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw fastJwtRejection({ code: 'FAST_JWT_INVALID_PAYLOAD' })
    const iss = (payload as Record<string, unknown>).iss
    if (iss === undefined) throw fastJwtRejection({ code: 'FAST_JWT_MISSING_REQUIRED_CLAIM', message: 'The iss claim is required.' })
    const set = typeof iss === 'string' ? this.#sets.get(iss) : undefined
    if (set === undefined) {
      // Not a bound issuer: one the static keys verify, or nobody's.
      if (typeof iss === 'string' && this.#staticIssuers.has(iss)) return choose(this.#static, kid, alg, false)
      throw new AuthError('unknown-issuer', Errors.AUTH_UNKNOWN_ISSUER, 'The token was rejected: its `iss` is not an issuer this gateway accepts (JWT_ISSUER).')
    }
    let keys = await set.current()
    if (keys !== undefined && kid !== undefined && !keys.some(k => k.kid === kid || k.kid === undefined)) {
      // A kid the cached set lacks: the issuer may have just added it.
      keys = await set.refetched()
    }
    if (keys === undefined) {
      throw new AuthError('keys-unavailable', Errors.AUTH_KEYS_UNAVAILABLE, 'The keys of this token\'s issuer cannot be fetched right now: retry shortly.')
    }
    return choose(keys, kid, alg, true)
  }
}

/**
 * The keys a token may be tried with, in order: by `kid` (or the keys
 * without one), then by `alg`. Refuses when none is left, saying whether
 * the `kid` is unknown or names a key of another algorithm.
 */
function choose (keys: readonly VerifyingKey[], kid: string | undefined, alg: string, fetched: boolean): readonly VerifyingKey[] {
  const named = kid === undefined ? [] : keys.filter(k => k.kid === kid)
  const pool = named.length > 0 ? named : keys.filter(k => kid === undefined || k.kid === undefined)
  if (pool.length === 0) {
    throw new AuthError('unknown-key', Errors.AUTH_UNKNOWN_KEY, `The token was rejected: its \`kid\` names no key of ${fetched ? 'its issuer\'s key set' : 'this gateway'}; get a fresh token.`)
  }
  const fit = pool.filter(k => k.algorithms.includes(alg))
  if (fit.length === 0) {
    if (named.length > 0) throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: its `alg` is not one the key its `kid` names can verify.')
    if (fetched) throw new AuthError('invalid', Errors.AUTH_INVALID_TOKEN, 'The token was rejected: its `alg` is not one its issuer\'s keys can verify.')
    throw fastJwtRejection({ code: 'FAST_JWT_INVALID_ALGORITHM' })
  }
  return fit
}
