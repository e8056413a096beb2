/**
 * The latency benches' host diagnostic
 * (bench/host-diagnostics/memory-reclaim.ts): finding the memory-management
 * kernel threads, grouping their CPU samples into bursts, and setting a
 * latency trace against those bursts.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ReclaimSampler, damonSettings, groupBursts, reclaimThreads, summarizeAgainstBursts, type Burst } from '../../bench/host-diagnostics/memory-reclaim.js'

function tree (files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-host-'))
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true })
    writeFileSync(join(dir, path), text)
  }
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

t.test('reclaimThreads finds kdamond, kswapd and kcompactd kernel threads, nothing else', async t => {
  const proc = tree({
    '77/stat': '77 (kdamond.0) S 2 0 0 0 -1 2129984 0 0',
    '40/stat': '40 (kswapd0) S 2 0 0 0 -1 2129984 0 0',
    '41/stat': '41 (kcompactd0) S 2 0 0 0 -1 2129984 0 0',
    '14/stat': '14 (ksoftirqd/0) S 2 0 0 0 -1 69238848 0 0',
    // A user process named like one (its parent is not kthreadd).
    '900/stat': '900 (kdamond) S 1 900 900 0 -1 4194560 0 0',
    // A name with spaces and parentheses does not confuse the parser.
    '901/stat': '901 (a (b) c) S 2 0 0 0 -1 0 0 0',
    'self/stat': 'not a pid',
  })
  const found = reclaimThreads(proc).sort((a, b) => a.pid - b.pid)
  t.same(found, [{ pid: 40, name: 'kswapd0' }, { pid: 41, name: 'kcompactd0' }, { pid: 77, name: 'kdamond.0' }])
  t.same(reclaimThreads(join(proc, 'missing')), [], 'no /proc: none')
})

t.test('damonSettings reads the sysfs admin interface of running kdamonds', async t => {
  const base = 'kdamonds'
  const on = tree({
    [`${base}/nr_kdamonds`]: '2\n',
    [`${base}/0/state`]: 'on\n',
    [`${base}/0/contexts/0/operations`]: 'paddr\n',
    [`${base}/0/contexts/0/monitoring_attrs/intervals/sample_us`]: '500000\n',
    [`${base}/0/contexts/0/monitoring_attrs/intervals/aggr_us`]: '5000000\n',
    [`${base}/0/contexts/0/schemes/0/action`]: 'pageout\n',
    [`${base}/1/state`]: 'off\n',
  })
  t.same(damonSettings(join(on, base)), { kdamonds: [{ operations: 'paddr', sampleMs: 500, aggregateMs: 5000, action: 'pageout' }] })
  const off = tree({ [`${base}/nr_kdamonds`]: '1\n', [`${base}/0/state`]: 'off\n' })
  t.equal(damonSettings(join(off, base)), null, 'none running: null')
  t.equal(damonSettings(join(off, 'missing')), null, 'no DAMON: null')
})

t.test('groupBursts joins samples less than 30 ms apart and drops bursts under 1 ms of CPU', async t => {
  const bursts = groupBursts([
    [1000, 4, ['kdamond.0']],
    [1002, 3, ['kdamond.0']],
    [1020, 2.5, ['kcompactd0']],
    [1540, 0.4, ['kdamond.0']], // a brief wake-up: left out
    [2000, 6, ['kdamond.0']],
  ], 2)
  t.same(bursts, [
    { startMs: 998, endMs: 1020, cpuMs: 9.5, threads: ['kcompactd0', 'kdamond.0'] },
    { startMs: 1998, endMs: 2000, cpuMs: 6, threads: ['kdamond.0'] },
  ])
  t.same(groupBursts([], 2), [])
})

t.test('summarizeAgainstBursts counts events in flight during a burst and takes the p99 of the rest', async t => {
  const bursts: Burst[] = [
    { startMs: 2000, endMs: 2020, cpuMs: 15, threads: ['kdamond.0'] },
    { startMs: 1000, endMs: 1010, cpuMs: 8, threads: ['kdamond.0'] }, // out of order on purpose
  ]
  // 200 events: 196 quick ones away from the bursts (1..196 ms later than 3000 + i * 5),
  // two slow ones in flight during the bursts, one slow one outside them, and one
  // that was sent before a burst and received after it (it overlaps).
  const xaddMs: number[] = []
  const latencyMs: number[] = []
  for (let i = 0; i < 196; i++) {
    xaddMs.push(3000 + i * 5)
    latencyMs.push(1 + (i % 4))
  }
  xaddMs.push(1005, 2010, 5000, 1990)
  latencyMs.push(14, 22, 12, 40)
  const s = summarizeAgainstBursts({ bursts, threads: ['kdamond.0'], trace: { xaddMs, latencyMs, dropped: 3 }, windowMs: 6000, overMs: 10 })
  t.equal(s.events, 200)
  t.equal(s.eventsNotTraced, 3, 'events past the trace are counted apart')
  t.equal(s.bursts, 2)
  t.same(s.burstCpuMs, { min: 8, median: 8, max: 15 })
  t.equal(s.medianIntervalMs, 1000)
  t.equal(s.burstTimePct, 0.5, '30 ms of 6,000')
  t.equal(s.inFlightDuringBurstPct, 1.5, '3 of 200')
  t.equal(s.eventsOver, 4)
  t.equal(s.eventsOverDuringBurstPct, 75, '3 of the 4 slow events')
  // The rest: 196 quick events (1-4 ms) and one of 12 ms; the p99 (the 196th of 197) is 4 ms.
  t.equal(s.p99NotDuringBurstMs, 4)
  t.same(s.list.map(b => [b.atMs, b.ms, b.eventsOver]), [[1000, 10, 1], [2000, 20, 2]])

  const none = summarizeAgainstBursts({ bursts: [], threads: [], trace: { xaddMs: [], latencyMs: [] }, windowMs: 1000, overMs: 10 })
  t.equal(none.burstCpuMs, null)
  t.equal(none.medianIntervalMs, null)
  t.equal(none.eventsOverDuringBurstPct, null, 'no slow events: no share')
  t.equal(none.p99NotDuringBurstMs, null)
})

/** Milliseconds this process's main thread has run (what the sampler reads for a thread). */
function mainThreadRunMs (): number {
  return Number(readFileSync(`/proc/${process.pid}/schedstat`, 'latin1').split(' ')[0]) / 1e6
}

t.test('ReclaimSampler sees a thread run: here, this process spinning for 30 ms of CPU', async t => {
  const sampler = ReclaimSampler.start(2, [{ pid: process.pid, name: 'this process' }])
  t.ok(sampler !== undefined, 'started on a readable schedstat')
  if (sampler === undefined) return
  await new Promise(resolve => setTimeout(resolve, 10))
  // Spin for 30 ms of CPU, not of wall time: on a loaded machine the thread is not always running.
  const until = mainThreadRunMs() + 30
  while (mainThreadRunMs() < until) { /* spin */ }
  await new Promise(resolve => setTimeout(resolve, 10))
  const { bursts, ran } = sampler.stop()
  t.same(ran, ['this process'])
  const cpu = bursts.reduce((sum, b) => sum + b.cpuMs, 0)
  t.ok(cpu >= 29.5, `the spin is counted (${cpu.toFixed(1)} ms of CPU in ${bursts.length} bursts)`)
  t.equal(ReclaimSampler.start(2, [{ pid: 0x7fffffff, name: 'gone' }]), undefined, 'no readable thread: no sampler')
})
