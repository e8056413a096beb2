import t from 'tap'
import type { StallReason } from '../../src/core/protocol.js'
import { LiveHealth } from '../../src/source/live-health.js'

function health (): { h: LiveHealth, lines: Array<[string, string]>, stalls: StallReason[] } {
  const lines: Array<[string, string]> = []
  const stalls: StallReason[] = []
  const logger = {
    error: (_o: unknown, msg: string) => { lines.push(['error', msg]) },
    info: (_o: unknown, msg: string) => { lines.push(['info', msg]) },
  }
  return { h: new LiveHealth({ logger: logger as never, onStall: r => { stalls.push(r) } }), lines, stalls }
}

t.test('flowing until a reader fails; again once every failing reader has read', async t => {
  const { h, lines, stalls } = health()
  const a = {}
  const b = {}
  t.ok(h.flowing)
  h.readerFailed(a, new Error('x'))
  h.readerFailed(b, new Error('y'))
  h.readerFailed(a, new Error('x again'))
  t.equal(h.reason, 'reader-error')
  h.readerSucceeded(a)
  t.equal(h.reason, 'reader-error', 'one still failing')
  h.readerSucceeded(b)
  t.ok(h.flowing)
  t.same(stalls, ['reader-error'], 'one stall, counted once')
  t.same(lines.map(l => l[0]), ['error', 'info'], 'logged once when it stops, once when it flows again')
})

t.test('a probe that did not come back makes it not flowing until one does', async t => {
  const { h, stalls } = health()
  h.probed('probe-timeout')
  h.probed('probe-timeout')
  t.equal(h.reason, 'probe-timeout')
  h.probed(undefined)
  t.ok(h.flowing)
  h.probed('probe-error', new Error('MOVED'))
  t.equal(h.reason, 'probe-error')
  t.same(stalls, ['probe-timeout', 'probe-error'])
})

t.test('a server that is not a standalone Redis is never flowing, whatever the reads say', async t => {
  const { h, lines } = health()
  h.serverMode('cluster')
  h.probed(undefined)
  t.equal(h.reason, 'not-standalone')
  t.match(lines[0]?.[1], /cluster mode/)
  t.match(lines[0]?.[1], /set REDIS_CLUSTER_NODES/, 'and says what to set instead')
  h.serverMode('standalone')
  t.ok(h.flowing)
  h.serverMode(undefined)
  t.ok(h.flowing, 'unknown (INFO withheld): the reads and the probe decide')
})

t.test('checks after a reconnect hold readiness; a forgotten reader no longer counts', async t => {
  const { h } = health()
  h.checking(true)
  t.equal(h.reason, 'server-check')
  h.checking(false)
  const r = {}
  h.readerFailed(r, new Error('gone'))
  h.forget(r)
  t.ok(h.flowing)
})
