/**
 * An engine: everything the gateway needs of where events live, made from
 * config in one place (engines.ts). Its source is the live feed and the
 * history queries (stream-source.ts); its control store is the control
 * plane's state and signals (control-store.ts); its publisher is where `POST /publish`
 * writes; its readiness is its part of the `/readyz` body. The app asks
 * nothing else of it, and never which engine it is.
 */
import type { Logger } from 'pino'
import type { StallReason } from '../core/protocol.js'
import type { ControlStore } from './control-store.js'
import type { LiveReaderKind } from './live-readers.js'
import type { Publisher } from './publisher.js'
import type { StreamSource } from './stream-source.js'

export interface Engine {
  /** The live feed and history queries. */
  readonly source: StreamSource
  /**
   * Revocations, disconnects, per-user counts and presence (control-store.ts):
   * in Redis for the Redis engines, so every replica enforces them; in
   * process for the memory engine.
   */
  readonly control: ControlStore
  /**
   * Where `POST /publish` writes, made when publishing is on; undefined
   * where the engine has nowhere to write.
   */
  createPublisher (): Publisher | undefined
  /**
   * The engine's part of the `/readyz` body, as it is now: `{ engine:
   * 'memory' }`, or `{ redis: <state>, live: <why not flowing, or
   * 'flowing'>, reader: <mode> }`.
   */
  readiness (): Readonly<Record<string, string>>
}

/** What an engine reports as it runs (the app turns these into metrics). */
export interface EngineHooks {
  /** After each live read, its round trip in seconds. */
  readonly onRead?: (seconds: number) => void
  /** Each failed live read. */
  readonly onReaderError?: () => void
  /** Each time the command connection starts reconnecting. */
  readonly onReconnect?: () => void
  /** Live reads stopped flowing, and why. */
  readonly onStall?: (reason: StallReason) => void
  /** The live reader changed: `to` is the new one, `because` why. */
  readonly onModeChange?: (to: LiveReaderKind, because: 'start' | 'server-setting' | 'probe-timeout') => void
  /** The engine lost the data this replica read (a new epoch). */
  readonly onDataLost?: () => void
  /** A Redis Cluster, after each proof of flow: each master, whether live reads from it flow, and what feeds it (`track`, `notify`). */
  readonly onMasters?: (masters: ReadonlyArray<readonly [string, boolean, string]>) => void
}

export interface EngineDeps {
  readonly logger: Logger
  readonly hooks?: EngineHooks
}
