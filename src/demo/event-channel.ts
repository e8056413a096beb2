/**
 * Which channel an event of the stream came from, worked out in the browser
 * from what the page knows: the channels it asked for and the event ids.
 *
 * The gateway does not put the channel in the event (the data is the
 * producer's, untouched), but the `id:` is a cursor (src/core/cursor.ts): a
 * single-channel stream sends the bare entry id, so the channel is the only
 * one; a multi-channel stream sends `1` and one `.<hash><position>` segment
 * per channel, with the channel name's FNV-1a hash. Delivering an event moves
 * exactly its own channel's position, so the event's channel is the one whose
 * segment differs from the previous id this stream sent (or, with nothing
 * before it, the only one not at `0-0`: an entry id is never `0-0`). When
 * that leaves more than one candidate (entries the gateway skipped also move
 * a position), the page cannot know, and says nothing rather than guess.
 *
 * No imports: the browser loads this module as it is. The hash is the
 * gateway's `channelHash`, repeated here because the gateway's module is not
 * served to browsers; test/unit/demo-event-channel.test.ts checks the two
 * against each other.
 */

const HASH_WIDTH = 6
const HASH_SPACE = 36 ** HASH_WIDTH
const BARE_ID = /^\d{1,20}-\d{1,20}$/
/** A segment whose position is `0-0` (nothing read yet). */
const ZERO_POSITION = '0'

/** 6 base-36 digits of the FNV-1a hash of a channel name (as the gateway's cursor). */
export function channelHash (name: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return (h % HASH_SPACE).toString(36).padStart(HASH_WIDTH, '0')
}

/**
 * The channels of a stream in the gateway's order: the token's user channel
 * first (when it has a `sub`), then each topic once, in the order asked.
 */
export function streamChannels (sub: string | undefined, topics: readonly string[]): string[] {
  const channels = sub === undefined || sub === '' ? [] : [`user:${sub}`]
  for (const topic of new Set(topics)) channels.push(`topic:${topic}`)
  return channels
}

/** Segment positions of a multi-channel cursor by hash, or undefined for anything else. */
function positionsOf (id: string | undefined): Map<string, string> | undefined {
  if (id === undefined || !id.startsWith('1.')) return undefined
  const positions = new Map<string, string>()
  for (const part of id.slice(2).split('.')) {
    if (part.length <= HASH_WIDTH) return undefined
    positions.set(part.slice(0, HASH_WIDTH), part.slice(HASH_WIDTH))
  }
  return positions
}

/**
 * Tells the channel of each event of one stream. Give it every id the stream
 * sends, in order: events through {@link channelOf}, others (a gap notice)
 * through {@link saw}.
 */
export class EventChannels {
  private readonly channels: readonly string[]
  /** Channel name by cursor hash; undefined when two channels' hashes collide. */
  private readonly byHash: Map<string, string> | undefined
  private previous: string | undefined

  /**
   * @param channels the stream's channels, in the gateway's order ({@link streamChannels})
   * @param startId the cursor the stream resumes from, if any
   */
  constructor (channels: readonly string[], startId?: string) {
    this.channels = channels
    const byHash = new Map<string, string>()
    for (const channel of channels) byHash.set(channelHash(channel), channel)
    // The gateway rehashes a colliding channel (one in two billion): rather
    // than repeat that rule, such a stream shows no channel.
    this.byHash = byHash.size === channels.length ? byHash : undefined
    this.previous = startId
  }

  /** An id the stream sent that was not an event's (e.g. `gateway.gap`). */
  saw (id: string | undefined): void {
    if (id !== undefined && id !== '') this.previous = id
  }

  /** The channel of the event with this id, or undefined when the page cannot know it. */
  channelOf (id: string): string | undefined {
    const previous = this.previous
    this.saw(id)
    if (BARE_ID.test(id)) return this.channels.length === 1 ? this.channels[0] : undefined
    const positions = positionsOf(id)
    if (positions === undefined || this.byHash === undefined || positions.size !== this.byHash.size) return undefined
    const before = positionsOf(previous)
    let found: string | undefined
    for (const [hash, position] of positions) {
      const channel = this.byHash.get(hash)
      if (channel === undefined) return undefined
      const moved = before?.has(hash) === true ? before.get(hash) !== position : position !== ZERO_POSITION
      if (!moved) continue
      if (found !== undefined) return undefined
      found = channel
    }
    return found
  }
}
