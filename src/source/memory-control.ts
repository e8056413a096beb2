/**
 * The control plane of the in-memory engine: one replica's, in process, as
 * that engine is. Revocations last until they expire or the process ends;
 * commands apply at once to this replica's streams; the per-user limit is
 * the session registry's (per replica); presence is this replica's streams.
 */
import {
  issuedBefore, type ChannelPresence, type ControlCommand, type PresenceQuery, type UserPresence,
} from '../core/control.js'
import type { AdmissionRefusal, AdmissionRequest, ControlListener, ControlStore } from './control-store.js'

export interface MemoryControlOptions {
  /** CONTROL_MAX_TOKEN_LIFETIME_MS: how long a user's cut-off is kept. */
  readonly maxTokenLifetimeMs: number
  /** Clock (ms); Date.now by default. */
  readonly now?: () => number
}

export class MemoryControlStore implements ControlStore {
  readonly countsAcrossReplicas = false
  /** Revoked jti -> until (ms). */
  private readonly jtis = new Map<string, number>()
  /** User -> [cut-off, kept until] (ms). */
  private readonly cutOffs = new Map<string, [number, number]>()
  private readonly held = new Map<string, { readonly user: string | undefined, readonly topics: readonly string[] }>()
  private listener: ControlListener = () => {}
  private readonly now: () => number

  constructor (private readonly opts: MemoryControlOptions) {
    this.now = opts.now ?? Date.now
  }

  async start (): Promise<void> {}
  async close (): Promise<void> {}

  setListener (listener: ControlListener): void {
    this.listener = listener
  }

  async admit (r: AdmissionRequest): Promise<AdmissionRefusal | undefined> {
    const now = this.now()
    if (r.jti !== undefined) {
      const until = this.jtis.get(r.jti)
      if (until !== undefined && until > now) return 'revoked'
      if (until !== undefined) this.jtis.delete(r.jti)
    }
    if (r.user !== undefined) {
      const cut = this.cutOffs.get(r.user)
      if (cut !== undefined && cut[1] <= now) this.cutOffs.delete(r.user)
      else if (cut !== undefined && issuedBefore(r.issuedAtMs, cut[0])) return 'revoked'
    }
    this.held.set(r.session, { user: r.user, topics: r.topics })
    return undefined
  }

  release (session: string): void {
    this.held.delete(session)
  }

  async apply (c: ControlCommand): Promise<void> {
    const now = this.now()
    if (c.kind === 'revoke') {
      if ('jti' in c) this.jtis.set(c.jti, c.expMs)
      else {
        const old = this.cutOffs.get(c.user)
        if (old === undefined || old[0] < c.beforeMs) this.cutOffs.set(c.user, [c.beforeMs, c.beforeMs + this.opts.maxTokenLifetimeMs])
      }
      // Expired entries go as new ones come, so the maps stay as small as what is still refused.
      for (const [jti, until] of this.jtis) if (until <= now) this.jtis.delete(jti)
      for (const [user, [, until]] of this.cutOffs) if (until <= now) this.cutOffs.delete(user)
    }
    this.listener(c, now)
  }

  async presence (q: PresenceQuery): Promise<ChannelPresence | UserPresence> {
    if ('user' in q) {
      const sessions: Array<{ session: string, channels: string[] }> = []
      let n = 0
      for (const [session, h] of this.held) {
        if (h.user !== q.user) continue
        n++
        if (sessions.length < q.limit) sessions.push({ session, channels: [`user:${q.user}`, ...h.topics.map(t => `topic:${t}`)] })
      }
      return { user: q.user, streams: n, sessions, channels: [...new Set(sessions.flatMap(s => s.channels))], truncated: n > sessions.length }
    }
    const channel = q.channel
    const user = channel.startsWith('user:') ? channel.slice('user:'.length) : undefined
    const topic = user === undefined ? channel.slice('topic:'.length) : undefined
    let n = 0
    let listed = 0
    const users = new Set<string>()
    for (const h of this.held.values()) {
      if (user !== undefined ? h.user !== user : !h.topics.includes(topic as string)) continue
      n++
      if (listed < q.limit) {
        listed++
        if (h.user !== undefined) users.add(h.user)
      }
    }
    return { channel, streams: n, users: [...users], truncated: n > listed }
  }
}
