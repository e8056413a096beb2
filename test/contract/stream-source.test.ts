/**
 * The StreamSource contract (issue 6): the same tests against every engine,
 * Redis (every live-reading mode, a Redis Cluster, and behind Sentinel) and memory. They assert what the hub and
 * sessions rely on: ids, reads on missing, empty and populated streams,
 * trimming, deletion and expiry as gap detection sees them, and live reading
 * from an explicit position: everything after it, in order, exactly once.
 * Then one gateway scenario over HTTP on each engine: connect, publish,
 * resume with Last-Event-ID, and a gap after trimmed history.
 */
import t from 'tap'
import { compareIds, idBefore, isStreamId, type StreamId } from '../../src/core/stream-id.js'
import type { RawEntry } from '../../src/source/stream-source.js'
import { clusterEngine, memoryEngine, redisEngine, sentinelEngine, type EngineFactory, type EngineUnderTest } from '../helpers/engines.js'
import { getAnswer, type TestContext } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { GAP_EVENT } from '../helpers/ledger.js'
import { openStream, sleep, type RawStream } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(180000)

const ENGINES: EngineFactory[] = [memoryEngine(), redisEngine('block'), redisEngine('notify'), redisEngine('track'), clusterEngine(), sentinelEngine()]
t.teardown(async () => { await Promise.all(ENGINES.map(e => e.stop())) })

/** How long "nothing more arrives" is watched for. */
const QUIET_MS = 300

/** Records what the source reports, per key, and checks it came once. */
class Collector {
  readonly entries = new Map<string, RawEntry[]>()
  calls = 0
  /** Runs inside the listener, after the batch is recorded. */
  hook: ((key: string, entries: readonly RawEntry[]) => void) | undefined
  private waiters: Array<() => void> = []

  readonly listener = (key: string, entries: readonly RawEntry[]): void => {
    this.calls++
    let list = this.entries.get(key)
    if (list === undefined) this.entries.set(key, list = [])
    list.push(...entries)
    this.hook?.(key, entries)
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  ids (key: string): StreamId[] {
    return (this.entries.get(key) ?? []).map(e => e.id)
  }

  async until (check: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, 50)
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async count (key: string, n: number): Promise<StreamId[]> {
    await this.until(() => this.ids(key).length >= n, `${n} entries of ${key} (have ${this.ids(key).length})`)
    return this.ids(key)
  }
}

async function setup (t: TestContext, factory: EngineFactory): Promise<EngineUnderTest & { seen: Collector, key: (name: string) => string }> {
  const engine = await factory.create()
  t.teardown(() => engine.close())
  const seen = new Collector()
  engine.source.setListener(seen.listener)
  return { ...engine, seen, key: (name: string) => `${engine.prefix}${name}` }
}

async function appendMany (e: EngineUnderTest, key: string, n: number, tag = 'e'): Promise<StreamId[]> {
  // Concurrent appends: many land in the same millisecond, exercising seq.
  return await Promise.all(Array.from({ length: n }, (_, i) => e.producer.append(key, { data: `${tag}${i}` })))
}

function strictlyIncreasing (ids: readonly StreamId[]): boolean {
  for (let i = 1; i < ids.length; i++) if (compareIds(ids[i - 1] as StreamId, ids[i] as StreamId) >= 0) return false
  return true
}

for (const factory of ENGINES) {
  t.test(`engine: ${factory.name}`, async t => {
    t.test('ids are <ms>-<seq>, strictly increasing per stream, stamped with the clock', async t => {
      const e = await setup(t, factory)
      const before = Date.now()
      const ids = await appendMany(e, e.key('ids'), 300)
      t.ok(ids.every(isStreamId), 'every id is a valid stream id')
      t.ok(strictlyIncreasing(ids), 'strictly increasing in append order')
      t.ok(ids.some(id => !id.endsWith('-0')), 'several entries share a millisecond (seq counts up)')
      const ms = Number((ids[0] as string).split('-')[0])
      t.ok(ms >= before - 1000 && ms <= Date.now() + 1000, 'the ms part is the clock')
      const other = await e.producer.append(e.key('ids-other'), { data: 'x' })
      t.ok(isStreamId(other), 'another stream has ids of its own')
    })

    t.test('a stream keeps its last id when its newest entries are removed', async t => {
      const e = await setup(t, factory)
      const k = e.key('lastid')
      const ids = await appendMany(e, k, 3)
      t.equal(await e.producer.delete(k, ids[2] as string), true, 'XDEL of the newest')
      const next = await e.producer.append(k, { data: 'after-del' })
      t.ok(compareIds(next, ids[2] as string) > 0, 'the next id is above the deleted one')
      await e.producer.trim(k, { maxLen: 0 })
      t.equal(await e.source.tail(k), undefined, 'trimmed to nothing: no tail')
      const again = await e.producer.append(k, { data: 'after-trim' })
      t.ok(compareIds(again, next) > 0, 'an emptied (not expired) stream still moves forward')
    })

    t.test('reads of a missing stream', async t => {
      const e = await setup(t, factory)
      const k = e.key('missing')
      t.equal(await e.source.tail(k), undefined, 'tail')
      t.equal(await e.source.head(k), undefined, 'head')
      t.same(await e.source.newestIds(k, 10), [], 'newestIds')
      t.same(await e.source.range(k, '0-0', 10), [], 'range')
      t.equal(await e.source.has(k, '1-0'), false, 'has')
      t.equal(await e.source.has(k, '0-0'), false, 'has 0-0')
    })

    t.test('reads of an empty stream (entries trimmed away)', async t => {
      const e = await setup(t, factory)
      const k = e.key('empty')
      const ids = await appendMany(e, k, 3)
      t.equal(await e.producer.trim(k, { maxLen: 0 }), 3, 'XTRIM MAXLEN 0 removes all three')
      t.equal(await e.source.tail(k), undefined, 'tail')
      t.equal(await e.source.head(k), undefined, 'head')
      t.same(await e.source.newestIds(k, 10), [], 'newestIds')
      t.same(await e.source.range(k, '0-0', 10), [], 'range')
      t.equal(await e.source.has(k, ids[1] as string), false, 'has an old id')
    })

    t.test('reads of a populated stream: tail, head, has, newestIds, range (exclusive, paged, count)', async t => {
      const e = await setup(t, factory)
      const k = e.key('full')
      const ids: StreamId[] = []
      for (let i = 0; i < 10; i++) ids.push(await e.producer.append(k, ['data', `line ${i}\nsecond line é ✓`, 'event', `ev${i}`]))
      t.equal(await e.source.tail(k), ids[9], 'tail is the newest')
      t.equal(await e.source.head(k), ids[0], 'head is the oldest')
      for (const id of ids) t.equal(await e.source.has(k, id), true, `has ${id}`)
      t.equal(await e.source.has(k, '0-0'), false, 'has 0-0 is false')
      const [ms, seq] = (ids[9] as string).split('-') as [string, string]
      t.equal(await e.source.has(k, `${ms}-${Number(seq) + 1}`), false, 'has an id after the tail is false')
      t.same(await e.source.newestIds(k, 3), [ids[9], ids[8], ids[7]], 'newestIds: newest first')
      t.same(await e.source.newestIds(k, 100), [...ids].reverse(), 'newestIds: all when fewer')
      const all = await e.source.range(k, '0-0', 100)
      t.same(all.map(x => x.id), ids, 'range from 0-0: everything, oldest first')
      t.same(all[4]?.fields, ['data', 'line 4\nsecond line é ✓', 'event', 'ev4'], 'fields come back as written, in order')
      t.same((await e.source.range(k, ids[3] as string, 4)).map(x => x.id), ids.slice(4, 8), 'exclusive of afterId, at most count')
      t.same(await e.source.range(k, ids[9] as string, 10), [], 'nothing after the tail')
      t.same((await e.source.range(k, idBefore(ids[0] as string), 2)).map(x => x.id), ids.slice(0, 2), 'a position that names no entry reads from the next one')
      const paged: StreamId[] = []
      let cursor = '0-0'
      for (;;) {
        const page = await e.source.range(k, cursor, 3)
        if (page.length === 0) break
        t.ok(page.length <= 3, 'a page holds at most count')
        paged.push(...page.map(x => x.id))
        cursor = page[page.length - 1]?.id as string
      }
      t.same(paged, ids, 'paging with the last id as cursor reads every entry once, in order')
    })

    // Outside what the hub asks (its counts are at least 1), but part of "up to count".
    t.test('regression: range and newestIds with count 0 read nothing (Redis answers nil)', async t => {
      const e = await setup(t, factory)
      const k = e.key('zero')
      await appendMany(e, k, 3)
      t.same(await e.source.range(k, '0-0', 0), [], 'range')
      t.same(await e.source.newestIds(k, 0), [], 'newestIds')
    })

    t.test('trimming (MAXLEN, MINID, on append) moves head; trimmed ids are gone', async t => {
      const e = await setup(t, factory)
      const k = e.key('trim')
      const ids: StreamId[] = []
      for (let i = 0; i < 10; i++) ids.push(await e.producer.append(k, { data: String(i) }))
      t.equal(await e.producer.trim(k, { maxLen: 6 }), 4, 'MAXLEN 6 removes the 4 oldest')
      t.equal(await e.source.head(k), ids[4], 'head moved')
      t.equal(await e.source.tail(k), ids[9], 'tail unchanged')
      for (const id of ids.slice(0, 4)) t.equal(await e.source.has(k, id), false, `has(${id}) false once trimmed`)
      t.equal(await e.source.has(k, ids[4] as string), true, 'the oldest retained is there')
      t.same((await e.source.range(k, '0-0', 100)).map(x => x.id), ids.slice(4), 'range reads only what is retained')
      t.same((await e.source.range(k, ids[1] as string, 100)).map(x => x.id), ids.slice(4), 'a trimmed cursor reads from the oldest retained')
      t.equal(await e.producer.trim(k, { minId: ids[7] as string }), 3, 'MINID removes the ids below it')
      t.equal(await e.source.head(k), ids[7], 'head is the MINID entry')
      const last = await e.producer.append(k, { data: 'capped' }, { maxLen: 2 })
      t.same((await e.source.range(k, '0-0', 100)).map(x => x.id), [ids[9], last], 'append with MAXLEN 2 keeps the 2 newest')
    })

    t.test('entriesRemoved counts what trimming and deletion took, 0 for a missing stream', async t => {
      const e = await setup(t, factory)
      const k = e.key('removed')
      t.equal(await e.source.entriesRemoved(k), 0, 'missing stream: nothing removed')
      const ids: StreamId[] = []
      for (let i = 0; i < 8; i++) ids.push(await e.producer.append(k, { data: String(i) }))
      t.equal(await e.source.entriesRemoved(k), 0, 'nothing removed yet')
      await e.producer.trim(k, { maxLen: 5 })
      t.equal(await e.source.entriesRemoved(k), 3, 'trimming counts')
      await e.producer.delete(k, ids[6] as string)
      t.equal(await e.source.entriesRemoved(k), 4, 'deletion counts')
      await e.producer.trim(k, { maxLen: 0 })
      t.equal(await e.source.entriesRemoved(k), 8, 'a stream trimmed to nothing still knows')
    })

    t.test('XDEL: a deleted entry is gone, the others stay', async t => {
      const e = await setup(t, factory)
      const k = e.key('del')
      const ids: StreamId[] = []
      for (let i = 0; i < 5; i++) ids.push(await e.producer.append(k, { data: String(i) }))
      t.equal(await e.producer.delete(k, ids[2] as string), true, 'deleted')
      t.equal(await e.producer.delete(k, ids[2] as string), false, 'not there twice')
      t.equal(await e.source.has(k, ids[2] as string), false, 'has() is false')
      t.same((await e.source.range(k, ids[1] as string, 10)).map(x => x.id), [ids[3], ids[4]], 'range skips it')
      await e.producer.delete(k, ids[0] as string)
      t.equal(await e.source.head(k), ids[1], 'deleting the oldest moves head')
      await e.producer.delete(k, ids[4] as string)
      t.equal(await e.source.tail(k), ids[3], 'deleting the newest moves tail back')
      t.same(await e.source.newestIds(k, 10), [ids[3], ids[1]], 'newestIds skips deleted entries')
    })

    t.test('an expired stream is gone; one created again starts from the clock', async t => {
      const e = await setup(t, factory)
      const k = e.key('exp')
      const ids = await appendMany(e, k, 3)
      e.source.watch(k, ids[2] as string)
      t.equal(await e.producer.expire(k, 150), true, 'PEXPIRE on an existing stream')
      t.equal(await e.producer.expire(e.key('exp-none'), 150), false, 'PEXPIRE on a missing one')
      t.equal(await e.source.head(k), ids[0], 'still there before it expires')
      await sleep(400)
      t.equal(await e.source.head(k), undefined, 'head after expiry')
      t.equal(await e.source.tail(k), undefined, 'tail after expiry')
      t.equal(await e.source.has(k, ids[1] as string), false, 'has after expiry')
      t.same(await e.source.range(k, '0-0', 10), [], 'range after expiry')
      t.same(await e.source.newestIds(k, 10), [], 'newestIds after expiry')
      const fresh = await e.producer.append(k, { data: 'reborn' })
      t.ok(fresh.endsWith('-0'), `a new stream starts a new id sequence from the clock (${fresh})`)
      t.ok(compareIds(fresh, ids[2] as string) > 0, 'later in time, so above the old ids')
      t.same(await e.seen.count(k, 1), [fresh], 'a watch that outlived the stream reports the new one')
    })

    t.test('watch from a position: everything after it, in order, once', async t => {
      const e = await setup(t, factory)
      const k = e.key('watch')
      const old: StreamId[] = []
      for (let i = 0; i < 5; i++) old.push(await e.producer.append(k, { data: `old${i}` }))
      t.equal(e.source.watchedKeys, 0)
      e.source.watch(k, old[2] as string)
      t.equal(e.source.watchedKeys, 1, 'watchedKeys counts it')
      const live: StreamId[] = []
      for (let i = 0; i < 5; i++) live.push(await e.producer.append(k, { data: `live${i}` }))
      const want = [old[3], old[4], ...live]
      t.same(await e.seen.count(k, want.length), want, 'the entries after the position, then the new ones')
      await sleep(QUIET_MS)
      t.same(e.seen.ids(k), want, 'nothing twice, nothing else')
      t.same(e.seen.entries.get(k)?.[2]?.fields, ['data', 'live0'], 'with their fields')
    })

    t.test('watch: entries written just before and right after watch() are reported', async t => {
      const e = await setup(t, factory)
      const k = e.key('race')
      const start = await e.producer.append(k, { data: 'start' })
      // Neither awaited: they race with watch() itself.
      const writes = [e.producer.append(k, { data: 'a' }), e.producer.append(k, { data: 'b' })]
      e.source.watch(k, start)
      writes.push(e.producer.append(k, { data: 'c' }), e.producer.append(k, { data: 'd' }))
      const want = await Promise.all(writes)
      t.same(await e.seen.count(k, 4), want)
      await sleep(QUIET_MS)
      t.same(e.seen.ids(k), want, 'once each')
    })

    t.test('watch from 0-0 on a missing key reports the stream once it is created', async t => {
      const e = await setup(t, factory)
      const k = e.key('later')
      e.source.watch(k, '0-0')
      await sleep(50)
      const ids = await appendMany(e, k, 3)
      t.same(await e.seen.count(k, 3), ids)
    })

    t.test('a backlog longer than one read arrives whole, in order', async t => {
      const e = await setup(t, factory)
      const k = e.key('backlog')
      const ids: StreamId[] = []
      for (let i = 0; i < 6; i++) ids.push(...await appendMany(e, k, 50, `b${i}-`))
      ids.sort(compareIds)
      e.source.watch(k, '0-0')
      t.same(await e.seen.count(k, 300), ids, 'all 300, in stream order')
      t.ok(e.seen.calls > 1, 'in several batches')
    })

    t.test('entries written while the listener is busy (even by the listener) arrive once, in order', async t => {
      const e = await setup(t, factory)
      const k = e.key('busy')
      const from = await e.producer.append(k, { data: 'from' })
      const written: Array<Promise<StreamId>> = []
      let first = true
      e.seen.hook = (key) => {
        if (key !== k || !first) return
        first = false
        // Re-entrant producer: the listener writes to the key it is told about.
        for (let i = 0; i < 3; i++) written.push(e.producer.append(k, { data: `from-listener${i}` }))
        const until = Date.now() + 50
        while (Date.now() < until) { /* busy */ }
      }
      e.source.watch(k, from)
      written.push(e.producer.append(k, { data: 'x' }))
      await e.seen.count(k, 1)
      for (let i = 0; i < 3; i++) written.push(e.producer.append(k, { data: `after${i}` }))
      const ids = await Promise.all(written)
      ids.sort(compareIds)
      t.same(await e.seen.count(k, 7), ids)
      await sleep(QUIET_MS)
      t.same(e.seen.ids(k), ids, 'once each')
      t.ok(strictlyIncreasing(e.seen.ids(k)), 'in stream order')
    })

    t.test('unwatch stops delivery; watching again continues from the given position', async t => {
      const e = await setup(t, factory)
      const k = e.key('unwatch')
      const from = await e.producer.append(k, { data: 'from' })
      e.source.watch(k, from)
      const a = await appendMany(e, k, 3, 'a')
      await e.seen.count(k, 3)
      e.source.unwatch(k)
      t.equal(e.source.watchedKeys, 0, 'watchedKeys drops')
      const b: StreamId[] = []
      for (let i = 0; i < 3; i++) b.push(await e.producer.append(k, { data: `b${i}` }))
      await sleep(QUIET_MS)
      t.same(e.seen.ids(k), a, 'nothing written after unwatch is reported')
      e.source.watch(k, a[2] as string)
      const c = await e.producer.append(k, { data: 'c' })
      t.same(await e.seen.count(k, 7), [...a, ...b, c], 're-watch reports what was missed, then the new entry')
      await sleep(QUIET_MS)
      t.equal(e.seen.ids(k).length, 7, 'once each')
    })

    t.test('many keys at once: each gets exactly its own entries, in order', async t => {
      const e = await setup(t, factory)
      const keys = Array.from({ length: 40 }, (_, i) => e.key(`many${i}`))
      for (const k of keys) e.source.watch(k, '0-0')
      t.equal(e.source.watchedKeys, 40)
      const want = new Map<string, StreamId[]>(keys.map(k => [k, []]))
      for (let round = 0; round < 5; round++) {
        const ids = await Promise.all(keys.map(k => e.producer.append(k, { data: `${k}:${round}` })))
        ids.forEach((id, i) => { want.get(keys[i] as string)?.push(id) })
      }
      await e.seen.until(() => keys.every(k => e.seen.ids(k).length >= 5), 'every key')
      await sleep(QUIET_MS)
      for (const k of keys) t.same(e.seen.ids(k), want.get(k), k, { diagnostic: false })
      t.ok(keys.every(k => (e.seen.entries.get(k) ?? []).every((x, i) => x.fields[1] === `${k}:${i}`)), 'payloads belong to their key')
      t.equal(e.seen.entries.size, 40, 'no other key reported')
    })

    t.test('state is ready', async t => {
      const e = await setup(t, factory)
      t.equal(e.source.state, 'ready')
    })
  })
}

/** One end-to-end scenario over HTTP on each engine. */
for (const factory of ENGINES) {
  t.test(`gateway on ${factory.name}: connect, publish, resume with Last-Event-ID, gap after trimming`, async t => {
    const env = await factory.gatewayEnv()
    const gw = await startGateway(env)
    t.teardown(() => gw.close())
    const producer = await factory.gatewayProducer(gw.gateway.source)
    const prefix = env.KEY_PREFIX as string
    const news = `${prefix}topic:news`
    const mine = `${prefix}user:ann`
    const auth = { authorization: `Bearer ${hsToken({ sub: 'ann', topics: ['news'] })}` }
    const url = `${gw.url}/events?topic=news`
    const data = (s: RawStream): string[] => s.events.filter(x => !x.event.startsWith('gateway.')).map(x => x.data)

    const memoryWarnings = gw.logs.filter(l => l.includes('in-memory stream engine'))
    if (env.REDIS_URL === undefined && env.REDIS_CLUSTER_NODES === undefined && env.REDIS_SENTINELS === undefined) {
      t.equal(memoryWarnings.length, 1, 'one start-up line says the engine is in memory')
      t.equal(JSON.parse(memoryWarnings[0] as string).level, 40, 'at warn level')
      t.match(memoryWarnings[0], /single replica/i)
      t.match(memoryWarnings[0], /lost on restart/i)
    } else {
      t.equal(memoryWarnings.length, 0, 'no in-memory warning with REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS')
    }
    const ready = await getAnswer(`${gw.internalUrl}/readyz`)
    t.equal(ready.status, 200, '/readyz is 200')
    t.equal(ready.body.status, 'ready')

    const s1 = await openStream(url, auth)
    t.teardown(() => { s1.close() })
    t.equal(s1.status, 200)
    for (let i = 1; i <= 3; i++) await producer.append(news, { data: `news:${i}` })
    await s1.waitForEvents(3)
    t.same(data(s1), ['news:1', 'news:2', 'news:3'], 'live events arrive in order')
    const cursor = s1.lastId as string
    s1.close()
    await s1.waitForEnd()

    for (let i = 4; i <= 7; i++) await producer.append(news, { data: `news:${i}` })
    await producer.append(mine, { event: 'note', data: 'ann:1' })
    const s2 = await openStream(url, { ...auth, 'last-event-id': cursor })
    t.teardown(() => { s2.close() })
    await s2.waitForEvents(5)
    await producer.append(news, { data: 'news:8' })
    await s2.waitForEvents(6)
    await sleep(QUIET_MS)
    t.equal(s2.events.filter(x => x.event === GAP_EVENT).length, 0, 'no gap when history is retained')
    const got = data(s2)
    t.same(got.filter(d => d.startsWith('news:')), ['news:4', 'news:5', 'news:6', 'news:7', 'news:8'], 'exactly the missed topic events, then the live one')
    t.same(s2.events.filter(x => x.data === 'ann:1').map(x => x.event), ['note'], 'and the missed user event, with its name')
    t.equal(got.length, 6, 'nothing else, nothing twice')
    const cursor2 = s2.lastId as string
    s2.close()
    await s2.waitForEnd()

    for (let i = 9; i <= 12; i++) await producer.append(news, { data: `news:${i}` })
    await producer.trim(news, { maxLen: 0 })
    for (let i = 13; i <= 14; i++) await producer.append(news, { data: `news:${i}` })
    const s3 = await openStream(url, { ...auth, 'last-event-id': cursor2 })
    t.teardown(() => { s3.close() })
    await s3.waitForEvents(3)
    await sleep(QUIET_MS)
    t.equal(s3.events[0]?.event, GAP_EVENT, 'a trimmed history gives the gap event first')
    t.same(JSON.parse(s3.events[0]?.data ?? '{}'), { channels: [{ channel: 'topic:news', reason: 'trimmed' }] }, 'naming the channel and the reason')
    t.same(data(s3), ['news:13', 'news:14'], 'then the oldest retained entries')

    // Draining takes the replica out of readiness on both engines. Asked at
    // once: the internal listener closes when the drain window's last stream ends.
    const stopping = gw.gateway.shutdown(3000)
    t.equal((await getAnswer(`${gw.internalUrl}/readyz`)).status, 503, '/readyz is 503 while draining')
    await stopping
  })
}
