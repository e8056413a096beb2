import t from 'tap'
import { CONTROL_EVENTS, CONTROL_EVENT_PREFIX, classifyGap, gapPayload, tokenExpiredPayload, unavailablePayload, type GapFacts } from '../../src/core/protocol.js'
import { cursorForTime } from '../../src/core/stream-id.js'

const facts = (f: Partial<GapFacts> & Pick<GapFacts, 'cursor'>): GapFacts =>
  ({ head: '100-0', tail: '200-0', removed: undefined, epochMs: undefined, resumedFromMs: undefined, ...f })

t.test('classifyGap: where a cursor that names no retained entry continues, and why', async t => {
  t.same(classifyGap(facts({ cursor: '50-0' })), { reason: 'trimmed', cursor: '99-18446744073709551615' }, 'older than the head: trimmed, from the oldest retained entry')
  t.same(classifyGap(facts({ cursor: '50-0', head: undefined, tail: undefined })), { reason: 'trimmed', cursor: '0-0' }, 'the stream is gone: trimmed, from the start')
  t.same(classifyGap(facts({ cursor: '300-0' })), { reason: 'ahead', cursor: '200-0' }, 'newer than the tail: ahead, from the newest entry')
  t.same(classifyGap(facts({ cursor: '150-0' })), { reason: 'missing', cursor: '150-0' }, 'inside the range: missing, right after the cursor')
  t.equal(classifyGap(facts({ cursor: '99-18446744073709551615' })), undefined, 'just before the head (where a reported gap leaves a cursor): nothing lost')
  t.equal(classifyGap(facts({ cursor: cursorForTime(150) })), undefined, 'a since= moment inside the range: nothing lost')
})

t.test('classifyGap: a cursor of 0-0 (the channel was empty when it was set)', async t => {
  t.equal(classifyGap(facts({ cursor: '0-0', removed: 0 })), undefined, 'nothing removed since: nothing lost')
  t.equal(classifyGap(facts({ cursor: '0-0', removed: undefined })), undefined, 'the engine cannot tell: not reported')
  t.same(classifyGap(facts({ cursor: '0-0', removed: 3 })), { reason: 'trimmed', cursor: '99-18446744073709551615' }, 'entries removed since: trimmed')
  t.equal(classifyGap(facts({ cursor: '0-0', head: undefined, tail: undefined, removed: 3 })), undefined, 'still empty: nothing to miss')
})

t.test('classifyGap: a resume cursor older than the engine\'s current dataset is told reset', async t => {
  const reset = { epochMs: 1000, resumedFromMs: 900 }
  t.same(classifyGap(facts({ cursor: '900-0', ...reset })), { reason: 'reset', cursor: '99-18446744073709551615' }, 'a named position from before the epoch')
  t.same(classifyGap(facts({ cursor: '0-0', ...reset, removed: 0 })), { reason: 'reset', cursor: '99-18446744073709551615' }, 'a channel that was empty at connect, whatever was removed')
  t.same(classifyGap(facts({ cursor: '0-0', head: undefined, tail: undefined, ...reset })), { reason: 'reset', cursor: '0-0' }, 'even if it is empty now')
  t.equal(classifyGap(facts({ cursor: '0-0', removed: 0, epochMs: 1000, resumedFromMs: 1500 })), undefined, 'a cursor made after the epoch began: the usual rules')
  t.equal(classifyGap(facts({ cursor: '0-0', removed: 0, epochMs: 1000 })), undefined, 'not a resume (or already checked): the usual rules')
  t.same(classifyGap(facts({ cursor: '1200-0', head: '1100-0', tail: '1300-0', epochMs: 1000, resumedFromMs: 1200 })), { reason: 'missing', cursor: '1200-0' }, 'a position after the epoch: the usual rules')
})

t.test('control events and their payloads', async t => {
  t.ok(Object.values(CONTROL_EVENTS).every(name => name.startsWith(CONTROL_EVENT_PREFIX)))
  t.same(JSON.parse(gapPayload([{ channel: 'topic:a', reason: 'reset' }])), { channels: [{ channel: 'topic:a', reason: 'reset' }] })
  t.same(JSON.parse(tokenExpiredPayload()).reason, 'token-expired')
  for (const reason of ['draining', 'at-capacity', 'source-unavailable'] as const) {
    const p = JSON.parse(unavailablePayload(reason)) as { reason: string, message: string }
    t.equal(p.reason, reason)
    t.ok(p.message.length > 10)
  }
})
