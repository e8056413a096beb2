/**
 * Runs the short version of every bench program, one after the other, and
 * prints a table: question, figure, ceiling, ratio, target, pass/fail.
 * Short = the sizes the targets are stated for, with short windows. Any
 * parameter already set in the environment wins over these defaults. The
 * benches that read many keys run three times: plain Redis with no server
 * setting (the default reader, `auto`: client tracking where Redis gives it),
 * Redis with keyspace notifications (READER_MODE=notify) and the sharded
 * blocking reader (READER_MODE=block). Each row names the reader that ran.
 * `BENCH_ONLY=fanout,resume` runs a subset. The table also goes to
 * bench/results/summary.md and the lines to bench/results/summary.json.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BenchSummary } from './lib/common.js'
import { RESULTS_DIR } from './lib/paths.js'

interface Program {
  readonly name: string
  readonly env: Record<string, string>
  readonly timeoutMs: number
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
}

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
        const parsed = JSON.parse(line) as { summary: BenchSummary, context?: { loadgenCpuPct: number, otherCpuPct: number } }
        if (code !== 0) throw new Error(`exit ${String(code)}`)
        resolve({ name: title, summary: parsed.summary, seconds, ...(parsed.context === undefined ? {} : { context: parsed.context }) })
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

async function main (): Promise<void> {
  const only = (process.env.BENCH_ONLY ?? '').split(',').map(s => s.trim()).filter(s => s.length > 0)
  const rows: Row[] = []
  for (const p of PROGRAMS) {
    if (only.length > 0 && !only.includes(p.name)) continue
    rows.push(await runOne(p))
  }
  const text = table(rows)
  process.stdout.write(text + '\n')
  const dir = process.env.BENCH_RESULTS_DIR ?? RESULTS_DIR
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'summary.md'), `${new Date().toISOString()}\n\n${text}\n`)
  writeFileSync(join(dir, 'summary.json'), rows.map(r => JSON.stringify(r)).join('\n') + '\n')
  process.exitCode = rows.some(r => r.error !== undefined) ? 1 : 0
}

void main()
