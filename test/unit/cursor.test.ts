/**
 * The multi-channel cursor (the SSE `id:`): what a client hands back as
 * Last-Event-ID must decode, on any replica, to the position of each channel;
 * anything else must be refused without throwing.
 */
import { deepStrictEqual, strictEqual } from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import { CURSOR_VERSION, channelHash, decodeCursor, encodeCursor, encodeSegment } from '../../src/core/cursor.js'
import { isStreamId } from '../../src/core/stream-id.js'

/** Any Unicode scalar value (astral included, no lone surrogate). */
const codePoint = fc.integer({ min: 0, max: 0x10ffff }).filter(c => c < 0xd800 || c > 0xdfff).map(c => String.fromCodePoint(c))

const U64_MAX = 2n ** 64n - 1n
const SAFE = /^[0-9a-z._-]+$/

/** FNV-1a (32-bit) over UTF-16 code units, reduced to 6 base-36 digits: written independently of the module. */
function referenceHash (name: string): string {
  let h = 0x811c9dc5n
  for (let i = 0; i < name.length; i++) {
    h ^= BigInt(name.charCodeAt(i))
    h = (h * 0x01000193n) % 2n ** 32n
  }
  return (h % 36n ** 6n).toString(36).padStart(6, '0')
}

const ms = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 53n }),
  fc.bigInt({ min: 1_600_000_000_000n, max: 2_000_000_000_000n }),
  fc.bigInt({ min: 0n, max: U64_MAX }),
  // Where the codec switches between Number and BigInt arithmetic.
  fc.constantFrom(0n, 1n, 35n, 36n, 10n ** 15n - 1n, 10n ** 15n, 36n ** 10n - 1n, 36n ** 10n, 2n ** 53n, U64_MAX)
)
const seq = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: 0n, max: 1000n }),
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.constantFrom(1n, 10n ** 15n, 36n ** 10n, U64_MAX - 1n, U64_MAX)
)
const streamId = fc.oneof(
  { weight: 1, arbitrary: fc.constant('0-0') },
  { weight: 9, arbitrary: fc.tuple(ms, seq).map(([m, s]) => `${m}-${s}`) }
)
const channelName = fc.oneof(
  fc.string({ maxLength: 40 }).map(s => `topic:${s}`),
  fc.string({ unit: codePoint, maxLength: 40 }).map(s => `user:${s}`),
  fc.string({ unit: codePoint, maxLength: 300 })
)

t.test('channelHash: 6 base-36 characters, deterministic, FNV-1a over UTF-16 units (cursors from older replicas stay valid)', async t => {
  fc.assert(fc.property(channelName, name => {
    const h = channelHash(name)
    strictEqual(/^[0-9a-z]{6}$/.test(h), true, h)
    strictEqual(channelHash(name), h, 'deterministic')
    strictEqual(h, referenceHash(name), JSON.stringify(name))
  }), { numRuns: 3000 })
  // Pinned: changing the hash would turn every cursor held by a client into
  // an invalid one on the next deploy.
  t.equal(channelHash(''), 'ztntfp')
  t.equal(channelHash('user:42'), 'd5nw5e')
  t.equal(channelHash('topic:orders'), '2khsfn')
  t.equal(channelHash('topic:news'), '15c8ol')
  t.equal(channelHash('user:\u{1F600}'), 'fnslbh')
  t.not(channelHash('topic:a'), channelHash('topic:b'))
})

t.test('round trip: every channel of a cursor decodes to the id it was encoded with', async t => {
  let runs = 0
  let maxChannels = 0
  fc.assert(fc.property(
    fc.uniqueArray(fc.tuple(channelName, streamId), { minLength: 1, maxLength: 16, selector: ([name]) => channelHash(name) }),
    channels => {
      runs++
      maxChannels = Math.max(maxChannels, channels.length)
      const cursor = encodeCursor(channels.map(([name, id]) => encodeSegment(channelHash(name), id)))
      strictEqual(SAFE.test(cursor), true, `only [0-9a-z._-]: ${cursor}`)
      strictEqual(cursor.startsWith(`${CURSOR_VERSION}.`), true)
      strictEqual(isStreamId(cursor), false, 'never mistaken for a bare id')
      const decoded = decodeCursor(cursor)
      deepStrictEqual(decoded, { kind: 'channels', positions: new Map(channels.map(([name, id]) => [channelHash(name), id])) })
    }
  ), { numRuns: 2000 })
  t.ok(maxChannels >= 8, `up to ${maxChannels} channels in ${runs} runs`)
  // The most a connection may hold by default (MAX_TOPICS_PER_CONNECTION) plus its user channel.
  fc.assert(fc.property(
    fc.uniqueArray(fc.tuple(channelName, streamId), { minLength: 17, maxLength: 17, selector: ([name]) => channelHash(name) }),
    channels => {
      const cursor = encodeCursor(channels.map(([name, id]) => encodeSegment(channelHash(name), id)))
      const d = decodeCursor(cursor)
      strictEqual(d?.kind === 'channels' && d.positions.size, 17)
      deepStrictEqual(d, { kind: 'channels', positions: new Map(channels.map(([name, id]) => [channelHash(name), id])) })
    }
  ), { numRuns: 200 })
})

t.test('a single segment is compact and exact at the Number/BigInt boundaries', async t => {
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyz'.split('')), minLength: 6, maxLength: 6 }), streamId, (hash, id) => {
    const seg = encodeSegment(hash, id)
    strictEqual(seg.length <= 1 + 6 + 13 + 1 + 13, true, seg)
    strictEqual(id.endsWith('-0') ? !seg.includes('_') : seg.includes('_'), true, 'seq 0 is left out')
    deepStrictEqual(decodeCursor(encodeCursor([seg])), { kind: 'channels', positions: new Map([[hash, id]]) })
  }), { numRuns: 2000 })
  t.equal(encodeSegment('abcdef', '0-0'), '.abcdef0')
  t.equal(encodeSegment('abcdef', '1700000000000-0'), `.abcdef${(1700000000000).toString(36)}`)
  t.equal(encodeSegment('abcdef', '18446744073709551615-18446744073709551615'), '.abcdef3w5e11264sgsf_3w5e11264sgsf')
  t.equal(encodeCursor([]), '1', 'no channels: the version alone')
  t.equal(decodeCursor('1'), undefined, '...which is not a cursor a client can resume from')
})

t.test('bare entry ids decode as kind "bare" with the same id', async t => {
  fc.assert(fc.property(streamId, id => {
    deepStrictEqual(decodeCursor(id), { kind: 'bare', id })
  }), { numRuns: 1000 })
  t.same(decodeCursor('0-0'), { kind: 'bare', id: '0-0' })
  t.same(decodeCursor('1700000000000-0'), { kind: 'bare', id: '1700000000000-0' })
})

/** Anything decodeCursor accepts must be usable in XRANGE: valid ids of unsigned 64-bit parts. */
function assertUsable (text: string): void {
  const d = decodeCursor(text)
  if (d === undefined) return
  const ids = d.kind === 'bare' ? [d.id] : [...d.positions.values()]
  if (d.kind === 'channels') {
    strictEqual(d.positions.size > 0, true)
    for (const h of d.positions.keys()) strictEqual(/^[0-9a-z]{6}$/.test(h), true, h)
    // Decoding is stable: re-encoding the positions gives the same positions.
    deepStrictEqual(decodeCursor(encodeCursor([...d.positions].map(([h, id]) => encodeSegment(h, id)))), d)
  }
  for (const id of ids) {
    strictEqual(isStreamId(id), true, `${JSON.stringify(text)} -> ${id}`)
    for (const p of id.split('-')) strictEqual(BigInt(p) <= U64_MAX, true, `${JSON.stringify(text)} -> ${id}`)
  }
}

t.test('decodeCursor never throws; whatever it accepts is a valid Redis id for every channel', async t => {
  const alphabet = fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyz._-1.'.split(''), 'A', 'Z', ' ', '\n', '\u{1F600}', '%', '+')
  const nearCursor = fc.string({ unit: alphabet, maxLength: 80 }).map(s => `1.${s}`)
  const nearBare = fc.tuple(fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), minLength: 0, maxLength: 22 }), fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), minLength: 0, maxLength: 22 })).map(([a, b]) => `${a}-${b}`)
  let accepted = 0
  fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: codePoint, maxLength: 100 }), fc.string({ unit: alphabet, maxLength: 80 }), nearCursor, nearBare), s => {
    assertUsable(s)
    if (decodeCursor(s) !== undefined) accepted++
  }), { numRuns: 5000 })
  t.ok(accepted > 100, `${accepted} of 5000 random inputs decoded, all usable`)

  // Mutations of real cursors: flip, drop or insert one character.
  fc.assert(fc.property(
    fc.array(fc.tuple(channelName, streamId), { minLength: 1, maxLength: 4 }), fc.nat(), alphabet, fc.constantFrom('replace', 'delete', 'insert'),
    (channels, at, ch, op) => {
      const c = encodeCursor(channels.map(([n, id]) => encodeSegment(channelHash(n), id)))
      const i = at % c.length
      const mutated = op === 'replace' ? c.slice(0, i) + ch + c.slice(i + 1) : op === 'delete' ? c.slice(0, i) + c.slice(i + 1) : c.slice(0, i) + ch + c.slice(i)
      assertUsable(mutated)
    }
  ), { numRuns: 2000 })
})

t.test('decodeCursor refuses malformed cursors', async t => {
  const seg = encodeSegment('abcdef', '1700000000000-5')
  t.ok(decodeCursor(`1${seg}`), 'the valid cursor the cases below break')
  const over = (2n ** 64n).toString(36) // 13 base-36 digits, one past 2^64-1
  const rejected: Array<[string, string]> = [
    ['', 'empty'],
    ['1', 'version only'],
    ['1.', 'empty segment'],
    [`1${seg}.`, 'trailing dot'],
    [`1.${seg}`, 'double dot'],
    [`2${seg}`, 'unknown version 2'],
    [`0${seg}`, 'version 0'],
    [`v1${seg}`, 'prefixed version'],
    [seg, 'no version'],
    [`1${seg.toUpperCase()}`, 'upper case'],
    ['1.abcde1', 'hash of 5 and ms'],
    ['1.abcdef', 'hash without ms'],
    ['1.abcdef_1', 'hash without ms, with seq'],
    ['1.abcdef1_', 'empty seq'],
    ['1.abcdef1__1', 'two underscores'],
    ['1.abcdef1_1_1', 'two seqs'],
    ['1.abcdef00', 'ms with a leading zero'],
    ['1.abcdef01', 'ms with a leading zero'],
    ['1.abcdef1_00', 'seq with a leading zero'],
    ['1.abcdef1_01', 'seq with a leading zero'],
    [`1.abcdef${over}`, 'ms = 2^64'],
    [`1.abcdef1_${over}`, 'seq = 2^64'],
    ['1.abcdefzzzzzzzzzzzzz', 'ms of 13 digits above 2^64'],
    ['1.abcdef10000000000000', 'ms of 14 base-36 digits'],
    ['1.abcdef1_10000000000000', 'seq of 14 base-36 digits'],
    [`1${seg} `, 'trailing space'],
    [` 1${seg}`, 'leading space'],
    [`1${seg}\n`, 'trailing LF'],
    [`1${seg}-1`, 'dash in a segment'],
    ['1.abcdef1%2e', 'percent-encoded'],
    ['01-0', 'bare id with a leading zero'],
    ['1-01', 'bare seq with a leading zero'],
    ['-1-0', 'negative bare id'],
    ['1-0-0', 'three parts'],
    ['18446744073709551616-0', 'bare ms = 2^64'],
    ['0-18446744073709551616', 'bare seq = 2^64'],
    ['99999999999999999999-0', 'bare 20 digits above 2^64-1'],
    ['\u{1F600}', 'emoji'],
    ['null', 'null'],
    ['undefined', 'undefined'],
  ]
  for (const [text, why] of rejected) t.equal(decodeCursor(text), undefined, `${why}: ${JSON.stringify(text)}`)
  t.same(decodeCursor(`1.abcdef${(2n ** 64n - 1n).toString(36)}_${(2n ** 64n - 1n).toString(36)}`), {
    kind: 'channels', positions: new Map([['abcdef', '18446744073709551615-18446744073709551615']]),
  }, '2^64-1 in both parts is accepted')
  t.same(decodeCursor('1.abcdef0'), { kind: 'channels', positions: new Map([['abcdef', '0-0']]) }, 'a single 0 is not a leading zero')
})

t.test('decodeCursor refuses input over 4096 characters, even well-formed', async t => {
  // 510 segments of 8 characters and one of 15: 1 + 4080 + 15 = 4096.
  const segs = Array.from({ length: 510 }, (_, i) => `.${i.toString(36).padStart(6, '0')}1`)
  const exact = encodeCursor([...segs, '.zzzzzz12345678'])
  t.equal(exact.length, 4096)
  const d = decodeCursor(exact)
  t.equal(d?.kind === 'channels' ? d.positions.size : -1, 511, '4096 characters decode')
  const longer = encodeCursor([...segs, '.zzzzzz123456789'])
  t.equal(longer.length, 4097)
  t.equal(decodeCursor(longer), undefined, '4097 characters do not')
  t.equal(decodeCursor('1'.repeat(1_000_000)), undefined, 'a megabyte is refused at once')
  t.equal(decodeCursor('1.abcdef1'.repeat(100_000)), undefined)
})

t.test('a repeated hash keeps one position (the last), never throws', async t => {
  const d = decodeCursor('1.abcdef1.abcdef2')
  t.same(d, { kind: 'channels', positions: new Map([['abcdef', '2-0']]) })
})
