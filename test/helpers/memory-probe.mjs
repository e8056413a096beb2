/**
 * Preloaded into a gateway process by tests (`node --expose-gc --import
 * memory-probe.mjs dist/src/main.js`): on SIGUSR2 it collects garbage and
 * prints what the process still holds, one JSON line on stderr, so a test can
 * tell memory the gateway retains from garbage not yet collected.
 */
import { readFileSync } from 'node:fs'

process.on('SIGUSR2', () => {
  const collect = globalThis.gc
  if (typeof collect === 'function') { collect(); collect() }
  const m = process.memoryUsage()
  const status = readFileSync('/proc/self/status', 'utf8')
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024
  process.stderr.write(`memory-probe ${JSON.stringify({ ...m, vmRss: rss, gc: typeof collect === 'function' })}\n`)
})
