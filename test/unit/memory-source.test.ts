/**
 * What only the in-memory engine can show (the shared semantics are in
 * test/contract): ids under a clock that goes back, the default per-stream
 * cap, reports that never re-enter the producer, batching, expiry on a fake
 * clock, and input checks.
 */
import t from 'tap'
import { compareIds } from '../../src/core/stream-id.js'
import { DEFAULT_MAX_LEN, MemorySource } from '../../src/source/memory-source.js'
import type { RawEntry } from '../../src/source/stream-source.js'

const turn = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

function fakeClock (start: number): { now: () => number, set: (ms: number) => void } {
  let ms = start
  return { now: () => ms, set: (v: number) => { ms = v } }
}

function record (source: MemorySource): Array<{ key: string, ids: string[] }> {
  const calls: Array<{ key: string, ids: string[] }> = []
  source.setListener((key, entries) => { calls.push({ key, ids: entries.map(e => e.id) }) })
  return calls
}

t.test('ids follow XADD *: ms = max(clock, last ms), seq counts within a ms', async t => {
  const clock = fakeClock(1000)
  const m = new MemorySource({ now: clock.now })
  t.equal(m.append('k', { data: 'a' }), '1000-0')
  t.equal(m.append('k', { data: 'b' }), '1000-1')
  clock.set(900)
  t.equal(m.append('k', { data: 'c' }), '1000-2', 'the clock went back: still after the last id')
  clock.set(1001)
  t.equal(m.append('k', { data: 'd' }), '1001-0')
  t.equal(m.append('other', { data: 'e' }), '1001-0', 'each stream has its own sequence')
  clock.set(0)
  t.equal(new MemorySource({ now: clock.now }).append('k', { data: 'x' }), '0-1', 'never 0-0, as Redis')
})

t.test('a stream that expired is gone: created again, it starts from the clock (even an earlier one)', async t => {
  const clock = fakeClock(5000)
  const m = new MemorySource({ now: clock.now })
  m.append('k', { data: 'a' })
  t.equal(m.expire('k', 100), true)
  clock.set(5099)
  t.equal(m.length('k'), 1, 'alive until its time')
  clock.set(5100)
  t.equal(m.length('k'), 0, 'gone at its time')
  t.equal(m.expire('k', 100), false, 'EXPIRE on a missing stream')
  clock.set(4000)
  t.equal(m.append('k', { data: 'b' }), '4000-0', 'no last id survives expiry (Redis does the same)')
  t.equal(m.expire('k', 0), true, 'zero removes it at once')
  t.equal(await m.tail('k'), undefined)
})

t.test('append with expireMs sets the time to live; later appends without it keep it', async t => {
  const clock = fakeClock(1000)
  const m = new MemorySource({ now: clock.now })
  m.append('k', { data: 'a' }, { expireMs: 50 })
  clock.set(1040)
  m.append('k', { data: 'b' })
  clock.set(1050)
  t.equal(m.length('k'), 0, 'expired 50 ms after the first append')
  m.append('k', { data: 'c' }, { expireMs: 50 })
  clock.set(1090)
  m.append('k', { data: 'd' }, { expireMs: 50 })
  clock.set(1120)
  t.equal(m.length('k'), 2, 'each expireMs restarts the countdown')
})

t.test('the sweep frees expired streams nobody reads', async t => {
  const m = new MemorySource({ sweepIntervalMs: 10 })
  t.teardown(() => m.close())
  for (let i = 0; i < 50; i++) m.append(`k${i}`, { data: 'x' }, { expireMs: 20 })
  const streams = (m as unknown as { streams: Map<string, unknown> }).streams
  t.equal(streams.size, 50)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(streams.size, 0, 'all removed without being read')
})

t.test('a default cap bounds every stream whose producer gives no maxLen', async t => {
  t.equal(new MemorySource().defaultMaxLen, DEFAULT_MAX_LEN)
  t.equal(DEFAULT_MAX_LEN, 10000)
  const m = new MemorySource({ defaultMaxLen: 5 })
  const ids: string[] = []
  for (let i = 0; i < 8; i++) ids.push(m.append('k', { data: String(i) }))
  t.equal(m.length('k'), 5)
  t.equal(await m.head('k'), ids[3])
  for (let i = 0; i < 5; i++) m.append('k', { data: 'minid' }, { minId: '0' })
  t.equal(m.length('k'), 5, 'a MINID alone still gets the cap')
  for (let i = 0; i < 5; i++) m.append('k', { data: 'more' }, { maxLen: 7 })
  t.equal(m.length('k'), 7, "a producer's maxLen replaces the cap")
})

t.test('front trimming compacts its storage and reads stay right', async t => {
  const m = new MemorySource({ defaultMaxLen: 10 })
  const ids: string[] = []
  for (let i = 0; i < 5000; i++) ids.push(m.append('k', { data: String(i) }))
  const stream = (m as unknown as { streams: Map<string, { entries: RawEntry[] }> }).streams.get('k')
  t.ok((stream?.entries.length ?? Infinity) <= 2 * 1024 + 10, `storage stays bounded (${stream?.entries.length ?? -1} slots)`)
  t.same((await m.range('k', '0-0', 100)).map(e => e.id), ids.slice(-10))
  t.equal(m.delete('k', ids[4995] as string), true, 'XDEL in the middle after compaction')
  t.same(await m.newestIds('k', 100), ids.slice(-10).filter(id => id !== ids[4995]).reverse())
  t.equal(await m.has('k', ids[4989] as string), false)
  t.equal(await m.has('k', ids[4990] as string), true)
})

t.test('the listener is never called from inside append or watch', async t => {
  const m = new MemorySource()
  const calls = record(m)
  m.append('k', { data: 'old' })
  m.watch('k', '0-0')
  t.equal(calls.length, 0, 'not from watch, though an entry is waiting')
  m.append('k', { data: 'new' })
  t.equal(calls.length, 0, 'not from append')
  await turn()
  t.equal(calls.length, 1, 'on a later turn, in one batch')
  t.equal(calls[0]?.ids.length, 2)
})

t.test('a burst of appends becomes one batch per key; count bounds a batch', async t => {
  const m = new MemorySource({ count: 10 })
  const calls = record(m)
  m.watch('a', '0-0')
  m.watch('b', '0-0')
  for (let i = 0; i < 25; i++) m.append('a', { data: String(i) })
  m.append('b', { data: 'x' })
  await turn()
  t.same(calls.map(c => [c.key, c.ids.length]), [['a', 10], ['b', 1]], 'first turn: one page of a, all of b')
  await turn()
  await turn()
  t.same(calls.slice(2).map(c => [c.key, c.ids.length]), [['a', 10], ['a', 5]], 'the rest of a on later turns')
  const all = calls.filter(c => c.key === 'a').flatMap(c => c.ids)
  t.equal(new Set(all).size, 25, 'each once')
  t.ok(all.every((id, i) => i === 0 || compareIds(all[i - 1] as string, id) < 0), 'in order')
})

t.test('entries trimmed or deleted before they were reported are not reported (as XREAD)', async t => {
  const m = new MemorySource()
  const calls = record(m)
  m.watch('k', '0-0')
  const ids = [1, 2, 3, 4, 5].map(i => m.append('k', { data: String(i) }))
  m.trim('k', { maxLen: 2 })
  m.delete('k', ids[4] as string)
  await turn()
  t.same(calls, [{ key: 'k', ids: [ids[3]] }])
})

t.test('unwatch drops what was pending; close stops reporting', async t => {
  const m = new MemorySource()
  const calls = record(m)
  m.watch('k', '0-0')
  m.append('k', { data: 'a' })
  m.unwatch('k')
  await turn()
  t.equal(calls.length, 0, 'nothing after unwatch, even what was appended before it')
  m.watch('k', '0-0')
  await m.close()
  m.append('k', { data: 'b' })
  await turn()
  t.equal(calls.length, 0, 'nothing after close')
  t.equal(m.watchedKeys, 0)
  t.equal(m.state, 'ready')
  t.equal(await m.tail('k') !== undefined, true, 'data stays readable after close')
})

t.test('fields: a record or a flat list, copied and frozen', async t => {
  const m = new MemorySource()
  const list = ['data', 'x', 'event', 'e']
  m.append('k', list)
  list[1] = 'changed'
  m.append('k', { event: 'e2', data: 'y' })
  const [a, b] = await m.range('k', '0-0', 10)
  t.same(a?.fields, ['data', 'x', 'event', 'e'], 'a later change to the caller\'s array does not reach history')
  t.same(b?.fields, ['event', 'e2', 'data', 'y'], 'a record keeps its key order')
  t.ok(Object.isFrozen(a?.fields) && Object.isFrozen(a), 'frozen: listeners share them')
})

t.test('bad input is refused, naming what is wrong', async t => {
  const m = new MemorySource()
  t.throws(() => m.append('k', ['data']), /even number/)
  t.throws(() => m.append('k', {}), /at least one field/)
  t.throws(() => m.append('k', [1, 2] as unknown as string[]), /strings/)
  t.throws(() => m.append('k', { data: 'x' }, { maxLen: -1 }), /maxLen/)
  t.throws(() => m.append('k', { data: 'x' }, { maxLen: 1.5 }), /maxLen/)
  t.throws(() => m.append('k', { data: 'x' }, { minId: 'abc' }), /minId/)
  t.throws(() => m.append('k', { data: 'x' }, { expireMs: Number.NaN }), /expireMs/)
  t.throws(() => m.trim('k', { minId: '1-2-3' }), /minId/)
  t.throws(() => new MemorySource({ defaultMaxLen: -5 }), /maxLen/)
  t.equal(m.length('k'), 0, 'nothing was written by a refused append')
  t.equal(m.delete('k', 'nonsense'), false)
  t.equal(await m.has('k', 'nonsense'), false)
  const id = m.append('k', { data: 'x' })
  t.equal(m.trim('k', { minId: String(Number(id.split('-')[0]) + 1) }), 1, 'MINID <ms> alone means <ms>-0')
})
