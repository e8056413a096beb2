/**
 * Summarises a `node --cpu-prof` profile: self time by function and by file
 * (or package), the hot spots in plain text.
 *
 *   BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" node dist/bench/fanout.js
 *   node dist/bench/profile-top.js prof/*.cpuprofile [rows]
 *   node dist/bench/profile-top.js prof/x.cpuprofile --callers=writev --depth=4
 */
import { readFileSync } from 'node:fs'

interface Node {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

function where (url: string): string {
  if (url === '') return '(native/vm)'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return (rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : rest[0]) ?? url
  }
  if (url.startsWith('node:')) return url
  const src = url.indexOf('/dist/')
  return src >= 0 ? url.slice(src + 1) : url
}

/** Where the self time of functions named `name` comes from: their callers, `depth` frames up. */
function callers (p: Profile, name: string, depth: number, rows: number): string[] {
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i] as number, (self.get(p.samples[i] as number) ?? 0) + (p.timeDeltas[i] ?? 0))
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const agg = new Map<string, number>()
  for (const [id, us] of self) {
    const n = byId.get(id)
    if (n?.callFrame.functionName !== name) continue
    const chain: string[] = []
    let up = parent.get(id)
    while (up !== undefined && chain.length < depth) {
      const f = byId.get(up)?.callFrame
      if (f !== undefined) chain.push(`${f.functionName === '' ? '(anonymous)' : f.functionName} ${where(f.url)}:${f.lineNumber + 1}`)
      up = parent.get(up)
    }
    const key = chain.join(' < ')
    agg.set(key, (agg.get(key) ?? 0) + us)
  }
  return [...agg].sort((a, b) => b[1] - a[1]).slice(0, rows).map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`)
}

function summarise (file: string, rows: number): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const self = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0))
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const fn = new Map<string, number>()
  const mod = new Map<string, number>()
  for (const [id, us] of self) {
    const n = byId.get(id)
    if (n === undefined) continue
    const f = n.callFrame
    const name = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${where(f.url)}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`
    fn.set(name, (fn.get(name) ?? 0) + us)
    const m = where(f.url)
    mod.set(m, (mod.get(m) ?? 0) + us)
  }
  const pct = (us: number): string => `${((100 * us) / total).toFixed(1).padStart(5)}%`
  const top = (m: Map<string, number>): string[] => [...m].sort((a, b) => b[1] - a[1]).slice(0, rows).map(([k, v]) => `${pct(v)}  ${k}`)
  return [
    `${file}: ${(total / 1e6).toFixed(2)} s sampled`,
    '-- self time by function --', ...top(fn),
    '-- self time by file or package --', ...top(mod),
  ].join('\n')
}

const files = process.argv.slice(2).filter(a => a.endsWith('.cpuprofile'))
const callersOf = process.argv.slice(2).find(a => a.startsWith('--callers='))?.slice('--callers='.length)
const depth = Number(process.argv.slice(2).find(a => a.startsWith('--depth='))?.slice('--depth='.length) ?? 3)
const rows = Number(process.argv.slice(2).find(a => /^\d+$/.test(a)) ?? 25)
if (files.length === 0) {
  process.stderr.write('usage: node dist/bench/profile-top.js <file.cpuprofile>... [rows]\n')
  process.exit(2)
}
for (const f of files) {
  if (callersOf === undefined) {
    process.stdout.write(summarise(f, rows) + '\n\n')
  } else {
    const p = JSON.parse(readFileSync(f, 'utf8')) as Profile
    process.stdout.write([`${f}: callers of ${callersOf} (${depth} frames up)`, ...callers(p, callersOf, depth, rows)].join('\n') + '\n\n')
  }
}
