/**
 * One open SSE stream: its channels, a cursor per channel, and the writer
 * that owns its bytes (stream-writer.ts).
 *
 * Delivery rule (the whole of it): a batch from the hub is written only if it
 * directly follows this session's cursor for that channel. Otherwise the
 * session is behind (it resumed from an old cursor, or it paused because its
 * socket was not draining) and it catches up from the source with paged,
 * exclusive range reads until its cursor reaches the hub's live position.
 * Each event's id is compared with the cursor, so an entry is never written
 * twice, and nothing is buffered in memory beyond the transport's own
 * buffer: Redis is the buffer.
 *
 * The session never touches a socket: it writes through its
 * {@link StreamWriter}, which tells it when the client stops reading, when
 * it drains and when the connection closes.
 */
import type { Logger } from 'pino'
import type { Channel } from '../core/channels.js'
import { channelHash, encodeSegment, type DecodedCursor } from '../core/cursor.js'
import { HEARTBEAT, formatEvent, formatIdLine, formatRetry } from '../core/frame.js'
import { CONTROL_EVENTS, classifyGap, disconnectedPayload, gapPayload, revokedPayload, tokenExpiredPayload, type CloseReason, type DeliverySource, type GapNotice, type GapReason } from '../core/protocol.js'
import { ZERO_ID, compareIds, cursorForTime, idMs, type StreamId } from '../core/stream-id.js'
import { grantOf } from '../core/errors.js'
import type { DeadlineSlot } from '../core/deadlines.js'
import type { Batch, Hub, Subscriber } from '../delivery/hub.js'
import type { Metrics } from '../metrics.js'
import type { RegisteredSession } from './session-registry.js'
import type { StreamWriter, StreamWriterOwner } from './stream-writer.js'

export { CONTROL_EVENTS }

/** What every session of a replica shares: one object, not a copy per stream. */
export interface SessionContext {
  readonly hub: Hub
  readonly metrics: Metrics
  readonly logger: Pick<Logger, 'debug' | 'info' | 'warn'>
  readonly retryMs: number
  readonly pageSize: number
  readonly slowClientTimeoutMs: number
  /**
   * Called once when a session ends, whether it opened or not (the
   * registry gives its slot back). One function for every session.
   */
  readonly onEnd: (session: Session) => void
}

export interface SessionOptions {
  readonly id: string
  readonly user: string | undefined
  readonly channels: readonly Channel[]
  /** Decoded `Last-Event-ID`; `null` when one was sent but could not be decoded. */
  readonly resume: DecodedCursor | null | undefined
  /** First connect only: start from history instead of now. */
  readonly history?: HistoryRequest | undefined
  /** Token expiry (ms since epoch); the stream ends then. */
  readonly expiresAtMs: number | undefined
  /** Token `jti` and `iat` (ms), which control commands match (README "Control"). */
  readonly jti?: string | undefined
  readonly issuedAtMs?: number | undefined
  /** `channel=data`: each event's first `data:` line is its channel's name. */
  readonly channelOnWire?: boolean
}

/** The last `count` entries of each channel, or every entry since `sinceMs`. */
export type HistoryRequest =
  | { readonly kind: 'last', readonly count: number }
  | { readonly kind: 'since', readonly sinceMs: number }

interface ChannelState {
  readonly channel: Channel
  readonly hash: string
  cursor: StreamId
  /** This channel's part of a multi-channel id; empty for a one-channel session. */
  segment: string
  /** Cursor came from the client or the session fell behind: check retention before reading. */
  verify: boolean
}

/** Above this many channels a session looks channels up in a Map instead of scanning. */
const SCAN_LIMIT = 8

/**
 * Per open stream the gateway keeps this object, its channel states and its
 * writer; everything shared lives in {@link SessionContext}. Idle memory per
 * stream is one of the benchmarked figures (bench/idle-memory.ts), so fields
 * that most streams never use start out empty.
 */
export class Session implements Subscriber, StreamWriterOwner, RegisteredSession, DeadlineSlot {
  readonly id: string
  readonly user: string | undefined
  private readonly ctx: SessionContext
  private readonly channels: ChannelState[]
  private readonly byKey: Map<string, ChannelState> | undefined
  /** Until subscribe() has used them. */
  private start_: { resume: DecodedCursor | null | undefined, history: HistoryRequest | undefined } | undefined
  private readonly resumed: boolean
  private readonly channelOnWire: boolean
  /**
   * Newest time (ms) among the resume cursor's positions: the cursor was
   * made after it. Undefined when not resuming, or when every position is 0-0.
   */
  private resumedFromMs: number | undefined
  /** Token expiry (ms since epoch), as given; the registry ends the stream then. */
  readonly expiresAtMs: number | undefined
  readonly jti: string | undefined
  readonly issuedAtMs: number | undefined
  /** Why it ended, once it has. */
  endReason: CloseReason | undefined
  private readonly writer: StreamWriter
  private started = false
  private closed_ = false
  private paused = false
  private catchingUp = false
  private catchUpAgain = false
  private pendingGaps: GapNotice[] | undefined
  private slowTimer: NodeJS.Timeout | undefined
  /** When it was admitted (ms since epoch): a disconnect ends only streams opened before it. */
  readonly openedAt = Date.now()
  eventsSent = 0
  deadlineAt = 0
  deadlineIndex = -1

  constructor (ctx: SessionContext, opts: SessionOptions, writer: StreamWriter) {
    this.ctx = ctx
    this.writer = writer
    this.id = opts.id
    this.user = opts.user
    this.expiresAtMs = opts.expiresAtMs
    this.jti = opts.jti
    this.issuedAtMs = opts.issuedAtMs
    this.channelOnWire = opts.channelOnWire === true
    this.resumed = opts.resume !== undefined
    this.start_ = { resume: opts.resume, history: opts.history }
    const used = new Set<string>()
    this.channels = opts.channels.map(channel => {
      // Two channels of one connection with the same 6-digit hash are
      // astronomically rare; rehash deterministically so cursors stay usable.
      let hash = channelHash(channel.name)
      for (let n = 1; used.has(hash); n++) hash = channelHash(`${channel.name}\u0000${n}`)
      used.add(hash)
      return { channel, hash, cursor: ZERO_ID, segment: '', verify: false }
    })
    if (this.channels.length > SCAN_LIMIT) this.byKey = new Map(this.channels.map(ch => [ch.channel.key, ch]))
  }

  get channelCount (): number {
    return this.channels.length
  }

  /** Ended (or never started and given up): its slot in the registry is free. */
  get closed (): boolean {
    return this.closed_
  }

  /**
   * Ends the session when its connection ends, from the moment it is
   * counted (see {@link StreamWriter.bind}); closes it at once if the
   * connection is already gone.
   */
  bindConnection (): void {
    this.writer.bind(this)
  }

  /**
   * Subscribes every channel and sets the cursors. Must finish before the
   * response headers go out: that is the ordering promise (anything written
   * after the client sees the stream open reaches it).
   */
  async subscribe (): Promise<void> {
    if (this.closed_) return
    let positions: StreamId[]
    try {
      positions = await Promise.all(this.channels.map(ch => this.ctx.hub.subscribe(ch.channel.key, this)))
    } catch (err) {
      this.unsubscribeAll()
      throw err
    }
    // Closed meanwhile: close() unsubscribed what was there; the hub must not keep us.
    if (this.closed_) {
      this.unsubscribeAll()
      return
    }
    const resume = this.start_?.resume
    const invalid = resume === null || (resume?.kind === 'bare' && this.channels.length !== 1)
    const history = resume === undefined ? this.start_?.history : undefined
    this.start_ = undefined
    if (resume != null) {
      let newest = -1
      if (resume.kind === 'bare') newest = idMs(resume.id)
      else for (const id of resume.positions.values()) newest = Math.max(newest, idMs(id))
      if (newest > 0) this.resumedFromMs = newest
    }
    await Promise.all(this.channels.map(async (ch, i) => {
      let from: StreamId | undefined
      if (resume?.kind === 'bare' && !invalid) from = resume.id
      else if (resume?.kind === 'channels') from = resume.positions.get(ch.hash)
      if (from !== undefined) {
        ch.cursor = from
        ch.verify = true
      } else if (history !== undefined) {
        // Not a resume: history older than what is retained is simply not there.
        const start = history.kind === 'since'
          ? cursorForTime(history.sinceMs)
          : await this.ctx.hub.cursorForLast(ch.channel.key, history.count)
        // Never past the live position: a cursor must name a real entry (or
        // 0-0), or a later resume would see it as missing.
        const live = positions[i] as StreamId
        ch.cursor = compareIds(start, live) > 0 ? live : start
      } else {
        ch.cursor = positions[i] as StreamId
        if (invalid) this.addGap(ch, 'invalid-cursor')
      }
      if (this.channels.length > 1) ch.segment = encodeSegment(ch.hash, ch.cursor)
    })).catch((err: unknown) => {
      this.unsubscribeAll()
      throw err
    })
  }

  /** Starts the stream once its writer is open: a `retry:`, then catch-up and live events. */
  start (retryMs: number, reqId?: string): void {
    this.started = true
    this.writer.write(formatRetry(retryMs))
    // Debug: at a thousand connects a second, one info line per stream (at
    // its close, with everything) is enough.
    this.ctx.logger.debug({ session: this.id, reqId, user: this.user, channels: this.channels.length, resumed: this.resumed }, 'session opened')
    void this.catchUp()
  }

  onBatch (key: string, prevId: StreamId, batch: Batch): void {
    if (this.closed_ || !this.started || this.paused) return
    if (this.catchingUp) {
      // The running catch-up may have passed this channel already: go round again.
      this.catchUpAgain = true
      return
    }
    const ch = this.channelOf(key)
    if (ch === undefined) return
    if (compareIds(ch.cursor, prevId) < 0) {
      void this.catchUp()
      return
    }
    this.deliver(ch, batch, 'live')
  }

  onReset (keys: readonly string[], from?: ReadonlyMap<string, StreamId>): void {
    if (this.closed_) return
    let told = false
    for (const key of keys) {
      const ch = this.channelOf(key)
      if (ch === undefined) continue
      const to = from?.get(key)
      // A failover kept what this client read up to its cursor: nothing it had is gone.
      if (to !== undefined && compareIds(ch.cursor, to) <= 0) continue
      // Whatever was after `to` (0-0: after the cursor) is gone; what the engine holds after it now is new.
      this.setCursor(ch, to ?? ZERO_ID)
      ch.verify = false
      this.addGap(ch, 'reset')
      told = true
    }
    // One gap event for all of them (catch-up sends it first).
    if (told && this.started) void this.catchUp()
  }

  /** A comment line if nothing was written for `intervalMs` (called by the registry's timer). */
  heartbeat (now: number, intervalMs: number): void {
    if (this.closed_ || !this.started || now - this.writer.lastWriteAt < intervalMs) return
    this.writer.write(HEARTBEAT)
  }

  /** @internal (StreamWriterOwner) the connection closed. */
  onClosed (): void {
    this.close('client-closed')
  }

  /**
   * @internal (StreamWriterOwner) the client is not reading: stop taking
   * live events and let Redis hold them until the writer drains.
   */
  onBackedUp (): void {
    if (this.closed_ || this.paused) return
    this.paused = true
    this.ctx.metrics.slowClientPauses.inc()
    for (const ch of this.channels) ch.verify = true
    this.writer.awaitDrain()
    this.slowTimer = setTimeout(closeSlowSession, this.ctx.slowClientTimeoutMs, this)
    this.slowTimer.unref()
  }

  /** @internal (StreamWriterOwner) drained after a pause: catch up from the source. */
  onDrain (): void {
    if (this.closed_) return
    clearTimeout(this.slowTimer)
    this.paused = false
    void this.catchUp()
  }

  /** @internal the client stayed backed up for SLOW_CLIENT_TIMEOUT_MS. */
  closeSlow (): void {
    this.ctx.metrics.slowClientCloses.inc()
    this.ctx.logger.warn({ session: this.id, user: this.user, bufferedBytes: this.writer.bufferedBytes }, 'closing a client that stopped reading')
    this.close('slow-client')
    this.writer.destroy()
  }

  /** Ends the stream: an optional last frame, then the response ends. Idempotent. */
  close (reason: CloseReason, lastFrame?: string | Buffer): void {
    if (this.closed_) return
    this.closed_ = true
    this.endReason = reason
    clearTimeout(this.slowTimer)
    this.unsubscribeAll()
    this.writer.end(lastFrame)
    if (this.started) {
      const m = this.ctx.metrics
      const seconds = (Date.now() - this.openedAt) / 1000
      m.connectionsClosed.inc({ reason, protocol: this.writer.protocol })
      m.connectionsOpen.dec()
      m.connectionDuration.observe(seconds)
      this.ctx.logger.info({ session: this.id, user: this.user, channels: this.channels.length, resumed: this.resumed, events: this.eventsSent, durationMs: Math.round(seconds * 1000), reason }, 'session closed')
    }
    this.ctx.onEnd(this)
  }

  /** Ends the stream with a `retry:` (used when draining). */
  closeWithRetry (reason: CloseReason, retryMs: number): void {
    this.close(reason, formatRetry(retryMs))
  }

  /**
   * A control command ended it (called by the registry): `gateway.revoked`
   * (no `retry:`: the token is refused from now on) or
   * `gateway.disconnected` with a `retry:`, then the end.
   */
  endByControl (reason: 'revoked' | 'disconnected', retryMs: number): void {
    if (reason === 'revoked') this.close(reason, formatEvent(revokedPayload(), CONTROL_EVENTS.revoked))
    else this.close(reason, formatRetry(retryMs) + formatEvent(disconnectedPayload(), CONTROL_EVENTS.disconnected))
  }

  /** The token expired (called by the registry at `exp`): a last event, then the end. */
  expire (): void {
    this.close('token-expired', formatEvent(tokenExpiredPayload(), CONTROL_EVENTS.tokenExpired))
  }

  private unsubscribeAll (): void {
    for (const ch of this.channels) this.ctx.hub.unsubscribe(ch.channel.key, this)
  }

  private channelOf (key: string): ChannelState | undefined {
    if (this.byKey !== undefined) return this.byKey.get(key)
    for (const ch of this.channels) if (ch.channel.key === key) return ch
    return undefined
  }

  private addGap (ch: ChannelState, reason: GapReason): void {
    (this.pendingGaps ??= []).push({ channel: ch.channel.name, reason })
  }

  /**
   * The `id:` of an event of `ch`: the bare entry id on a one-channel
   * stream; else a cursor whose first segment is `ch`'s (a cursor's segments
   * may come in any order), so a client that knows its channels' hashes
   * tells each event's channel from its id alone (the client helper does).
   */
  private currentId (ch: ChannelState): string {
    if (this.channels.length === 1) return ch.cursor
    let text = '1' + ch.segment
    for (const c of this.channels) if (c !== ch) text += c.segment
    return text
  }

  private setCursor (ch: ChannelState, id: StreamId): void {
    ch.cursor = id
    if (this.channels.length > 1) ch.segment = encodeSegment(ch.hash, id)
  }

  private deliver (ch: ChannelState, batch: Batch, source: DeliverySource): void {
    let n = 0
    const first = batch.events[0]
    if (this.channels.length === 1 && !this.channelOnWire && first !== undefined && compareIds(first.id, ch.cursor) > 0) {
      // A batch is in id order, so all of it follows the cursor; the event id
      // is the entry id, so the hub's shared framing is exactly our bytes.
      this.writer.writeBatch(batch)
      n = batch.events.length
    } else {
      for (const ev of batch.events) {
        if (compareIds(ev.id, ch.cursor) <= 0) continue
        this.setCursor(ch, ev.id)
        this.writer.write(this.channelOnWire ? ev.bodyWithChannel(ch.channel.name) : ev.body)
        this.writer.write(formatIdLine(this.currentId(ch)))
        n++
      }
    }
    if (compareIds(batch.lastId, ch.cursor) > 0) this.setCursor(ch, batch.lastId)
    if (n > 0) {
      this.eventsSent += n
      this.ctx.metrics.delivered[source].inc(n)
    }
  }

  /**
   * Brings every channel up to the hub's live position from the source, then
   * lets live batches through again. One loop per session at a time.
   */
  private async catchUp (): Promise<void> {
    if (this.catchingUp) {
      this.catchUpAgain = true
      return
    }
    this.catchingUp = true
    // Channels whose source had nothing past the cursor even after a recheck
    // in this run: they wait for the next live batch instead of re-reading.
    const exhausted = new Set<ChannelState>()
    try {
      do {
        this.catchUpAgain = false
        for (const ch of this.channels) {
          if (ch.verify) await this.verify(ch)
          if (this.closed_ || this.paused) return
        }
        // The resume cursor has been checked against the epoch: later
        // checks (a pause, an emptied range) concern this stream's own cursors.
        this.resumedFromMs = undefined
        this.flushGaps()
        for (const ch of this.channels) {
          while (!this.closed_ && !this.paused) {
            const live = this.ctx.hub.position(ch.channel.key)
            if (live === undefined || compareIds(ch.cursor, live) >= 0) break
            const batch = await this.ctx.hub.readPage(ch.channel.key, ch.cursor, this.ctx.pageSize)
            if (this.closed_) return
            if (batch.trimmed) {
              // Trimmed past our cursor while we read: verify() reports the
              // gap and moves the cursor to the oldest retained entry.
              ch.verify = true
              this.catchUpAgain = true
              break
            }
            if (batch.events.length === 0 && compareIds(batch.lastId, ch.cursor) <= 0) {
              // The hub has read past us but the source has nothing after our
              // cursor: those entries were removed meanwhile. Check the cursor
              // once (a gap if its entry is gone) and read again; if there is
              // still nothing, stop: the next live batch brings this session
              // back here, rather than it re-reading an empty range in a loop.
              if (!exhausted.has(ch)) {
                exhausted.add(ch)
                ch.verify = true
                this.catchUpAgain = true
              }
              break
            }
            this.deliver(ch, batch, 'replay')
          }
          if (this.closed_ || this.paused) return
        }
      } while (this.catchUpAgain && !this.closed_ && !this.paused)
    } catch (err) {
      if (!this.closed_) {
        this.ctx.logger.warn({ session: this.id, err: { message: (err as Error).message }, ...grantOf(err) }, 'catch-up read failed; ending the stream so the client resumes')
        this.closeWithRetry('source-error', this.ctx.retryMs)
      }
    } finally {
      this.catchingUp = false
    }
  }

  /**
   * Checks that the entry at the cursor is still retained. If not, history
   * may be lost: {@link classifyGap} says why and where the cursor moves,
   * and a gap notice is queued.
   */
  private async verify (ch: ChannelState): Promise<void> {
    ch.verify = false
    const { exists, head, tail } = await this.ctx.hub.inspect(ch.channel.key, ch.cursor)
    if (exists) return
    // An empty-at-connect cursor is lost only if entries were removed since.
    const removed = ch.cursor === ZERO_ID && head !== undefined ? await this.ctx.hub.entriesRemoved(ch.channel.key) : undefined
    const verdict = classifyGap({ cursor: ch.cursor, head, tail, removed, epochMs: this.ctx.hub.epochMs, resumedFromMs: this.resumedFromMs })
    if (verdict === undefined) return
    if (verdict.cursor !== ch.cursor) this.setCursor(ch, verdict.cursor)
    this.addGap(ch, verdict.reason)
  }

  private flushGaps (): void {
    const gaps = this.pendingGaps
    if (gaps === undefined || gaps.length === 0) return
    this.pendingGaps = undefined
    for (const g of gaps) this.ctx.metrics.gaps.inc({ reason: g.reason })
    const data = gapPayload(gaps)
    const first = this.channels[0] as ChannelState
    // Carries the current cursor as its id, so a reconnect after it does not
    // report the same gap again.
    this.writer.write(formatEvent(data, CONTROL_EVENTS.gap, this.currentId(first)))
    this.ctx.logger.info({ session: this.id, user: this.user, gaps }, 'history gap reported')
  }
}

function closeSlowSession (session: Session): void {
  session.closeSlow()
}
