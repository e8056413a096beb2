/**
 * Token expiry of every stream under one timer: each item is reported once,
 * when its deadline has passed, in deadline order; an item removed before
 * its deadline is never reported and nothing of it stays behind.
 */
import t from 'tap'
import fc from 'fast-check'
import { Deadlines, type DeadlineSlot } from '../../src/core/deadlines.js'

interface Item extends DeadlineSlot { readonly name: number }
const item = (name: number): Item => ({ name, deadlineAt: 0, deadlineIndex: -1 })

t.test('any mix of add, re-add, remove and time passing reports exactly the due items, in order', async t => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('add' as const), item: fc.nat(30), at: fc.nat(300) }),
    fc.record({ kind: fc.constant('remove' as const), item: fc.nat(30) }),
    fc.record({ kind: fc.constant('advance' as const), by: fc.nat(200) })
  )
  fc.assert(fc.property(fc.array(op, { minLength: 20, maxLength: 300 }), ops => {
    let now = 0
    const reported: Array<[number, number]> = []
    const queue = new Deadlines<Item>(i => { reported.push([i.name, i.deadlineAt]) }, () => now)
    const items = Array.from({ length: 31 }, (_, n) => item(n))
    // The reference: a plain map of what is queued.
    const model = new Map<number, number>()
    const expected: Array<[number, number]> = []
    const due = (): void => {
      const ready = [...model].filter(([, at]) => at <= now).sort((a, b) => a[1] - b[1])
      for (const [name] of ready) model.delete(name)
      expected.push(...ready)
    }
    for (const o of ops) {
      if (o.kind === 'add') {
        queue.add(items[o.item] as Item, o.at)
        model.set(o.item, o.at)
      } else if (o.kind === 'remove') {
        queue.remove(items[o.item] as Item)
        model.delete(o.item)
      } else {
        now += o.by
        queue.runDue()
        due()
        // Exactly the due items, each once, in deadline order (ties in any order).
        const key = (r: Array<[number, number]>): string => r.map(([n, at]) => `${n}@${at}`).sort().join(',')
        if (key(reported) !== key(expected)) return false
        if (reported.some(([, at], i) => i > 0 && at < (reported[i - 1] as [number, number])[1])) return false
        reported.length = 0
        expected.length = 0
      }
      if (queue.size !== model.size) return false
    }
    queue.stop()
    return items.every(i => model.has(i.name) === (i.deadlineIndex >= 0))
  }), { numRuns: 3000 })
  t.pass('3000 random schedules matched the reference')
})

t.test('within one run, items come out in deadline order', async t => {
  let now = 0
  const out: number[] = []
  const queue = new Deadlines<Item>(i => { out.push(i.deadlineAt) }, () => now)
  const deadlines = Array.from({ length: 500 }, (_, n) => (n * 7919) % 1000)
  deadlines.forEach((at, n) => { queue.add(item(n), at) })
  now = 1000
  queue.runDue()
  t.same(out, [...deadlines].sort((a, b) => a - b))
  t.equal(queue.size, 0)
})

t.test('the real timer fires at the earliest deadline, follows an earlier add, and skips a removed item', async t => {
  const seen: string[] = []
  const queue = new Deadlines<Item & { label: string }>(i => { seen.push(i.label) })
  t.teardown(() => { queue.stop() })
  const now = Date.now()
  const late = { ...item(1), label: 'late' }
  const early = { ...item(2), label: 'early' }
  const gone = { ...item(3), label: 'gone' }
  // Wide margins: a loaded machine delays timers, never fires them early.
  queue.add(late, now + 1500)
  queue.add(gone, now + 10)
  queue.add(early, now + 50)
  queue.remove(gone)
  await new Promise(resolve => setTimeout(resolve, 500))
  t.same(seen, ['early'], 'only the earliest remaining item is due by then')
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.same(seen, ['early', 'late'])
  t.equal(gone.deadlineIndex, -1, 'a removed item is marked as not queued')
})

t.test('a deadline beyond what a Node timer takes does not fire at once', async t => {
  const seen: number[] = []
  const queue = new Deadlines<Item>(i => { seen.push(i.name) })
  t.teardown(() => { queue.stop() })
  queue.add(item(1), Date.now() + 40 * 24 * 3600 * 1000)
  await new Promise(resolve => setTimeout(resolve, 30))
  t.same(seen, [])
  t.equal(queue.size, 1)
})
