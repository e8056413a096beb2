/**
 * The control store: the engine's part of the control plane (README
 * "Control"). Revocations, disconnects, per-user stream counts and presence
 * live here, so that any replica can enforce them and none has to remember
 * them. The Redis store (redis-control.ts) keeps them in Redis with expiry
 * and tells every replica through the control stream; the in-memory one
 * (memory-control.ts) is one replica's, as the memory engine is.
 */
import type { ChannelPresence, ControlCommand, PresenceQuery, UserPresence } from '../core/control.js'

/** A stream asking to open, as the control store sees it. */
export interface AdmissionRequest {
  readonly session: string
  /** Token `sub`; undefined for an anonymous stream (counted nowhere, refused by nothing here). */
  readonly user: string | undefined
  readonly jti: string | undefined
  /** Token `iat` in ms, when it had one. */
  readonly issuedAtMs: number | undefined
  /** Topic names the stream reads (its user channel aside), for presence. */
  readonly topics: readonly string[]
  /** MAX_CONNECTIONS_PER_USER, cluster-wide where the store counts across replicas. */
  readonly maxPerUser: number
}

/**
 * Why a stream may not open: its token was revoked (by `jti`, or issued
 * before its user's cut-off), or its user has `maxPerUser` streams already.
 */
export type AdmissionRefusal = 'revoked' | 'user-limit'

/**
 * A command read from the control stream (or applied in process), for the
 * replica to enforce; `atMs` is when it was given (the entry's time): a
 * disconnect ends only streams opened before it.
 */
export type ControlListener = (command: ControlCommand, atMs: number) => void

export interface ControlStore {
  /**
   * Whether this store counts a user's streams across replicas. When false,
   * the replica's session registry counts them (per replica) and
   * {@link admit} does not.
   */
  readonly countsAcrossReplicas: boolean
  /**
   * Admits a stream: refuses a revoked token, and (when it counts) takes a
   * lease on one of the user's `maxPerUser` slots, atomically against
   * concurrent connects on other replicas. At most one round trip. Rejects
   * when the store cannot be reached.
   */
  admit (request: AdmissionRequest): Promise<AdmissionRefusal | undefined>
  /** The stream ended: its leases go. Nothing happens for a session never admitted. */
  release (session: string): void
  /**
   * Records `command` (state that outlives restarts, with expiry) and
   * tells every replica, this one included, through the listener.
   */
  apply (command: ControlCommand): Promise<void>
  /** Sets the one listener commands reach (from any replica). */
  setListener (listener: ControlListener): void
  /** Who reads a channel, or what a user reads, on every replica (bounded by the query's limit). */
  presence (query: PresenceQuery): Promise<ChannelPresence | UserPresence>
  /** Starts watching for commands and renewing leases. */
  start (): Promise<void>
  /** Stops timers and releases connections. */
  close (): Promise<void>
}
