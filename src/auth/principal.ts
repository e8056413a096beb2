/**
 * Who a verified token speaks for, in the one shape both routes use: the
 * user (`sub`), what it may read, what it may publish, and until when.
 */
import { TopicPatterns, topicsFromClaim } from '../core/channels.js'
import type { Claims } from './token-verifier.js'

/** The claim names the configuration chose (`JWT_USER_CLAIM`, `JWT_TOPICS_CLAIM`, `JWT_PUBLISH_CLAIM`). */
export interface ClaimNames {
  /** Default `sub`. */
  readonly userClaim?: string
  readonly topicsClaim: string
  readonly publishClaim: string
}

export interface Principal {
  /** The user (the `JWT_USER_CLAIM` claim, `sub` by default): its channel `user:<sub>` is part of every stream it opens. */
  readonly sub: string | undefined
  /** Topic patterns it may read (`GET /events`). */
  readonly topics: TopicPatterns
  /** Channel patterns it may publish to (`POST /publish`): empty for most tokens. */
  readonly publish: TopicPatterns
  /** `exp` in ms since epoch. */
  readonly expiresAtMs: number
  /** `jti`, when the token has a string one: what a revocation by `jti` names. */
  readonly jti?: string | undefined
  /** `iat` in ms, when the token has a numeric one: what a user's cut-off compares. */
  readonly issuedAtMs?: number | undefined
}

/** The principal of claims a {@link TokenVerifier} returned (`exp` is a number, the user claim valid or absent). */
export function principalOf (claims: Claims, names: ClaimNames): Principal {
  return {
    sub: claims[names.userClaim ?? 'sub'] as string | undefined,
    topics: new TopicPatterns(topicsFromClaim(claims[names.topicsClaim])),
    publish: new TopicPatterns(topicsFromClaim(claims[names.publishClaim])),
    expiresAtMs: (claims.exp as number) * 1000,
    jti: typeof claims.jti === 'string' && claims.jti.length > 0 ? claims.jti : undefined,
    issuedAtMs: typeof claims.iat === 'number' && Number.isFinite(claims.iat) ? claims.iat * 1000 : undefined,
  }
}
