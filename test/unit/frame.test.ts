/**
 * SSE framing, checked against a spec-compliant parser (eventsource-parser).
 *
 * The property tests build frames exactly the way the gateway does: the hub
 * formats `event:` + `data:` lines once (formatEventBody) after checking the
 * name with isValidEventName, each session appends its own `id:` line
 * (formatIdLine), control events use formatEvent, and `retry:` / heartbeat
 * comments are interleaved. The bytes go through a streaming UTF-8 decoder in
 * random chunks (cutting multi-byte characters in half) into the parser.
 */
import { deepStrictEqual, strictEqual } from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import { dechunk } from '../helpers/wire.js'
import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser'
import {
  CONTROL_EVENT_PREFIX,
  HEARTBEAT,
  MAX_EVENT_NAME_LENGTH,
  formatEvent,
  formatEventBody,
  formatIdLine,
  formatRetry,
  isSafeFieldValue,
  isValidEventName,
} from '../../src/core/frame.js'
import { chunkPayload, httpChunk, httpChunkOfText } from '../../src/http/http1-chunk.js'

/** Any Unicode scalar value (astral included, no lone surrogate). */
const codePoint = fc.integer({ min: 0, max: 0x10ffff }).filter(c => c < 0xd800 || c > 0xdfff).map(c => String.fromCodePoint(c))

interface Parsed {
  events: Array<{ event: string | undefined, id: string | undefined, data: string }>
  retries: number[]
  comments: string[]
  errors: ParseError[]
}

/** Feeds `bytes` to the parser in chunks cut at `cuts` (byte offsets), through a streaming UTF-8 decoder. */
function parseBytes (bytes: Uint8Array, cuts: readonly number[] = []): Parsed {
  const out: Parsed = { events: [], retries: [], comments: [], errors: [] }
  const parser = createParser({
    onEvent: (e: EventSourceMessage) => { out.events.push({ event: e.event, id: e.id, data: e.data }) },
    onRetry: ms => { out.retries.push(ms) },
    onComment: c => { out.comments.push(c) },
    onError: err => { out.errors.push(err) },
  })
  // fatal: invalid UTF-8 on the wire throws instead of decoding to U+FFFD.
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let start = 0
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    parser.feed(decoder.decode(bytes.subarray(start, cut), { stream: true }))
    start = cut
  }
  parser.feed(decoder.decode(bytes.subarray(start), { stream: true }))
  parser.feed(decoder.decode())
  return out
}

function bytesOf (...parts: Array<Buffer | string>): Buffer {
  return Buffer.concat(parts.map(p => typeof p === 'string' ? Buffer.from(p, 'utf8') : p))
}

/** What SSE can carry of `data`: every CR, LF or CRLF line break becomes LF. */
function spec (data: string): string {
  let out = ''
  for (let i = 0; i < data.length; i++) {
    const c = data[i] as string
    if (c === '\r') {
      out += '\n'
      if (data[i + 1] === '\n') i++
    } else {
      out += c
    }
  }
  return out
}

// Units of random text: the characters that break naive framing (CR, LF,
// CRLF, LF CR, NUL, BOM, astral and multi-byte characters, text that looks
// like a field) mixed with any Unicode code point and plain ASCII.
const tricky = fc.constantFrom(
  '\r', '\n', '\r\n', '\n\r', '\r\r', '\0', '\uFEFF', '\u{1F600}', '\u{10FFFF}', '\u{10000}', 'é', '€', '\u2028', '\u0085',
  '\x7f', '\t', '\x1b', ' ', ':', ': ', 'data: forged', 'event: forged', 'id: forged', 'retry: 1', ':comment'
)
const plain = fc.constantFrom(...'abcxyzABC0189 .-_/@'.split(''))
const text = fc.string({
  unit: fc.oneof({ weight: 4, arbitrary: tricky }, { weight: 3, arbitrary: codePoint }, { weight: 3, arbitrary: plain }),
  maxLength: 30,
})
/** Mostly-valid event names, so the accept path is exercised as much as the reject path. */
const safeName = fc.string({
  unit: fc.oneof(plain, fc.constantFrom('\u{1F600}', 'é', '€', '\uFEFF', ':', ' ', '\u2028', '\u0085'), codePoint.filter(c => (c.codePointAt(0) ?? 0) >= 0x20 && c !== '\x7f')),
  minLength: 1,
  maxLength: 40,
})
const eventName = fc.oneof(
  { weight: 3, arbitrary: safeName },
  { weight: 2, arbitrary: text },
  { weight: 1, arbitrary: safeName.map(s => CONTROL_EVENT_PREFIX + s) },
  { weight: 1, arbitrary: fc.constant(undefined) }
)
const id = fc.oneof(
  { weight: 3, arbitrary: text },
  { weight: 2, arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat()).map(([ms, seq]) => `${ms}-${seq}`) },
  { weight: 1, arbitrary: fc.stringMatching(/^1(\.[0-9a-z]{7,20})+$/) }
)

type Build = 'shared-body' | 'format-event-with-id' | 'format-event-no-id'
const frameSpec = fc.record({
  data: text,
  event: eventName,
  id,
  build: fc.constantFrom<Build>('shared-body', 'format-event-with-id', 'format-event-no-id'),
  // What the session may write before the event: nothing, a heartbeat, or a retry.
  before: fc.oneof(fc.constant(undefined), fc.constant('heartbeat' as const), fc.double({ min: -10, max: 2 ** 31, noNaN: true })),
})

const counts = { runs: 0, frames: 0, framed: 0, namedEvents: 0, rejectedNames: 0, rejectedIds: 0, splitsInsideChar: 0 }

t.test('framing property: exactly one event per frame; event name and id intact; data with every CR, LF or CRLF line break turned into LF (what SSE can carry)', async t => {
  fc.assert(
    fc.property(fc.array(frameSpec, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, rawCuts) => {
      counts.runs++
      const parts: Buffer[] = []
      const expected: Parsed = { events: [], retries: [], comments: [], errors: [] }
      for (const f of frames) {
        counts.frames++
        if (f.before === 'heartbeat') {
          parts.push(Buffer.from(HEARTBEAT))
          expected.comments.push('')
        } else if (f.before !== undefined) {
          parts.push(Buffer.from(formatRetry(f.before)))
          expected.retries.push(Math.max(0, Math.floor(f.before)))
        }
        // The gateway's validation: an entry with an unsafe name is skipped,
        // never framed; ids must be safe field values.
        if (f.event !== undefined && !isValidEventName(f.event)) {
          counts.rejectedNames++
          continue
        }
        const withId = f.build !== 'format-event-no-id'
        if (withId && !isSafeFieldValue(f.id)) {
          counts.rejectedIds++
          continue
        }
        counts.framed++
        if (f.event !== undefined) counts.namedEvents++
        if (f.build === 'shared-body') parts.push(formatEventBody(f.data, f.event), Buffer.from(formatIdLine(f.id)))
        else if (f.build === 'format-event-with-id') parts.push(formatEvent(f.data, f.event, f.id))
        else parts.push(formatEvent(f.data, f.event))
        expected.events.push({ event: f.event, id: withId ? f.id : undefined, data: spec(f.data) })
      }
      const bytes = Buffer.concat(parts)
      const cuts = [...new Set(rawCuts.map(c => c % (bytes.length + 1)))]
      // Count cuts that land inside a multi-byte UTF-8 character (continuation byte).
      if (cuts.some(c => c < bytes.length && ((bytes[c] as number) & 0xc0) === 0x80)) counts.splitsInsideChar++
      const got = parseBytes(bytes, cuts)
      deepStrictEqual(got, expected)
    }),
    { numRuns: 3000 }
  )
  // Guard against a vacuous property: every path was taken many times.
  t.ok(counts.framed > 3000, `frames framed and parsed: ${counts.framed} of ${counts.frames} in ${counts.runs} runs`)
  t.ok(counts.namedEvents > 1000, `frames with an event name: ${counts.namedEvents}`)
  t.ok(counts.rejectedNames > 300, `frames skipped for an unsafe name: ${counts.rejectedNames}`)
  t.ok(counts.rejectedIds > 100, `frames skipped for an unsafe id: ${counts.rejectedIds}`)
  t.ok(counts.splitsInsideChar > 100, `runs with a chunk boundary inside a multi-byte character: ${counts.splitsInsideChar}`)
})

t.test('one shared body with different per-session id lines gives each session its own id', async t => {
  fc.assert(fc.property(text, safeName, fc.array(id.filter(isSafeFieldValue), { minLength: 1, maxLength: 5 }), (data, name, ids) => {
    const body = formatEventBody(data, name)
    const got = parseBytes(bytesOf(...ids.flatMap(i => [body, formatIdLine(i)])))
    deepStrictEqual(got.events, ids.map(i => ({ event: name, id: i, data: spec(data) })))
  }), { numRuns: 300 })
  t.pass('300 runs')
})

t.test('the shared body alone dispatches nothing: only the id line ends the event', async t => {
  const body = formatEventBody('a\nb', 'order')
  t.equal(body.at(-1), 0x0a, 'body ends with LF')
  t.notOk(body.toString().endsWith('\n\n'), 'body does not end with a blank line')
  t.equal(parseBytes(body).events.length, 0)
  t.same(parseBytes(bytesOf(body, formatIdLine('5-1'))).events, [{ event: 'order', id: '5-1', data: 'a\nb' }])
})

t.test('empty data round-trips as an event with data ""', async t => {
  t.same(parseBytes(formatEvent('')).events, [{ event: undefined, id: undefined, data: '' }])
  t.same(parseBytes(formatEvent('', 'ping', '1-0')).events, [{ event: 'ping', id: '1-0', data: '' }])
  t.same(parseBytes(bytesOf(formatEventBody(''), formatIdLine('2-0'))).events, [{ event: undefined, id: '2-0', data: '' }])
  t.equal(formatEvent('').toString(), 'data: \n\n')
})

t.test('line breaks in data: each of CR, LF and CRLF starts a new data line, empty lines kept', async t => {
  const cases: Array<[string, string]> = [
    ['a\rb', 'a\nb'],
    ['a\nb', 'a\nb'],
    ['a\r\nb', 'a\nb'],
    ['a\n\rb', 'a\n\nb'],
    ['a\r\rb', 'a\n\nb'],
    ['\n', '\n'],
    ['\r\n\r\n', '\n\n'],
    ['x\r', 'x\n'],
    ['\rx', '\nx'],
    [' leading space', ' leading space'],
    [':colon', ':colon'],
    ['\uFEFFbom', '\uFEFFbom'],
  ]
  for (const [data, want] of cases) {
    t.equal(parseBytes(formatEvent(data, undefined, '1-0')).events[0]?.data, want, JSON.stringify(data))
  }
  t.equal(formatEvent('a\rb\r\nc\nd').toString(), 'data: a\ndata: b\ndata: c\ndata: d\n\n', 'wire form')
})

t.test('every single cut of a frame (inside multi-byte characters too) parses to the same event', async t => {
  const bytes = formatEvent('a\r\n\u{1F600}\u00e9\u20ac\rb', '\u{1F600}e', '1.abcdef1_2')
  for (let cut = 0; cut <= bytes.length; cut++) {
    deepStrictEqual(parseBytes(bytes, [cut]).events, [{ event: '\u{1F600}e', id: '1.abcdef1_2', data: 'a\n\u{1F600}\u00e9\u20ac\nb' }], `cut at ${cut}`)
  }
  t.pass(`${bytes.length + 1} cut positions`)
})

t.test('isValidEventName: exact rule (1..128 UTF-16 units, no C0 control or DEL, not under "gateway.")', async t => {
  fc.assert(fc.property(fc.oneof(text, safeName, fc.string({ unit: codePoint, minLength: 120, maxLength: 140 })), s => {
    // eslint-disable-next-line no-control-regex -- the rule under test is about control characters
    const expected = s.length >= 1 && s.length <= MAX_EVENT_NAME_LENGTH && !/[\x00-\x1f\x7f]/.test(s) && !s.startsWith('gateway.')
    strictEqual(isValidEventName(s), expected, JSON.stringify(s))
    // An accepted name is always a safe field value.
    if (isValidEventName(s)) strictEqual(isSafeFieldValue(s), true)
  }), { numRuns: 2000 })

  const rejected: Array<[string, string]> = [
    ['', 'empty'],
    ['a\nb', 'LF'],
    ['a\rb', 'CR'],
    ['a\r\nb', 'CRLF'],
    ['\n', 'LF only'],
    ['a\0b', 'NUL'],
    ['a\tb', 'TAB (C0)'],
    ['a\x1bb', 'ESC (C0)'],
    ['a\x1fb', 'US (C0)'],
    ['a\x7fb', 'DEL'],
    ['x'.repeat(129), '129 characters'],
    ['\u{1F600}'.repeat(65), '65 astral characters are 130 UTF-16 units'],
    ['gateway.', 'reserved prefix alone'],
    ['gateway.history-gap', 'reserved control event'],
    ['gateway.token-expired', 'reserved control event'],
    ['order\ndata: forged', 'field injection'],
    ['order\r\nid: 999', 'id injection'],
    ['order\rretry: 1', 'retry injection'],
  ]
  for (const [name, why] of rejected) t.notOk(isValidEventName(name), `rejects ${why}`)

  const accepted: Array<[string, string]> = [
    ['a', 'one character'],
    ['message', 'message'],
    ['order.created', 'dotted'],
    ['x'.repeat(128), '128 characters'],
    ['gateway', 'the word without the dot'],
    ['gatewayx.y', 'prefix-like but not the prefix'],
    ['Gateway.x', 'the reserved prefix is case-sensitive'],
    ['with space', 'space'],
    ['ünïcödé \u{1F600}', 'unicode and astral'],
    ['\uFEFFbom', 'BOM'],
    ['a:b', 'colon'],
  ]
  for (const [name, why] of accepted) t.ok(isValidEventName(name), `accepts ${why}`)
})

t.test('isSafeFieldValue: false exactly when the value holds CR, LF or NUL', async t => {
  fc.assert(fc.property(text, s => {
    strictEqual(isSafeFieldValue(s), !/[\r\n\0]/.test(s), JSON.stringify(s))
  }), { numRuns: 2000 })
  for (const v of ['1\n', '\r', '1\r\nevent: x', 'a\0b', '\0']) t.notOk(isSafeFieldValue(v), JSON.stringify(v))
  for (const v of ['', '1700000000000-0', '1.abcdef1_2', '\u{1F600}', '\t', '\x7f', ' ']) t.ok(isSafeFieldValue(v), JSON.stringify(v))
})

t.test('no injection: a name or id with CR/LF is refused by the gateway\'s checks, and unchecked it would have forged a field', async t => {
  const injected = fc.tuple(text, fc.constantFrom('\r', '\n', '\r\n'), fc.constantFrom('data: forged', 'event: forged', 'id: forged', 'retry: 1', ': c', '', 'x'), text)
    .map(([a, br, field, b]) => a + br + field + b)
  fc.assert(fc.property(injected, s => {
    strictEqual(isValidEventName(s), false)
    strictEqual(isSafeFieldValue(s), false)
  }), { numRuns: 1000 })

  // Why the checks are needed: this harness does see a forged field when they are skipped.
  const forgedName = parseBytes(formatEvent('real', 'order\ndata: forged', '1-0'))
  t.same(forgedName.events, [{ event: 'order', id: '1-0', data: 'forged\nreal' }], 'an unchecked name injects a data line')
  const forgedId = parseBytes(formatEvent('real', 'order', '1-0\revent: evil'))
  t.same(forgedId.events, [{ event: 'evil', id: '1-0', data: 'real' }], 'an unchecked id injects an event line')
  t.notOk(isValidEventName('order\ndata: forged'))
  t.notOk(isSafeFieldValue('1-0\revent: evil'))
})

t.test('an id containing NUL would be dropped by a parser: isSafeFieldValue refuses it', async t => {
  t.equal(parseBytes(formatEvent('x', undefined, 'a\0b')).events[0]?.id, undefined, 'the parser ignores the id')
  t.notOk(isSafeFieldValue('a\0b'))
})

t.test('the wire is valid UTF-8 even for data with a lone surrogate (sent as U+FFFD)', async t => {
  const got = parseBytes(formatEvent('a\uD800b', 'n', '1-0'))
  t.same(got.events, [{ event: 'n', id: '1-0', data: 'a\uFFFDb' }])
})

t.test('formatRetry parses as a retry of floor(ms), never negative', async t => {
  fc.assert(fc.property(fc.double({ min: -1e6, max: 2 ** 31, noNaN: true }), ms => {
    const got = parseBytes(Buffer.from(formatRetry(ms)))
    deepStrictEqual(got, { events: [], retries: [Math.max(0, Math.floor(ms))], comments: [], errors: [] })
  }), { numRuns: 1000 })
  t.equal(formatRetry(2500.9), 'retry: 2500\n\n')
  t.equal(formatRetry(-5), 'retry: 0\n\n')
  t.equal(formatRetry(0), 'retry: 0\n\n')
})

t.test('HEARTBEAT parses as one comment and nothing else', async t => {
  t.same(parseBytes(Buffer.from(HEARTBEAT)), { events: [], retries: [], comments: [''], errors: [] })
  t.ok(HEARTBEAT.startsWith(':'), 'a comment line')
  t.ok(HEARTBEAT.endsWith('\n\n'), 'ends with a blank line, so it cannot glue onto a following event')
  // Between two halves of nothing, and between events: the events are intact.
  const got = parseBytes(bytesOf(HEARTBEAT, formatEvent('a', 'e', '1-0'), HEARTBEAT, HEARTBEAT, formatEvent('b', undefined, '2-0')))
  t.same(got.events, [{ event: 'e', id: '1-0', data: 'a' }, { event: undefined, id: '2-0', data: 'b' }])
  t.equal(got.comments.length, 3)
})

t.test('a stream as a session writes it: retry, events, heartbeat, control event without id', async t => {
  const stream = bytesOf(
    formatRetry(2345.6),
    formatEventBody('{"p":1}', 'price'), formatIdLine('1.abcdef1'),
    HEARTBEAT,
    formatEventBody('line1\r\nline2'), formatIdLine('1.abcdef2'),
    formatEvent('{"channels":["topic:a"]}', 'gateway.history-gap'),
    formatRetry(1000)
  )
  t.same(parseBytes(stream), {
    events: [
      { event: 'price', id: '1.abcdef1', data: '{"p":1}' },
      { event: undefined, id: '1.abcdef2', data: 'line1\nline2' },
      { event: 'gateway.history-gap', id: undefined, data: '{"channels":["topic:a"]}' },
    ],
    retries: [2345, 1000],
    comments: [''],
    errors: [],
  })
})

/** The payloads of a complete chunked body; throws if it is not exactly that. */
function dechunkAll (wire: Buffer): Buffer[] {
  const { chunks, rest } = dechunk(wire)
  if (rest !== wire.length) throw new Error(`${wire.length - rest} bytes are not a complete chunk`)
  return chunks
}

t.test('httpChunk and httpChunkOfText: one valid HTTP/1.1 chunk of exactly the bytes given (property)', async t => {
  fc.assert(fc.property(fc.array(fc.string({ unit: codePoint, maxLength: 300 }), { minLength: 1, maxLength: 6 }), texts => {
    const parts = texts.map(x => Buffer.from(x, 'utf8'))
    const bytes = parts.reduce((n, p) => n + p.length, 0)
    const joined = Buffer.concat(parts)
    const chunk = httpChunk(parts, bytes)
    deepStrictEqual(dechunkAll(chunk), [joined])
    const text = texts.join('')
    const framed = httpChunkOfText(text)
    deepStrictEqual(dechunkAll(framed), [joined], 'the text encoded as UTF-8, framed')
    const body = chunkPayload(framed)
    strictEqual(body.toString('utf8'), text, 'chunkPayload is the payload')
    strictEqual(body.buffer, framed.buffer, 'a view into the chunk, not a copy')
    deepStrictEqual(chunkPayload(chunk), joined)
    // A stream of such chunks, as a session writes them one after another.
    deepStrictEqual(dechunkAll(Buffer.concat([chunk, framed])).map(b => b.toString('utf8')), [text, text])
  }), { numRuns: 2000 })
  t.equal(httpChunk([Buffer.from('data: xy\n\n')], 10).toString('latin1'), 'a\r\ndata: xy\n\n\r\n', 'size in lowercase hex')
  t.equal(httpChunkOfText('\u00e9').toString('latin1'), '2\r\n\u00c3\u00a9\r\n', 'the size counts UTF-8 bytes, not characters')
  t.end()
})
