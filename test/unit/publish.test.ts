/**
 * What a producer may write (src/core/publish.ts), pure: channel parsing,
 * well-formed text, entry checks and their codes, trimming options and
 * defaults, the /publish body limit, and the publish settings.
 */
import t from 'tap'
import fc from 'fast-check'
import { loadConfig } from '../../src/core/config.js'
import { isValidEventName } from '../../src/core/frame.js'
import {
  defaultAppendOptions,
  isWellFormedText,
  parseChannel,
  validateAppendOptions,
  validateEntry,
} from '../../src/core/publish.js'
import { publishBodyLimit } from '../../src/http/publish-route.js'

const limits = { maxDataBytes: 16, limitName: 'MAX_EVENT_BYTES' }

t.test('parseChannel: topic:<name> and user:<sub>, keyed under the prefix', async t => {
  t.same(parseChannel('sse:', 'topic:orders.eu'), { kind: 'topic', name: 'topic:orders.eu', key: 'sse:topic:orders.eu' })
  t.same(parseChannel('p:', 'user:42'), { kind: 'user', name: 'user:42', key: 'p:user:42' })
  t.same(parseChannel('', 'user:topic:x'), { kind: 'user', name: 'user:topic:x', key: 'user:topic:x' }, 'a subject may contain a colon')
  t.same(parseChannel('', 'topic:user:1').kind, 'topic', 'so may a topic name')
  for (const bad of ['', 'topic', 'topic:', 'user:', 'Topic:a', ' topic:a', 'topic: a', 'topic:-a', 'user:\u0000', 'group:a', 42, null, undefined, ['topic:a']]) {
    t.throws(() => parseChannel('sse:', bad), { code: 'SSEGW_ERR_PUBLISH_CHANNEL_INVALID', statusCode: 400 }, `refuses ${JSON.stringify(bad)}`)
  }
  const long = 'x'.repeat(1000)
  t.throws(() => parseChannel('', `topic:${long}`), { message: /\.\.\."/ }, 'a long name is cut in the message')
})

t.test('isWellFormedText: false exactly when a lone surrogate is present', async t => {
  t.ok(isWellFormedText(''))
  t.ok(isWellFormedText('\u{1F600}x\u{10FFFF}'))
  t.notOk(isWellFormedText('\ud83d'))
  t.notOk(isWellFormedText('\ude00\ud83d'))
  t.notOk(isWellFormedText('a\ud83db'))
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), s => isWellFormedText(s) === (Buffer.from(s, 'utf8').toString('utf8') === s)), { numRuns: 5000 })
})

t.test('validateEntry: fields are event (when given) then data; every refusal has its code', async t => {
  t.same(validateEntry('s:', { channel: 'topic:a', event: 'e', data: 'd' }, limits).fields, ['event', 'e', 'data', 'd'])
  t.same(validateEntry('s:', { channel: 'topic:a', data: 'd' }, limits).fields, ['data', 'd'])
  t.same(validateEntry('s:', { channel: 'topic:a', event: null, data: 'd' }, limits).fields, ['data', 'd'], 'null event: none')
  t.throws(() => validateEntry('', { channel: 'topic:a', data: 'x'.repeat(17) }, limits), { code: 'SSEGW_ERR_PUBLISH_TOO_LARGE', statusCode: 413, message: /17 bytes.*at most 16 \(MAX_EVENT_BYTES\)/ })
  t.throws(() => validateEntry('', { channel: 'topic:a', data: 1 }, limits), { code: 'SSEGW_ERR_PUBLISH_DATA_INVALID', statusCode: 400 })
  t.throws(() => validateEntry('', { channel: 'topic:a', event: 'gateway.x', data: '' }, limits), { code: 'SSEGW_ERR_PUBLISH_EVENT_INVALID', statusCode: 400 })
  t.throws(() => validateEntry('', { channel: 'nope', event: 'gateway.x', data: 1 }, limits), { code: 'SSEGW_ERR_PUBLISH_CHANNEL_INVALID' }, 'the channel is checked first')
  // The same event rule as the reader: whatever validateEntry accepts, the gateway relays.
  fc.assert(fc.property(fc.string({ maxLength: 140 }), e => {
    let ok = true
    try { validateEntry('', { channel: 'topic:a', event: e, data: '' }, limits) } catch { ok = false }
    return ok === isValidEventName(e)
  }), { numRuns: 3000 })
})

t.test('validateAppendOptions and defaultAppendOptions', async t => {
  t.doesNotThrow(() => validateAppendOptions({}))
  t.doesNotThrow(() => validateAppendOptions({ maxLen: 1, expireSeconds: 0 }))
  t.doesNotThrow(() => validateAppendOptions({ minId: '0' }))
  t.doesNotThrow(() => validateAppendOptions({ minId: '18446744073709551615-18446744073709551615' }))
  t.throws(() => validateAppendOptions({ minId: '18446744073709551616-0' }), { code: 'SSEGW_ERR_PUBLISH_OPTION_INVALID' })
  const topic = parseChannel('', 'topic:a')
  const user = parseChannel('', 'user:a')
  t.same(defaultAppendOptions(topic, {}), { maxLen: 10000, expireSeconds: 0 })
  t.same(defaultAppendOptions(user, {}), { maxLen: 1000, expireSeconds: 86400 })
  t.same(defaultAppendOptions(user, { minId: '5-0' }), { minId: '5-0', expireSeconds: 86400 }, 'minId replaces the default maxLen')
  t.same(defaultAppendOptions(topic, { maxLen: 3, expireSeconds: 9 }), { maxLen: 3, expireSeconds: 9 })
})

t.test('publishBodyLimit: room for MAX_EVENT_BYTES of data however JSON escapes it', async t => {
  for (const max of [1, 1024, 262144]) {
    const data = '\u0001'.repeat(max)
    const body = JSON.stringify({ channel: `topic:${'x'.repeat(128)}`, event: 'e'.repeat(128), data })
    t.ok(Buffer.byteLength(body) <= publishBodyLimit(max), `MAX_EVENT_BYTES=${max}: the worst-case body fits`)
  }
})

t.test('publish settings: defaults, claim names, cross-field rule', async t => {
  const c = loadConfig({})
  t.match(c, { publishEnabled: true, publishClaim: 'publish', publishTopicMaxEntries: 10000, publishUserMaxEntries: 1000, publishUserTtlSeconds: 86400 })
  t.equal(loadConfig({ PUBLISH_ENABLED: 'false' }).publishEnabled, false)
  t.equal(loadConfig({ JWT_PUBLISH_CLAIM: 'https://example.com/publish' }).publishClaim, 'https://example.com/publish', 'URL-style claim names')
  t.throws(() => loadConfig({ JWT_PUBLISH_CLAIM: 'a b' }), { message: /JWT_PUBLISH_CLAIM must be a claim name/ })
  t.throws(() => loadConfig({ JWT_PUBLISH_CLAIM: 'topics' }), { message: /JWT_PUBLISH_CLAIM and JWT_TOPICS_CLAIM must name different claims/ })
  t.throws(() => loadConfig({ JWT_TOPICS_CLAIM: 'scope', JWT_PUBLISH_CLAIM: 'scope' }), { message: /different claims/ })
})
