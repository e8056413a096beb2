/**
 * The demo's connect form (src/demo/connect-form.ts) is checked before the
 * page drops the stream it has: it must refuse what the gateway would refuse,
 * with a message naming the field, and accept what the gateway accepts.
 */
import t from 'tap'
import fc from 'fast-check'
import { isValidTopicName } from '../../src/core/channels.js'
import { mintToken } from '../../src/core/token.js'
import { checkConnectForm, parseTopics, readClaims } from '../../src/demo/connect-form.js'

const NOW = 1_800_000_000_000
const demo = { tokenEndpoint: true, maxTopics: 16, nowMs: NOW }
const pasted = { tokenEndpoint: false, maxTopics: 16, nowMs: NOW }
const token = (claims: Record<string, unknown>, ttl = 300): string => mintToken('s'.repeat(32), claims, ttl, NOW)

t.test('topics: separated by commas or white space, each once', async t => {
  t.same(parseTopics(' demo.a,demo.b  demo.c,\n demo.a ,'), ['demo.a', 'demo.b', 'demo.c'])
  t.same(parseTopics('  '), [])
})

t.test('with demo tokens: a name the token endpoint takes, demo.* topics', async t => {
  t.match(checkConnectForm({ sub: ' alice ', topics: 'demo.news, demo.chat', token: '' }, demo), { ok: true, sub: 'alice', topics: ['demo.news', 'demo.chat'] })
  t.match(checkConnectForm({ sub: 'alice', topics: '', token: '' }, demo), { ok: true, topics: [] }, 'no topics: the user channel alone')
  for (const sub of ['', 'a b', '-x', 'x'.repeat(65), 'é']) {
    t.match(checkConnectForm({ sub, topics: 'demo.news', token: '' }, demo), { ok: false, field: 'sub', message: /^Name: 1 to 64/ }, JSON.stringify(sub))
  }
  t.match(checkConnectForm({ sub: 'alice', topics: 'demo.news, orders', token: '' }, demo), { ok: false, field: 'topics', message: /demo\.\* topics only: orders$/ })
  t.match(checkConnectForm({ sub: 'alice', topics: 'demo.', token: '' }, demo), { ok: false, field: 'topics' }, 'demo. alone is no demo topic')
  t.match(checkConnectForm({ sub: 'alice', topics: 'demo.news, -bad', token: '' }, demo), { ok: false, field: 'topics', message: /^Not a topic name: -bad/ })
  const many = Array.from({ length: 17 }, (_, i) => `demo.t${i}`).join(',')
  t.match(checkConnectForm({ sub: 'alice', topics: many, token: '' }, demo), { ok: false, field: 'topics', message: /^17 topics: this gateway allows at most 16/ }, 'MAX_TOPICS_PER_CONNECTION')
})

t.test('topic names: exactly the gateway\'s', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 140 }).filter(s => !/[\s,]/.test(s) && s !== ''), name => {
    const check = checkConnectForm({ sub: '', topics: name, token: token({ sub: 'alice' }) }, pasted)
    return check.ok === isValidTopicName(name)
  }), { numRuns: 2000 })
  t.ok(checkConnectForm({ sub: '', topics: 'orders.eu/x:y@z_1-2', token: token({}) }, pasted).ok)
})

t.test('with a pasted token: a JWT not yet expired; its sub is the user channel', async t => {
  const good = token({ sub: 'alice', topics: ['*'] })
  t.match(checkConnectForm({ sub: '', topics: 'orders', token: ` ${good}\n` }, pasted), { ok: true, sub: 'alice', topics: ['orders'], claims: { sub: 'alice', expiresAt: NOW - NOW % 1000 + 300_000 } },
    'any valid topic (the token says which it may read)')
  t.match(checkConnectForm({ sub: '', topics: 'orders', token: '' }, pasted), { ok: false, field: 'token', message: 'Paste a token first.' })
  t.match(checkConnectForm({ sub: '', topics: 'orders', token: 'not a token' }, pasted), { ok: false, field: 'token', message: /^This is not a JWT/ })
  t.match(checkConnectForm({ sub: '', topics: 'orders', token: 'a.bm90IGpzb24.c' }, pasted), { ok: false, field: 'token' }, 'a payload that is not JSON')
  t.match(checkConnectForm({ sub: '', topics: 'orders', token: token({ sub: 'alice' }, -5) }, { ...pasted }), { ok: false, field: 'token', message: /expired/ })
  t.match(checkConnectForm({ sub: '', topics: '', token: token({ topics: ['*'] }) }, pasted), { ok: false, field: 'topics', message: /no sub/ }, 'no sub and no topic: nothing to read')
  t.same(readClaims(token({ sub: 'zoë ✓' })), { sub: 'zoë ✓', expiresAt: NOW - NOW % 1000 + 300_000 }, 'a sub in UTF-8')
})
