/**
 * The Redis engine's history queries alone, on a real redis-server: what
 * resume, catch-up and gap detection read of a stream that is missing,
 * populated, trimmed, or emptied by deletes.
 */
import t from 'tap'
import { RedisQueries } from '../../src/source/redis-queries.js'
import { REQUEST_REPLY, standaloneConnection } from '../../src/source/redis-connection.js'
import { appendMany } from '../helpers/reader-host.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'

t.setTimeout(60000)

const redis = await startRedis()
const cmd = standaloneConnection(redis.url).connect({ ...REQUEST_REPLY, connectionName: 'sse-gateway:commands', enableAutoPipelining: true })
t.teardown(async () => { cmd.disconnect(); await redis.stop() })
const queries = new RedisQueries(cmd, 'sse:')

t.test('a missing stream: nothing, and nothing removed', async t => {
  const key = `${uniquePrefix('q')}missing`
  t.equal(await queries.tail(key), undefined)
  t.equal(await queries.head(key), undefined)
  t.same(await queries.newestIds(key, 5), [])
  t.same(await queries.range(key, '0-0', 10), [])
  t.equal(await queries.entriesRemoved(key), 0)
  t.equal(await queries.has(key, '1-0'), false)
})

t.test('a populated stream: ends, newest ids, exclusive ranges, exact membership', async t => {
  const key = `${uniquePrefix('q')}s`
  const ids = await appendMany(redis.client, key, 10)
  t.equal(await queries.tail(key), ids[9])
  t.equal(await queries.head(key), ids[0])
  t.same(await queries.newestIds(key, 3), [ids[9], ids[8], ids[7]], 'newest first')
  t.same(await queries.newestIds(key, 0), [], 'COUNT 0 is no entries (Redis answers nil)')
  t.same(await queries.newestIds(key, 50), [...ids].reverse(), 'fewer when the stream is shorter')
  const page = await queries.range(key, ids[2] as string, 4)
  t.same(page.map(e => e.id), ids.slice(3, 7), 'strictly after the id, oldest first, at most count')
  t.same(page[0]?.fields, ['data', 'e3'], 'fields as XADD took them')
  t.same(await queries.range(key, ids[9] as string, 4), [], 'nothing after the tail')
  t.same(await queries.range(key, '0-0', 0), [], 'count 0: nothing')
  t.equal(await queries.has(key, ids[4] as string), true)
  // An id next to it that no entry has (appending "1" to the id, as this
  // once did, names a real entry when the next one shares its millisecond:
  // "T-0" + "1" is "T-01", which is T-1).
  const [ms, seq] = (ids[4] as string).split('-')
  t.equal(await queries.has(key, `${ms as string}-${Number(seq) + 1000}`), false, 'only that exact id')
  t.equal(await queries.entriesRemoved(key), 0)
})

t.test('trimming and deleting count as removed; an emptied stream has no ends', async t => {
  const key = `${uniquePrefix('q')}trim`
  const ids = await appendMany(redis.client, key, 8)
  await redis.client.xtrim(key, 'MAXLEN', 5)
  t.equal(await queries.head(key), ids[3], 'the head moved past the trimmed entries')
  t.equal(await queries.has(key, ids[0] as string), false)
  await redis.client.xdel(key, ids[5] as string)
  t.equal(await queries.entriesRemoved(key), 4, '3 trimmed + 1 deleted')
  t.same((await queries.range(key, ids[3] as string, 10)).map(e => e.id), [ids[4], ids[6], ids[7]], 'a deleted entry is skipped')
  await redis.client.xdel(key, ...ids.slice(3))
  t.equal(await queries.tail(key), undefined, 'empty: no tail')
  t.equal(await queries.head(key), undefined, 'empty: no head')
  t.equal(await queries.entriesRemoved(key), 8, 'every entry ever added was removed')
})
