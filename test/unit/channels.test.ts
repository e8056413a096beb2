/**
 * Channels: topic names, subjects, stream keys, `*` topic patterns and the
 * topics claim of a token.
 */
import { strictEqual } from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import {
  MAX_SUBJECT_LENGTH,
  TopicPatterns,
  isValidSubject,
  isValidTopicName,
  topicChannel,
  topicsFromClaim,
  userChannel,
} from '../../src/core/channels.js'

/** Any Unicode scalar value (astral included, no lone surrogate). */
const codePoint = fc.integer({ min: 0, max: 0x10ffff }).filter(c => c < 0xd800 || c > 0xdfff).map(c => String.fromCodePoint(c))

const TOPIC_CHARS = 'ABCXYZabcxyz0189._-:@/'.split('')

t.test('isValidTopicName: 1-128 of A-Z a-z 0-9 . _ - : @ /, starting with a letter or digit', async t => {
  const accepted = [
    'a', 'Z', '0', 'orders', 'orders.eu', 'orders.eu.west-1', 'a_b-c:d@e/f', 'tenant/42/orders', 'user@example.com',
    'a.', 'a..b', 'a//b', '9lives', 'x'.repeat(128),
  ]
  for (const n of accepted) t.ok(isValidTopicName(n), `accepts ${JSON.stringify(n)}`)
  const rejected = [
    '', '.a', '-a', '_a', ':a', '@a', '/a', 'x'.repeat(129),
    'a b', ' a', 'a ', 'a*', '*', 'a,b', 'a+b', 'a?b', 'a#b', 'a%20b', 'a&b', 'a=b', 'a\\b', 'a|b', 'a(b)', 'a[b]',
    'a\n', '\na', 'a\rb', 'a\0', 'a\tb', 'a\x7f', 'é', 'caf\u00e9', '\u{1F600}', 'a\u200bb', '\uFF41',
  ]
  for (const n of rejected) t.notOk(isValidTopicName(n), `rejects ${JSON.stringify(n)}`)
  fc.assert(fc.property(fc.oneof(fc.string({ maxLength: 140 }), fc.string({ unit: fc.constantFrom(...TOPIC_CHARS, '*', ' ', '\n', 'é'), maxLength: 140 })), s => {
    const want = s.length >= 1 && s.length <= 128 && /^[A-Za-z0-9]/.test(s) && [...s].every(c => TOPIC_CHARS.includes(c) || /[A-Za-z0-9]/.test(c))
    strictEqual(isValidTopicName(s), want, JSON.stringify(s))
  }), { numRuns: 3000 })
})

t.test('isValidSubject: any text of 1-256 characters without control characters', async t => {
  const accepted = ['42', 'alice', 'alice@example.com', 'auth0|5f7c', 'google-oauth2|1234', 'a b', 'ünïcödé', '\u{1F600}', '*', 'user:x', 'x'.repeat(MAX_SUBJECT_LENGTH)]
  for (const s of accepted) t.ok(isValidSubject(s), `accepts ${JSON.stringify(s)}`)
  const rejected = ['', 'x'.repeat(MAX_SUBJECT_LENGTH + 1), 'a\nb', 'a\rb', 'a\r\nb', 'a\0', 'a\tb', '\x1b[31m', 'a\x7f']
  for (const s of rejected) t.notOk(isValidSubject(s), `rejects ${JSON.stringify(s)}`)
  const subject = fc.oneof(
    fc.string({ unit: codePoint, maxLength: 40 }),
    fc.string({ unit: fc.constantFrom('a', '\u{1F600}', '\n', '\x7f', '\0', ' '), minLength: 240, maxLength: 270 })
  )
  fc.assert(fc.property(subject, s => {
    // eslint-disable-next-line no-control-regex -- the rule under test is about control characters
    strictEqual(isValidSubject(s), s.length >= 1 && s.length <= 256 && !/[\x00-\x1f\x7f]/.test(s), JSON.stringify(s))
  }), { numRuns: 2000 })
})

t.test('stream keys: prefix + user:<sub> or topic:<name>', async t => {
  t.same(userChannel('sse:', '42'), { kind: 'user', name: 'user:42', key: 'sse:user:42' })
  t.same(topicChannel('sse:', 'orders'), { kind: 'topic', name: 'topic:orders', key: 'sse:topic:orders' })
  t.same(topicChannel('app1:sse:', 'orders.eu'), { kind: 'topic', name: 'topic:orders.eu', key: 'app1:sse:topic:orders.eu' })
  t.same(userChannel('', 'alice'), { kind: 'user', name: 'user:alice', key: 'user:alice' }, 'empty prefix')
  t.same(userChannel('{sse}:', 'a'), { kind: 'user', name: 'user:a', key: '{sse}:user:a' }, 'a cluster hash tag in the prefix is kept as is')

  const prefix = fc.string({ maxLength: 10 })
  fc.assert(fc.property(prefix, fc.string({ unit: codePoint, minLength: 1, maxLength: 50 }), fc.string({ minLength: 1, maxLength: 50 }), (p, sub, topic) => {
    const u = userChannel(p, sub)
    const tc = topicChannel(p, topic)
    strictEqual(u.key, p + u.name)
    strictEqual(tc.key, p + tc.name)
    // A subject can never name a topic's stream, whatever it contains.
    strictEqual(u.key === tc.key, false)
  }), { numRuns: 1000 })
  fc.assert(fc.property(prefix, fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }), (p, a, b) => {
    strictEqual(userChannel(p, a).key === userChannel(p, b).key, a === b, 'distinct subjects, distinct keys')
    strictEqual(topicChannel(p, a).key === topicChannel(p, b).key, a === b, 'distinct topics, distinct keys')
  }), { numRuns: 1000 })
})

/** Reference glob matcher (dynamic programming): `*` is any run of characters, everything else is literal. */
function globReference (pattern: string, text: string): boolean {
  const m = pattern.length
  const n = text.length
  let prev = new Array<boolean>(n + 1).fill(false)
  prev[0] = true
  for (let i = 1; i <= m; i++) {
    const cur = new Array<boolean>(n + 1).fill(false)
    const pc = pattern[i - 1]
    if (pc === '*') cur[0] = prev[0] as boolean
    for (let j = 1; j <= n; j++) {
      cur[j] = pc === '*' ? (prev[j] as boolean) || (cur[j - 1] as boolean) : (prev[j - 1] as boolean) && pc === text[j - 1]
    }
    prev = cur
  }
  return prev[n] as boolean
}

t.test('TopicPatterns: exact names', async t => {
  const p = new TopicPatterns(['news', 'orders.eu'])
  for (const yes of ['news', 'orders.eu']) t.ok(p.matches(yes), yes)
  for (const no of ['new', 'news2', 'News', 'orders', 'orders.eux', 'ordersXeu', '']) t.notOk(p.matches(no), no)
  t.notOk(p.empty)
})

t.test('TopicPatterns: "*" matches every topic', async t => {
  const p = new TopicPatterns(['*'])
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...TOPIC_CHARS), minLength: 1, maxLength: 128 }), s => p.matches(s)), { numRuns: 500 })
  t.ok(p.matches('a'))
  t.ok(p.matches('x'.repeat(128)))
  t.notOk(p.empty)
})

t.test('TopicPatterns: "orders.*" and "*.eu"', async t => {
  const prefix = new TopicPatterns(['orders.*'])
  for (const yes of ['orders.eu', 'orders.', 'orders.eu.west', 'orders.a/b', 'orders.*']) t.ok(prefix.matches(yes), yes)
  for (const no of ['orders', 'ordersXeu', 'orders-eu', 'xorders.eu', 'Orders.eu', ' orders.eu']) t.notOk(prefix.matches(no), no)
  const suffix = new TopicPatterns(['*.eu'])
  for (const yes of ['orders.eu', 'a.b.eu', '.eu']) t.ok(suffix.matches(yes), yes)
  for (const no of ['orders.eux', 'orders-eu', 'eu', 'orders.EU', 'orders.eu.']) t.notOk(suffix.matches(no), no)
  const middle = new TopicPatterns(['tenant/*/orders'])
  t.ok(middle.matches('tenant/42/orders'))
  t.ok(middle.matches('tenant/a/b/orders'), '* crosses / too')
  t.notOk(middle.matches('tenant/42/orders/x'))
  const both = new TopicPatterns(['*.orders.*'])
  t.ok(both.matches('eu.orders.new'))
  t.notOk(both.matches('eu.order.new'))
})

t.test('TopicPatterns: regex metacharacters are literal', async t => {
  const cases: Array<[string, string[], string[]]> = [
    ['a+b', ['a+b'], ['ab', 'aab', 'aaab']],
    ['a+b*', ['a+b', 'a+bxyz'], ['aab', 'aabxyz', 'ab']],
    ['a.b*', ['a.b', 'a.bc'], ['axb', 'axbc']],
    ['a?b*', ['a?b', 'a?bc'], ['ab', 'b', 'abc']],
    ['(a)*', ['(a)', '(a)x'], ['a', 'ax']],
    ['[ab]*', ['[ab]', '[ab]x'], ['a', 'b', 'ax']],
    ['^a*', ['^a', '^ax'], ['a', 'ax']],
    ['a$*', ['a$', 'a$x'], ['a', 'ax']],
    ['a|b*', ['a|b', 'a|bx'], ['a', 'b', 'bx']],
    ['a\\d*', ['a\\d', 'a\\dx'], ['a1', 'a1x']],
    ['a{2}*', ['a{2}', 'a{2}x'], ['aa', 'aax']],
    ['a/b*', ['a/b', 'a/bx'], ['ab']],
    ['.*', ['.', '.x', '.*'], ['x', '', 'ab']],
  ]
  for (const [pattern, yes, no] of cases) {
    const p = new TopicPatterns([pattern])
    for (const s of yes) t.ok(p.matches(s), `${pattern} matches ${s}`)
    for (const s of no) t.notOk(p.matches(s), `${pattern} does not match ${s}`)
  }
  // Exact names with metacharacters are literal too.
  const exact = new TopicPatterns(['a+b', 'a.b'])
  t.ok(exact.matches('a+b'))
  t.notOk(exact.matches('aab'))
  t.notOk(exact.matches('axb'))
})

t.test('TopicPatterns agrees with a reference glob matcher on random patterns (with metacharacters)', async t => {
  const alphabet = fc.constantFrom('a', 'b', '.', '*', '+', '?', '(', ')', '[', ']', '\\', '^', '$', '|', '{', '}', '/', '-', '\n')
  const word = fc.string({ unit: alphabet, maxLength: 8 })
  const randomTopic = fc.string({ unit: alphabet.filter(c => c !== '*'), maxLength: 10 })
  // Topics drawn at random, and topics made from a pattern by filling its stars.
  const cases = fc.array(word, { maxLength: 3 }).chain(patterns => fc.tuple(
    fc.constant(patterns),
    fc.array(patterns.length === 0
      ? randomTopic
      : fc.oneof(randomTopic, fc.tuple(fc.constantFrom(...patterns), fc.array(randomTopic, { maxLength: 8 }))
        .map(([pat, fills]) => pat.split('*').map((part, i) => i === 0 ? part : (fills[i - 1] ?? '') + part).join(''))),
    { minLength: 1, maxLength: 5 })
  ))
  let hits = 0
  fc.assert(fc.property(cases, ([patterns, topics]) => {
    const p = new TopicPatterns(patterns)
    for (const topic of topics) {
      const want = patterns.some(pat => globReference(pat, topic))
      if (want) hits++
      strictEqual(p.matches(topic), want, `${JSON.stringify(patterns)} vs ${JSON.stringify(topic)}`)
    }
  }), { numRuns: 3000 })
  t.ok(hits > 500, `${hits} matches among the checks`)
})

// Regression: `*` patterns were compiled to regular expressions (`.*` per
// star), which backtrack exponentially in the number of stars: the pattern
// `*a*a*a*a*b` took seconds against a 128-character topic, blocking the
// replica's event loop. Topics come from the client (unauthenticated for
// PUBLIC_TOPICS), so the matcher must be linear whatever the input.
t.test('TopicPatterns: a pattern with many stars matches a 128-character topic quickly (no regex backtracking)', async t => {
  const topic = 'a'.repeat(128)
  const patterns = ['*a*a*a*a*b', '*a*a*a*a*a*a*a*a*a*a*a*a*b', `${'*a'.repeat(60)}*b`, '*.*.*.*.*.*.*.*.x']
  for (const pat of patterns) {
    const p = new TopicPatterns([pat])
    const started = performance.now()
    t.notOk(p.matches(topic), pat)
    t.notOk(p.matches(`${'.'.repeat(127)}y`), pat)
    const ms = performance.now() - started
    t.ok(ms < 50, `${pat}: ${ms.toFixed(2)} ms`)
  }
  t.ok(new TopicPatterns(['*a*a*a*a*b']).matches(`${topic}b`))
})

t.test('TopicPatterns: empty lists grant nothing', async t => {
  const none = new TopicPatterns([])
  t.ok(none.empty)
  t.notOk(none.matches('a'))
  t.notOk(none.matches(''))
  t.notOk(new TopicPatterns(['a']).empty)
  t.notOk(new TopicPatterns(['a*']).empty)
  t.notOk(new TopicPatterns(['*']).empty)
  t.notOk(new TopicPatterns(topicsFromClaim(undefined)).matches('anything'), 'no claim, no topics')
  const fromSet = new TopicPatterns(new Set(['a', 'b*']))
  t.ok(fromSet.matches('a') && fromSet.matches('bc'), 'takes any iterable')
})

t.test('topicsFromClaim: arrays, space- or comma-separated strings, nothing from anything else', async t => {
  t.same(topicsFromClaim(['news', 'orders.*']), ['news', 'orders.*'])
  t.same(topicsFromClaim([]), [])
  t.same(topicsFromClaim(['a', 1, null, undefined, true, { a: 1 }, ['b'], '', 'c']), ['a', 'c'], 'non-strings and empty strings dropped')
  t.same(topicsFromClaim('news orders.*'), ['news', 'orders.*'])
  t.same(topicsFromClaim('news,orders.*'), ['news', 'orders.*'])
  t.same(topicsFromClaim(' news ,, orders.*\t\nfoo  '), ['news', 'orders.*', 'foo'], 'mixed separators, leading and trailing')
  t.same(topicsFromClaim('news'), ['news'])
  t.same(topicsFromClaim(''), [])
  t.same(topicsFromClaim(' , '), [])
  for (const junk of [undefined, null, 0, 42, true, false, {}, { topics: ['a'] }, () => 'a', Symbol('a'), 10n, new Set(['a'])]) {
    t.same(topicsFromClaim(junk), [], `${typeof junk}: ${String(junk)}`)
  }
  fc.assert(fc.property(fc.array(fc.string({ unit: fc.constantFrom(...TOPIC_CHARS, '*'), minLength: 1, maxLength: 20 }), { maxLength: 10 }), fc.constantFrom(' ', ',', ', ', '\t', '\n', ' ,'), (topics, sep) => {
    strictEqual(JSON.stringify(topicsFromClaim(topics.join(sep))), JSON.stringify(topics))
    strictEqual(JSON.stringify(topicsFromClaim(topics)), JSON.stringify(topics))
  }), { numRuns: 1000 })
  t.not(topicsFromClaim(['a']), topicsFromClaim(['a']), 'a fresh array each time')
})
