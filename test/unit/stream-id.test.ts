/**
 * Redis stream entry ids: validation, numeric ordering, and the exclusive
 * cursors used to start range reads.
 */
import { strictEqual } from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import { ZERO_ID, compareIds, cursorForTime, idBefore, idMs, isStreamId } from '../../src/core/stream-id.js'

const U64_MAX = 2n ** 64n - 1n

/** Id parts, weighted towards the boundaries where string comparison goes wrong. */
const part = fc.oneof(
  fc.bigInt({ min: 0n, max: 20n }),
  fc.bigInt({ min: 0n, max: 2n ** 53n }),
  fc.bigInt({ min: 10n ** 19n, max: U64_MAX }), // 20 digits
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.constantFrom(0n, 1n, 9n, 10n, 99n, 100n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 10n ** 19n - 1n, 10n ** 19n, U64_MAX - 1n, U64_MAX)
)
const idParts = fc.tuple(part, part)
const toId = ([ms, seq]: readonly [bigint, bigint]): string => `${ms}-${seq}`
const value = ([ms, seq]: readonly [bigint, bigint]): bigint => (ms << 64n) + seq
/** -1, 0 or 1 (never -0): a comparator's answer, normalised. */
const sign = (n: number | bigint): number => (n < 0 ? -1 : n > 0 ? 1 : 0)
const parse = (id: string): [bigint, bigint] => {
  const [ms, seq] = id.split('-')
  return [BigInt(ms as string), BigInt(seq as string)]
}

t.test('compareIds agrees with BigInt comparison of (ms, seq), including 20-digit parts', async t => {
  fc.assert(fc.property(idParts, idParts, (a, b) => {
    const want = sign(value(a) - value(b))
    strictEqual(sign(compareIds(toId(a), toId(b))), want, `${toId(a)} vs ${toId(b)}`)
    strictEqual(sign(compareIds(toId(b), toId(a))), -want || 0, 'antisymmetric')
    strictEqual(compareIds(toId(a), toId(a)), 0, 'reflexive')
  }), { numRuns: 5000 })
  // Same ms, seq decides; ms decides before seq whatever the lengths.
  fc.assert(fc.property(part, part, part, (ms, s1, s2) => {
    strictEqual(sign(compareIds(`${ms}-${s1}`, `${ms}-${s2}`)), sign(s1 - s2))
  }), { numRuns: 1000 })
  t.pass('6000 runs')
})

t.test('sorting with compareIds is numeric order, not text order', async t => {
  fc.assert(fc.property(fc.array(idParts, { maxLength: 30 }), ids => {
    const got = ids.map(toId).sort(compareIds)
    const want = [...ids].sort((a, b) => (value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : 0)).map(toId)
    strictEqual(JSON.stringify(got), JSON.stringify(want))
  }), { numRuns: 500 })
  t.ok(compareIds('9-0', '10-0') < 0, '9 before 10 (text order would say after)')
  t.ok(compareIds('1-9', '1-10') < 0)
  t.ok(compareIds('2-0', '1-99999999999999999999') > 0, 'ms decides before seq')
  t.ok(compareIds('18446744073709551615-0', '9999999999999999999-18446744073709551615') > 0)
  t.ok(compareIds(ZERO_ID, '0-1') < 0)
})

t.test('isStreamId accepts every <ms>-<seq> of unsigned 64-bit parts', async t => {
  fc.assert(fc.property(idParts, p => isStreamId(toId(p))), { numRuns: 3000 })
  for (const id of ['0-0', '0-1', '1-0', '1700000000000-0', '1700000000000-42', '18446744073709551615-18446744073709551615']) {
    t.ok(isStreamId(id), id)
  }
})

t.test('isStreamId rejects leading zeros, missing parts, signs, spaces and other syntax', async t => {
  const rejected = [
    '', '0', '1', '-', '1-', '-1', '-0', '1--0', '1-0-0', '--1',
    '01-0', '1-01', '00-0', '0-00', '007-1',
    '+1-0', '1-+0', '-1-0', '1--1',
    ' 1-0', '1-0 ', '1 -0', '1- 0', '\t1-0', '1-0\n', '\n1-0',
    '1.5-0', '1e3-0', '0x1-0', 'a-0', '1-a', '\u0661-0', '\uFF11-0',
    '*', '$', '>', '+', '-', '(1-0', '1-*',
    '1_0', '1.0', '1:0',
    '100000000000000000000-0', '0-100000000000000000000', // 21 digits
  ]
  for (const id of rejected) t.notOk(isStreamId(id), JSON.stringify(id))
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...'0123456789- +.e'.split('')), maxLength: 25 }), s => {
    const want = /^(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$/.test(s) && parse(s).every(n => n <= U64_MAX)
    strictEqual(isStreamId(s), want, JSON.stringify(s))
  }), { numRuns: 3000 })
})

// Regression: isStreamId took any 20-digit part, so a Last-Event-ID such as
// "99999999999999999999-0" passed as a resume position and every XRANGE with
// it failed ("ERR Invalid stream ID"): the session ended with source-error and
// the client reconnected with the same id, for ever, instead of getting an
// invalid-cursor notice and the live stream.
t.test('isStreamId rejects parts above 2^64-1, which Redis refuses (reconnect loop on a crafted Last-Event-ID)', async t => {
  t.notOk(isStreamId('18446744073709551616-0'), 'ms = 2^64')
  t.notOk(isStreamId('0-18446744073709551616'), 'seq = 2^64')
  t.notOk(isStreamId('99999999999999999999-0'))
  t.notOk(isStreamId('20000000000000000000-0'))
  t.ok(isStreamId('18446744073709551615-0'), 'ms = 2^64-1')
  t.ok(isStreamId('0-18446744073709551615'), 'seq = 2^64-1')
  fc.assert(fc.property(fc.bigInt({ min: U64_MAX + 1n, max: 10n ** 20n - 1n }), part, fc.boolean(), (big, other, bigFirst) => {
    strictEqual(isStreamId(bigFirst ? `${big}-${other}` : `${other}-${big}`), false)
  }), { numRuns: 500 })
})

t.test('idMs is the milliseconds part', async t => {
  t.equal(idMs('1700000000000-5'), 1700000000000)
  t.equal(idMs('0-0'), 0)
  fc.assert(fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat(), (ms, seq) => idMs(`${ms}-${seq}`) === ms), { numRuns: 500 })
})

t.test('idBefore is the largest id sorting before the given id, so "(idBefore(x)" starts a range at x', async t => {
  fc.assert(fc.property(idParts.filter(p => value(p) > 0n), p => {
    const before = idBefore(toId(p))
    strictEqual(isStreamId(before), true, before)
    strictEqual(value(parse(before)), value(p) - 1n, `${toId(p)} -> ${before}`)
    strictEqual(compareIds(before, toId(p)) < 0, true)
  }), { numRuns: 3000 })
  t.equal(idBefore('5-3'), '5-2')
  t.equal(idBefore('5-0'), '4-18446744073709551615')
  t.equal(idBefore('0-1'), '0-0')
  t.equal(idBefore('1-0'), '0-18446744073709551615')
  t.equal(idBefore('18446744073709551615-0'), '18446744073709551614-18446744073709551615')
  t.equal(idBefore(ZERO_ID), ZERO_ID, 'nothing sorts before 0-0 (and Redis never stores 0-0)')
})

t.test('cursorForTime(ms): an exclusive cursor just before <ms>-0, so a range read gets every entry stamped at or after ms', async t => {
  fc.assert(fc.property(fc.double({ min: -1e15, max: 1e15, noNaN: true }), ms => {
    const c = cursorForTime(ms)
    strictEqual(isStreamId(c), true, c)
    const floor = BigInt(Math.floor(ms))
    const first = floor <= 0n ? 0n : floor << 64n // value of "<floor(ms)>-0"
    // c < first entry allowed, and nothing lies strictly between c and it.
    strictEqual(value(parse(c)), first === 0n ? 0n : first - 1n, `${ms} -> ${c}`)
  }), { numRuns: 2000 })
  t.equal(cursorForTime(0), ZERO_ID)
  t.equal(cursorForTime(-5), ZERO_ID)
  t.equal(cursorForTime(0.7), ZERO_ID)
  t.equal(cursorForTime(1700000000000), '1699999999999-18446744073709551615')
  t.equal(cursorForTime(1700000000000.9), '1699999999999-18446744073709551615')
})
