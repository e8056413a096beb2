/**
 * The demo page tells each event's channel from the event ids alone
 * (src/demo/event-channel.ts): checked here against the gateway's own
 * cursor encoder, so the page and the gateway cannot drift apart. It must
 * name the right channel, or none; never a wrong one.
 */
import t from 'tap'
import fc from 'fast-check'
import { channelHash as gatewayHash, encodeCursor, encodeSegment } from '../../src/core/cursor.js'
import { EventChannels, channelHash, streamChannels } from '../../src/demo/event-channel.js'

type Id = `${number}-${number}`

/** The `id:` the gateway sends for these channel positions (as the session builds it). */
function cursorOf (channels: readonly string[], positions: readonly Id[]): string {
  if (channels.length === 1) return positions[0] as string
  return encodeCursor(channels.map((c, i) => encodeSegment(gatewayHash(c), positions[i] as Id)))
}

const channelName = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }).map(s => `topic:${s}`),
  fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }).map(s => `user:${s}`)
)

t.test('the hash is the gateway\'s', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 200, unit: 'binary' }), name => channelHash(name) === gatewayHash(name)), { numRuns: 2000 })
  t.equal(channelHash('topic:demo.news'), gatewayHash('topic:demo.news'))
})

t.test('channels in the gateway\'s order: the user channel first, then each topic once', async t => {
  t.same(streamChannels('alice', ['demo.b', 'demo.a', 'demo.b']), ['user:alice', 'topic:demo.b', 'topic:demo.a'])
  t.same(streamChannels(undefined, ['demo.a']), ['topic:demo.a'])
  t.same(streamChannels('alice', []), ['user:alice'])
})

t.test('a single-channel stream: the bare entry id, and the channel is the only one', async t => {
  const only = new EventChannels(['user:alice'])
  t.equal(only.channelOf('1700000000000-0'), 'user:alice')
  t.equal(only.channelOf('1700000000001-5'), 'user:alice')
  t.equal(new EventChannels(['user:alice', 'topic:demo.a']).channelOf('1700000000000-0'), undefined, 'a bare id on a stream of two: cannot tell')
})

t.test('a multi-channel stream: the channel whose position moved', async t => {
  const channels = streamChannels('alice', ['demo.news', 'demo.chat'])
  const tell = new EventChannels(channels)
  t.equal(tell.channelOf(cursorOf(channels, ['0-0', '1700000000000-0', '0-0'])), 'topic:demo.news', 'the first event: the only channel not at 0-0')
  t.equal(tell.channelOf(cursorOf(channels, ['1700000000005-0', '1700000000000-0', '0-0'])), 'user:alice', 'then the one that moved')
  t.equal(tell.channelOf(cursorOf(channels, ['1700000000005-0', '1700000000000-0', '1700000000001-3'])), 'topic:demo.chat')
  t.equal(tell.channelOf(cursorOf(channels, ['1700000000009-0', '1700000000008-0', '1700000000001-3'])), undefined,
    'two moved (entries the gateway skipped move a position too): cannot tell, so no guess')
  t.equal(tell.channelOf(cursorOf(channels, ['1700000000009-0', '1700000000010-0', '1700000000001-3'])), 'topic:demo.news', 'and it goes on from there')

  const fresh = new EventChannels(channels)
  t.equal(fresh.channelOf(cursorOf(channels, ['1600000000000-0', '1700000000000-0', '0-0'])), undefined, 'no id before and two channels with history: cannot tell')

  const resumed = new EventChannels(channels, cursorOf(channels, ['1600000000000-0', '1700000000000-0', '0-0']))
  t.equal(resumed.channelOf(cursorOf(channels, ['1600000000000-0', '1700000000000-0', '1700000000002-0'])), 'topic:demo.chat', 'resumed: told against the cursor it resumed from')

  const gapped = new EventChannels(channels, cursorOf(channels, ['5-0', '6-0', '7-0']))
  gapped.saw(cursorOf(channels, ['5-0', '100-0', '7-0']))
  t.equal(gapped.channelOf(cursorOf(channels, ['5-0', '100-0', '8-0'])), 'topic:demo.chat', 'an id that was no event (a gap notice) moves the baseline')
})

t.test('ids that do not fit the channels the page asked for: no channel', async t => {
  const channels = ['user:alice', 'topic:demo.news']
  const tell = new EventChannels(channels)
  t.equal(tell.channelOf(cursorOf(['user:bob', 'topic:demo.news'], ['1-0', '0-0'])), undefined, 'another user channel')
  t.equal(tell.channelOf(cursorOf(['user:alice', 'topic:demo.news', 'topic:demo.chat'], ['0-0', '0-0', '1-0'])), undefined, 'a channel more')
  t.equal(tell.channelOf('2.abc'), undefined, 'not a cursor')
  t.equal(tell.channelOf(''), undefined, 'no id')
})

t.test('any run of deliveries: the right channel or none, and the right one whenever one position moved', async t => {
  const scenario = fc.uniqueArray(channelName, { minLength: 1, maxLength: 5 }).chain(channels => fc.record({
    channels: fc.constant(channels),
    start: fc.array(fc.nat({ max: 3 }), { minLength: channels.length, maxLength: channels.length }),
    resumeKnown: fc.boolean(),
    // Each step: the channel of the event, and whether another channel moved silently first.
    steps: fc.array(fc.record({ channel: fc.nat({ max: channels.length - 1 }), silent: fc.option(fc.nat({ max: channels.length - 1 })) }), { minLength: 1, maxLength: 30 }),
  }))
  fc.assert(fc.property(scenario, ({ channels, start, resumeKnown, steps }) => {
    const hashes = new Set(channels.map(gatewayHash))
    if (hashes.size !== channels.length) return true // the gateway rehashes; the page shows nothing then (tested above)
    let clock = 1700000000000
    const positions: Id[] = start.map(n => (n === 0 ? '0-0' : `${clock - n * 1000}-0`) as Id)
    const tell = new EventChannels(channels, resumeKnown ? cursorOf(channels, positions) : undefined)
    let previousKnown = resumeKnown
    for (const step of steps) {
      let moved = 1
      if (step.silent !== null && step.silent !== step.channel) {
        positions[step.silent] = `${++clock}-0`
        moved++
      }
      positions[step.channel] = `${++clock}-0`
      const id = cursorOf(channels, positions)
      const told = tell.channelOf(id)
      const truth = channels[step.channel]
      if (told !== undefined && told !== truth) return false
      if (channels.length === 1 && told !== truth) return false
      const certain = previousKnown ? moved === 1 : positions.filter(p => p !== '0-0').length === 1
      if (certain && told !== truth) return false
      previousKnown = true
    }
    return true
  }), { numRuns: 500 })
  t.pass('held over 500 runs')
})
