/**
 * Runs the short version of every bench program, one after the other, and
 * prints a table: question, figure, ceiling, ratio, target, pass/fail.
 * Short = the sizes the targets are stated for, with short windows. Any
 * parameter already set in the environment wins over these defaults. The
 * benches that read many keys run three times: plain Redis with no server
 * setting (the default reader, `auto`: client tracking where Redis gives it),
 * Redis with keyspace notifications (READER_MODE=notify) and the sharded
 * blocking reader (READER_MODE=block). Each row names the reader that ran.
 * Fan-out and per-user also run on a Redis Cluster (3 masters, 3 replicas)
 * beside one Redis (BENCH_ENGINE=cluster): a second table sets the two side
 * by side, Redis CPU per master. `BENCH_ONLY=fanout,resume` runs a subset,
 * by program name or by tag (`BENCH_ONLY=cluster`: the cluster rows only).
 * The tables also go to bench/results/summary.md and the lines to
 * bench/results/summary.json.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readerAndFeed, type ClusterComparison, type EngineFigures } from './lib/cluster-compare.js'
import type { BenchSummary } from './lib/common.js'
import { RESULTS_DIR } from './lib/paths.js'

interface Program {
  readonly name: string
  readonly env: Record<string, string>
  readonly timeoutMs: number
  /** More names BENCH_ONLY selects it by. */
  readonly tags?: readonly string[]
}

/** Redis with keyspace notifications for streams, read by the notify reader. */
const NOTIFY = { BENCH_REDIS_ARGS: '--notify-keyspace-events Kt', BENCH_GATEWAY_ENV: 'READER_MODE=notify', BENCH_LABEL: 'notify' }
/** Plain Redis read by the sharded blocking reader (the default before client tracking). */
const BLOCK = { BENCH_GATEWAY_ENV: 'READER_MODE=block', BENCH_LABEL: 'block' }

const PROGRAMS: readonly Program[] = [
  { name: 'fanout', env: { FANOUT_CLIENTS: '2000', FANOUT_RATE: '100' }, timeoutMs: 180_000 },
  // One event per write: the per-stream cost, not batching, decides here.
  { name: 'fanout', env: { FANOUT_CLIENTS: '2000', FANOUT_RATE: '20', BENCH_LABEL: '20 ev/s' }, timeoutMs: 180_000 },
  // HTTP/2 (h2c, 100 streams per connection) beside HTTP/1.1, the ratio of deliveries per CPU-second.
  { name: 'fanout', env: { FANOUT_CLIENTS: '2000', FANOUT_RATE: '100', FANOUT_PROTOCOL: 'h2', BENCH_LABEL: 'h2 / h1' }, timeoutMs: 180_000 },
  { name: 'per-user', env: { PERUSER_CLIENTS: '10000', PERUSER_RATE: '5000' }, timeoutMs: 300_000 },
  { name: 'per-user', env: { PERUSER_CLIENTS: '10000', PERUSER_RATE: '5000', ...NOTIFY }, timeoutMs: 300_000 },
  { name: 'per-user', env: { PERUSER_CLIENTS: '10000', PERUSER_RATE: '5000', ...BLOCK }, timeoutMs: 300_000 },
  // Issue 14: the default reader within 1.2x of notify's p99 at 2,000 keys as at 10,000.
  { name: 'per-user', env: { PERUSER_CLIENTS: '2000', PERUSER_RATE: '2000', BENCH_LABEL: '2,000 keys' }, timeoutMs: 300_000 },
  { name: 'per-user', env: { PERUSER_CLIENTS: '2000', PERUSER_RATE: '2000', ...NOTIFY, BENCH_LABEL: 'notify, 2,000 keys' }, timeoutMs: 300_000 },
  // Issue 14: per-user and fan-out on a Redis Cluster beside one Redis, Redis CPU per master.
  // Fan-out at 20 ev/s: below saturation, so latency and loss compare the engines, not a queue.
  { name: 'per-user', tags: ['cluster'], env: { PERUSER_CLIENTS: '10000', PERUSER_RATE: '5000', BENCH_ENGINE: 'cluster', BENCH_LABEL: 'cluster' }, timeoutMs: 300_000 },
  { name: 'fanout', tags: ['cluster'], env: { FANOUT_CLIENTS: '2000', FANOUT_RATE: '20', BENCH_ENGINE: 'cluster', BENCH_LABEL: 'cluster' }, timeoutMs: 180_000 },
  { name: 'channels', env: { CHANNELS_SIZES: '10,1000,10000', CHANNELS_RATE: '10000' }, timeoutMs: 600_000 },
  { name: 'channels', env: { CHANNELS_SIZES: '10,1000,10000', CHANNELS_RATE: '10000', ...NOTIFY }, timeoutMs: 600_000 },
  { name: 'idle-memory', env: { IDLE_CONNECTIONS: '10000' }, timeoutMs: 300_000 },
  { name: 'connect-rate', env: { CONNECT_OPEN: '10000' }, timeoutMs: 300_000 },
  { name: 'connect-rate', env: { CONNECT_OPEN: '10000', ...NOTIFY }, timeoutMs: 300_000 },
  { name: 'connect-rate', env: { CONNECT_OPEN: '10000', ...BLOCK }, timeoutMs: 300_000 },
  { name: 'resume', env: { RESUME_CLIENTS: '100', RESUME_BEHIND: '5000', RESUME_STORM_CLIENTS: '10000', RESUME_STORM_BEHIND: '50' }, timeoutMs: 600_000 },
]

interface Row {
  readonly name: string
  readonly summary?: BenchSummary
  readonly error?: string
  readonly seconds: number
  /** Load generator and other processes' CPU % during the main gateway window. */
  readonly context?: { loadgenCpuPct: number, otherCpuPct: number }
  /** A scenario on a cluster beside one Redis (BENCH_ENGINE=cluster). */
  readonly comparison?: Comparison
}

type Comparison = ClusterComparison & { readonly scenario: string, readonly clients: number, readonly rate: number }

async function runOne (p: Program): Promise<Row> {
  const started = Date.now()
  const title = p.env.BENCH_LABEL === undefined ? p.name : `${p.name} (${p.env.BENCH_LABEL})`
  const env: Record<string, string | undefined> = { ...p.env, BENCH_TIMEOUT_MS: String(p.timeoutMs), ...process.env }
  const entry = fileURLToPath(new URL(`./${p.name}.js`, import.meta.url))
  process.stderr.write(`[run-all] ${title} ${Object.keys(p.env).map(k => `${k}=${env[k] ?? ''}`).join(' ')}\n`)
  return await new Promise(resolve => {
    const child = spawn(process.execPath, [entry], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (c: string) => { out += c })
    child.on('exit', code => {
      const seconds = Math.round((Date.now() - started) / 100) / 10
      const line = out.trim().split('\n').pop() ?? ''
      try {
        const parsed = JSON.parse(line) as { summary: BenchSummary, context?: { loadgenCpuPct: number, otherCpuPct: number }, comparison?: Comparison }
        if (code !== 0) throw new Error(`exit ${String(code)}`)
        resolve({
          name: title,
          summary: parsed.summary,
          seconds,
          ...(parsed.context === undefined ? {} : { context: parsed.context }),
          ...(parsed.comparison === undefined ? {} : { comparison: parsed.comparison }),
        })
      } catch {
        resolve({ name: title, error: `exit ${String(code)}`, seconds })
      }
    })
  })
}

function fmt (n: number | null | undefined): string {
  if (n === null || n === undefined) return '-'
  if (!Number.isFinite(n)) return String(n)
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US')
  if (Math.abs(n) >= 1) return String(Math.round(n * 100) / 100)
  return String(Number(n.toPrecision(3)))
}

function table (rows: readonly Row[]): string {
  const head = ['question', 'figure', 'unit', 'ceiling', 'ratio', 'target', 'result', 'loadgen CPU', 'other CPU', 'time']
  const lines = rows.map(r => {
    const s = r.summary
    const time = `${r.seconds} s`
    if (s === undefined) return [r.name, '-', '-', '-', '-', '-', `ERROR (${r.error ?? '?'})`, '-', '-', time]
    const result = s.pass === null ? 'n/a' : s.pass ? 'pass' : 'FAIL'
    const pct = (n: number | undefined): string => n === undefined ? '-' : `${Math.round(n)}%`
    return [s.question, fmt(s.figure), s.unit, fmt(s.ceiling), fmt(s.ratio), s.target, result + (s.atTargetSize ? '' : ' (below target size)'), pct(r.context?.loadgenCpuPct), pct(r.context?.otherCpuPct), time]
  })
  const md = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...lines.map(l => `| ${l.join(' | ')} |`)]
  const notes = rows.filter(r => r.summary?.note !== undefined).map(r => `- ${r.summary?.question ?? r.name}: ${r.summary?.note ?? ''}`)
  return [...md, ...(notes.length > 0 ? ['', ...notes] : [])].join('\n')
}

/**
 * The cluster rows side by side with one Redis: three lines per scenario
 * (one Redis, the cluster, cluster / one Redis), Redis CPU of each master
 * and replica from /proc. Empty when no cluster row ran.
 */
function clusterTable (rows: readonly Row[]): string {
  const runs = rows.flatMap(r => (r.comparison === undefined ? [] : [r.comparison]))
  if (runs.length === 0) return ''
  const head = ['scenario', 'engine', 'reader (feed seen on Redis)', 'delivered', 'lost', 'duplicates', 'p50 ms', 'p99 ms', 'gateway CPU', 'µs per delivery', 'Redis CPU', 'per master', 'replicas']
  const pct = (n: number): string => `${fmt(n)}%`
  const x = (n: number | null): string => n === null ? '-' : `${fmt(n)}x`
  const count = (f: EngineFigures, n: number | null): string => n === null ? '-' : `${fmt(n)}${f.exact ? '' : ' (not exact)'}`
  const engineLine = (f: EngineFigures, c: Comparison): string[] => [
    f.engine === 'standalone' ? 'one Redis' : `cluster, ${c.masters} masters + ${c.masters * c.replicas} replicas`,
    readerAndFeed(f),
    f.received === null ? `${f.windowDeliveredPct}% in window` : `${fmt(f.received)} of ${fmt(f.expected)}`,
    count(f, f.lost),
    count(f, f.duplicates),
    fmt(f.p50Ms),
    fmt(f.p99Ms),
    pct(f.gatewayCpuPct),
    fmt(f.microsPerDelivery),
    pct(f.redisCpuPct),
    f.engine === 'standalone' ? '-' : f.masters.map(m => pct(m.cpuPct)).join(' / '),
    f.replicas.length === 0 ? '-' : f.replicas.map(m => pct(m.cpuPct)).join(' / '),
  ]
  const lines = runs.flatMap(c => {
    const scenario = `${c.scenario}, ${fmt(c.clients)} clients, ${fmt(c.rate)} ev/s`
    const r = c.ratios
    return [
      [scenario, ...engineLine(c.standalone, c)],
      ['', ...engineLine(c.cluster, c)],
      ['', 'cluster / one Redis', '', '', '', '', x(r.p50), x(r.p99), x(r.gatewayCpu), x(r.microsPerDelivery), x(r.redisCpu), r.redisCpuPerMaster.map(x).join(' / '), ''],
    ]
  })
  return [
    'Redis Cluster beside one Redis (same run, the gateway on both; Redis CPU from /proc, masters summed; delivered, lost, duplicates: every entry produced, counted after production stopped):',
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...lines.map(l => `| ${l.join(' | ')} |`),
  ].join('\n')
}

async function main (): Promise<void> {
  const only = (process.env.BENCH_ONLY ?? '').split(',').map(s => s.trim()).filter(s => s.length > 0)
  const rows: Row[] = []
  for (const p of PROGRAMS) {
    if (only.length > 0 && !only.includes(p.name) && !(p.tags ?? []).some(t => only.includes(t))) continue
    rows.push(await runOne(p))
  }
  const cluster = clusterTable(rows)
  const text = table(rows) + (cluster === '' ? '' : `\n\n${cluster}`)
  process.stdout.write(text + '\n')
  const dir = process.env.BENCH_RESULTS_DIR ?? RESULTS_DIR
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'summary.md'), `${new Date().toISOString()}\n\n${text}\n`)
  writeFileSync(join(dir, 'summary.json'), rows.map(r => JSON.stringify(r)).join('\n') + '\n')
  process.exitCode = rows.some(r => r.error !== undefined) ? 1 : 0
}

void main()
