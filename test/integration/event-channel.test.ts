/**
 * The channel of each event, against a real gateway on a throwaway
 * redis-server, with a real EventSource (the `eventsource` package): the
 * client helper names every event's channel on a 1-user + 5-topic stream
 * from its id alone, across a reconnect that resumes; `channel=data` carries
 * the channel on the wire for plain EventSource pages; a bad `channel`
 * value gets its own 400.
 */
import { EventSource } from 'eventsource'
import t from 'tap'
import { connect } from '../../src/client/sse-client.js'
import { eventually, type TestContext } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.js'
import { getJson } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const redis = await startRedis()
t.teardown(() => redis.stop())

const TOPICS = ['a', 'b', 'c', 'd', 'e']
const CHANNELS = ['user:alice', ...TOPICS.map(n => `topic:${n}`)]

async function setup (t: TestContext): Promise<{ gw: TestGateway, prefix: string }> {
  const prefix = uniquePrefix('chan')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  return { gw, prefix }
}

/** Entries spread over the six channels, each naming its channel in its data, some with history already there. */
async function produce (r: TestRedis, prefix: string, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) {
    const channel = CHANNELS[(i * 5 + (i >> 1)) % CHANNELS.length] as string
    await r.client.xadd(`${prefix}${channel}`, '*', 'data', `${channel}#${i}`)
  }
}

const token = hsToken({ sub: 'alice', topics: TOPICS })

t.test('the helper names every event\'s channel on a 1-user + 5-topic stream, before and after a resume', async t => {
  const { gw, prefix } = await setup(t)
  await produce(redis, prefix, 0, 12) // history on every channel: the first event has nothing to be compared with
  const got: Array<{ data: string, channel: string | undefined }> = []
  const conn = connect({
    url: `${gw.url}/events`,
    topics: TOPICS,
    getToken: () => token,
    EventSource,
    storage: null,
    onEvent: (_name, data, _id, channel) => { got.push({ data, channel }) },
  })
  t.teardown(() => { conn.close() })
  await eventually(() => conn.state === 'open', 5000)
  await produce(redis, prefix, 12, 60)
  await eventually(() => got.length === 60, 10000)
  // A page reload: a new helper resumes from the cursor the first one kept.
  conn.close()
  const again = connect({
    url: `${gw.url}/events`,
    topics: TOPICS,
    getToken: () => token,
    EventSource,
    storage: null,
    lastEventId: conn.lastEventId,
    onEvent: (_name, data, _id, channel) => { got.push({ data, channel }) },
  })
  t.teardown(() => { again.close() })
  await produce(redis, prefix, 72, 30)
  await eventually(() => got.length === 90, 10000)
  t.same(got.map(e => e.data.split('#')[1]).map(Number).sort((x, y) => x - y), Array.from({ length: 90 }, (_, i) => 12 + i), 'every entry once')
  t.same(got.map(e => e.channel), got.map(e => e.data.split('#')[0]), 'each named by the channel it was written to')
  t.same(new Set(got.map(e => e.channel)), new Set(CHANNELS), 'all six channels seen')
})

t.test('channel=data: a plain EventSource reads each event\'s channel from its first data line', async t => {
  const { gw, prefix } = await setup(t)
  const url = `${gw.url}/events?${TOPICS.map(n => `topic=${n}`).join('&')}&channel=data&token=${token}`
  const es = new EventSource(url)
  t.teardown(() => { es.close() })
  const got: string[] = []
  es.addEventListener('message', e => { got.push(e.data) })
  await new Promise<void>(resolve => { es.onopen = () => { resolve() } })
  await produce(redis, prefix, 0, 30)
  await eventually(() => got.length === 30, 10000)
  for (const data of got) {
    const [channel, rest] = data.split('\n')
    t.equal(rest?.split('#')[0], channel, `"${data.replace('\n', '\\n')}": its first line is its channel`)
  }
  const bad = await getJson(`${gw.url}/events?topic=a&channel=yes`, { authorization: `Bearer ${token}` })
  t.equal(bad.status, 400, 'another value: 400')
  t.equal(bad.body?.error, 'SSEGW_ERR_CHANNEL_OPTION_INVALID', 'with its own code')
  t.match(bad.body?.message, /channel.*data/, 'and a message that says what to send')
})
