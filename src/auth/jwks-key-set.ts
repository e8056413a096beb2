/**
 * One issuer's key set, fetched from its configured JWKS URL and cached.
 * Never a URL from a token: the set is made for one (issuer, URL) pair
 * from the configuration, and its keys verify that issuer's tokens only
 * (so a `kid` of one issuer can never pick another issuer's key).
 *
 *  - Cached for the answer's `Cache-Control: max-age`, within
 *    JWT_JWKS_MIN_TTL_MS and JWT_JWKS_MAX_TTL_MS; once stale it is fetched
 *    again in the background while the cached set keeps answering.
 *  - At most one fetch per JWT_JWKS_COOLDOWN_MS, whatever asks for it (an
 *    unknown `kid`, a stale set, a retry after a failure), and one at a
 *    time: requests that arrive during a fetch wait for that one.
 *  - A failed fetch keeps the last good set serving; it is counted every
 *    time, logged when an outage begins and when it ends, and shown in
 *    `/readyz` (`jwks`), without making the replica unready.
 */
import type { Logger } from 'pino'
import type { JwksBinding, JwksFetchSettings } from '../core/config.js'
import { jwkMaterial, type KeyMaterial } from '../core/jwk.js'
import { JwksFetchError, fetchJwks, type JwksFetchFailure } from './jwks-fetch.js'
import type { VerifyingKey } from './verifying-key.js'

/** What a key set reports as it runs (the app turns these into metrics). */
export interface JwksHooks {
  /** Each fetch started. */
  readonly onFetch?: (issuer: string) => void
  /** Each failed fetch, and why. */
  readonly onFetchFailure?: (issuer: string, reason: JwksFetchFailure) => void
}

export interface JwksKeySetDeps {
  readonly logger: Logger
  readonly hooks?: JwksHooks
  /** The clock, in ms (tests move it). */
  readonly now?: () => number
}

export class JwksKeySet {
  readonly issuer: string
  readonly url: string
  readonly #settings: JwksFetchSettings
  readonly #makeKey: (material: KeyMaterial) => VerifyingKey | string
  readonly #logger: Logger
  readonly #hooks: JwksHooks
  readonly #now: () => number
  readonly #closing = new AbortController()
  #keys: readonly VerifyingKey[] | undefined
  #expiresAt = 0
  #lastAttempt = Number.NEGATIVE_INFINITY
  #inflight: Promise<void> | undefined
  /** Set while fetches fail: why, and since when (ms). */
  #failing: { reason: JwksFetchFailure, since: number } | undefined

  /** `makeKey` turns a usable JWK into a key, or says why the gateway cannot use it. */
  constructor (binding: JwksBinding, settings: JwksFetchSettings, makeKey: (material: KeyMaterial) => VerifyingKey | string, deps: JwksKeySetDeps) {
    this.issuer = binding.issuer
    this.url = binding.url
    this.#settings = settings
    this.#makeKey = makeKey
    this.#logger = deps.logger
    this.#hooks = deps.hooks ?? {}
    this.#now = deps.now ?? Date.now
  }

  /**
   * The keys to verify with now: the cached set (a stale one starts a
   * fetch in the background and still answers), or, before any set was
   * fetched, the result of a fetch. `undefined` when no set has ever been
   * fetched and none can be now.
   */
  async current (): Promise<readonly VerifyingKey[] | undefined> {
    if (this.#keys === undefined) {
      await this.#refresh()
      return this.#keys
    }
    if (this.#now() >= this.#expiresAt) void this.#refresh()
    return this.#keys
  }

  /**
   * The keys after one more fetch, for a token whose `kid` the cached set
   * lacks (a key the issuer just added): the fetch happens only if the
   * cooldown allows; otherwise the cached set answers.
   */
  async refetched (): Promise<readonly VerifyingKey[] | undefined> {
    await this.#refresh()
    return this.#keys
  }

  /** Fetches the set now (at start-up), so the first token does not wait. Never throws. */
  async prefetch (): Promise<void> {
    await this.#refresh()
  }

  /** For `/readyz`: `fresh`, `stale` (being fetched again), `cached, fetch failing: <reason>`, `unavailable: <reason>` or `not fetched`. */
  status (): string {
    if (this.#failing !== undefined) return this.#keys === undefined ? `unavailable: ${this.#failing.reason}` : `cached, fetch failing: ${this.#failing.reason}`
    if (this.#keys === undefined) return 'not fetched'
    return this.#now() < this.#expiresAt ? 'fresh' : 'stale'
  }

  /** Ends a fetch in flight (the gateway is closing). */
  close (): void {
    this.#closing.abort()
  }

  #refresh (): Promise<void> {
    if (this.#inflight !== undefined) return this.#inflight
    const now = this.#now()
    if (now - this.#lastAttempt < this.#settings.cooldownMs || this.#closing.signal.aborted) return Promise.resolve()
    this.#lastAttempt = now
    this.#inflight = this.#fetch().finally(() => { this.#inflight = undefined })
    return this.#inflight
  }

  async #fetch (): Promise<void> {
    this.#hooks.onFetch?.(this.issuer)
    try {
      const fetched = await fetchJwks(this.url, { timeoutMs: this.#settings.timeoutMs, maxBytes: this.#settings.maxBytes, signal: this.#closing.signal })
      const keys: VerifyingKey[] = []
      const skipped: string[] = []
      for (const [i, jwk] of fetched.keys.entries()) {
        // Encryption keys sit beside signing keys in most providers' sets (Keycloak's RSA-OAEP): not worth a warning.
        if ((jwk as { use?: unknown } | null)?.use === 'enc') continue
        const material = jwkMaterial(jwk, false)
        const key = typeof material === 'string' ? material : this.#makeKey(material)
        if (typeof key === 'string') skipped.push(`key ${describeKid(jwk, i)} ${key}`)
        else keys.push(key)
      }
      if (keys.length === 0) throw new JwksFetchError('no-usable-keys', skipped.length > 0 ? `no key the gateway can use: ${skipped.slice(0, 3).join('; ')}` : 'the "keys" array is empty')
      const ttl = Math.min(this.#settings.maxTtlMs, Math.max(this.#settings.minTtlMs, (fetched.maxAgeS ?? 0) * 1000))
      const changed = this.#keys === undefined || kidsOf(this.#keys) !== kidsOf(keys)
      this.#keys = keys
      this.#expiresAt = this.#now() + ttl
      if (this.#failing !== undefined) {
        this.#logger.info({ issuer: this.issuer, url: this.url, keys: keys.length, downMs: this.#now() - this.#failing.since }, 'JWKS fetched again: the outage is over')
        this.#failing = undefined
      } else if (changed) {
        this.#logger.info({ issuer: this.issuer, url: this.url, kids: keys.map(k => k.kid ?? null), ttlMs: ttl }, 'JWKS key set loaded')
      }
      if (skipped.length > 0 && changed) this.#logger.warn({ issuer: this.issuer, url: this.url, skipped }, 'JWKS keys skipped: the gateway cannot verify with them')
    } catch (err) {
      if (this.#closing.signal.aborted) return
      const failure = err instanceof JwksFetchError ? err : new JwksFetchError('network', (err as Error).message)
      this.#hooks.onFetchFailure?.(this.issuer, failure.reason)
      // Logged once per outage, not per request: the counter and /readyz tell the rest.
      if (this.#failing === undefined) {
        this.#failing = { reason: failure.reason, since: this.#now() }
        this.#logger.warn({ issuer: this.issuer, url: this.url, reason: failure.reason, detail: failure.message, cachedKeys: this.#keys?.length ?? 0, retryInMs: this.#settings.cooldownMs },
          this.#keys === undefined
            ? 'JWKS fetch failed and no key set is cached: tokens of this issuer are refused (503) until it answers'
            : 'JWKS fetch failed: the last good key set keeps serving until it answers')
      } else {
        this.#failing = { reason: failure.reason, since: this.#failing.since }
        this.#logger.debug({ issuer: this.issuer, reason: failure.reason, detail: failure.message }, 'JWKS fetch failed again')
      }
    }
  }
}

function kidsOf (keys: readonly VerifyingKey[]): string {
  return JSON.stringify(keys.map(k => k.kid ?? null))
}

function describeKid (jwk: unknown, i: number): string {
  const kid = (jwk as { kid?: unknown } | null)?.kid
  return typeof kid === 'string' ? JSON.stringify(kid.slice(0, 64)) : String(i + 1)
}
