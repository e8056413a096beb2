/**
 * The jittered `retry:`: every value from the base to base + jitter can
 * come out, and nothing outside it (a drain spreads its clients over that
 * range, never below the base).
 */
import t from 'tap'
import { jitteredRetryMs } from '../../src/core/retry.js'

t.test('from base to base + jitter, both included, whole milliseconds', async t => {
  t.equal(jitteredRetryMs(1000, 500, () => 0), 1000, 'the lowest draw is the base')
  t.equal(jitteredRetryMs(1000, 500, () => 0.9999999), 1500, 'the highest draw is base + jitter')
  t.equal(jitteredRetryMs(1000, 500, () => 0.5), 1250)
  const seen = new Set<number>()
  for (let i = 0; i < 2000; i++) seen.add(jitteredRetryMs(100, 3))
  t.same([...seen].sort(), [100, 101, 102, 103], 'every value comes out, and none outside')
})

t.test('no jitter (or a negative one) is the base exactly', async t => {
  t.equal(jitteredRetryMs(2000, 0, () => 0.9999), 2000)
  t.equal(jitteredRetryMs(2000, -5, () => 0.9999), 2000)
})
