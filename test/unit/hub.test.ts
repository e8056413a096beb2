/**
 * The hub's catch-up reads: clients resuming from the same id at the same
 * time share one read of the source (a reconnect storm asks Redis once, not
 * once per client), get the same events, and a one-channel stream's framing
 * of a batch is built once and is exactly the bytes of each event followed
 * by its id line.
 */
import t from 'tap'
import pino from 'pino'
import { Hub } from '../../src/delivery/hub.js'
import { formatEventBody } from '../../src/core/frame.js'
import { MemorySource } from '../../src/source/memory-source.js'

function setup (): { source: MemorySource, hub: Hub, calls: Record<string, number> } {
  const source = new MemorySource()
  const calls: Record<string, number> = { range: 0, head: 0, has: 0, tail: 0 }
  for (const name of Object.keys(calls)) {
    const original = (source as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>)[name] as (...args: unknown[]) => Promise<unknown>
    ;(source as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      calls[name] = (calls[name] ?? 0) + 1
      return await original.apply(source, args)
    }
  }
  const hub = new Hub(source, source, { maxEventBytes: 65536, maxConcurrentReads: 4, logger: pino({ level: 'silent' }) })
  return { source, hub, calls }
}

t.test('100 concurrent reads of the same page ask the source once and get the same page', async t => {
  const { source, hub, calls } = setup()
  t.teardown(() => source.close())
  const ids = Array.from({ length: 10 }, (_, i) => source.append('k', { data: `e${i}` }))
  const pages = await Promise.all(Array.from({ length: 100 }, async () => await hub.readPage('k', ids[2] as string, 5)))
  t.equal(calls.range, 1, 'one range read')
  t.equal(calls.head, 1, 'one retention check')
  t.same(pages[0]?.events.map(e => e.id), ids.slice(3, 8), 'the five entries after the cursor')
  t.ok(pages.every(p => p === pages[0]), 'every caller got that page')

  // Once settled, a new request reads again (nothing is cached past the read).
  await hub.readPage('k', ids[2] as string, 5)
  t.equal(calls.range, 2, 'a later read is a new read')
  // Different questions are not merged.
  await Promise.all([hub.readPage('k', ids[2] as string, 5), hub.readPage('k', ids[3] as string, 5), hub.readPage('k', ids[2] as string, 4)])
  t.equal(calls.range, 5, 'other cursors or page sizes read for themselves')
})

t.test('concurrent retention checks of the same cursor share one read; a failed read fails every caller and is not kept', async t => {
  const { source, hub, calls } = setup()
  t.teardown(() => source.close())
  const id = source.append('k', { data: 'x' })
  const answers = await Promise.all(Array.from({ length: 50 }, async () => await hub.inspect('k', id)))
  t.equal(calls.has, 1)
  t.ok(answers.every(a => a.exists && a.head === id && a.tail === id))

  const failing = source as unknown as { range: (...args: unknown[]) => Promise<unknown> }
  const working = failing.range
  let failed = 0
  failing.range = async () => {
    failed++
    throw new Error('source down')
  }
  const results = await Promise.allSettled([hub.readPage('k', '0-0', 5), hub.readPage('k', '0-0', 5)])
  t.equal(failed, 1, 'one read for both callers')
  t.same(results.map(r => r.status), ['rejected', 'rejected'], 'both callers see the failure')
  failing.range = working
  const page = await hub.readPage('k', '0-0', 5)
  t.same(page.events.map(e => e.id), [id], 'the next read works: the failure was not kept')
})

t.test('framed(): each event then `id: <entry id>`, built once per batch', async t => {
  const { source, hub } = setup()
  t.teardown(() => source.close())
  const a = source.append('k', { event: 'price', data: '{"p":1}' })
  const b = source.append('k', { data: 'two\nlines' })
  const page = await hub.readPage('k', '0-0', 10)
  const expected = Buffer.concat([
    formatEventBody('{"p":1}', 'price'), Buffer.from(`id: ${a}\n\n`),
    formatEventBody('two\nlines'), Buffer.from(`id: ${b}\n\n`),
  ])
  t.equal(page.framed().toString(), expected.toString())
  t.equal(page.framed(), page.framed(), 'the same Buffer every time')
})
