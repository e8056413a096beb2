/**
 * The processes a bench starts and measures: a throwaway redis-server on a
 * unix socket (or loopback TCP), the gateway (`node dist/src/main.js`) and
 * the ceiling server; a Redis Cluster is in cluster.ts.
 * Everything listens on loopback only. Each child is killed by its PID, and
 * only children started here are ever killed (also when the bench crashes).
 *
 * CPU of a child comes from /proc/<pid>/stat (utime + stime, every thread),
 * RSS from /proc/<pid>/status; Redis's own view from INFO cpu.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { CEILING_ENTRY, GATEWAY_ENTRY, MEMORY_PROBE, ROOT } from './paths.js'
import { BENCH_SECRET } from './token.js'

const cleanups = new Set<() => void>()
let hooked = false

/** Registers a synchronous last-resort cleanup (kill a child by PID); runs at exit. */
export function onCleanup (fn: () => void): () => void {
  cleanups.add(fn)
  if (!hooked) {
    hooked = true
    process.on('exit', runCleanups)
  }
  return () => { cleanups.delete(fn) }
}

export function runCleanups (): void {
  for (const fn of cleanups) {
    try { fn() } catch {}
  }
  cleanups.clear()
}

/** Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on Linux). */
const CLK_TCK = 100

/** CPU seconds (user + system, all threads) a process used so far; NaN if it is gone. */
export function procCpuSeconds (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // After the command name: state is field 3, utime 14, stime 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch {
    return NaN
  }
}

/** Resident set size in bytes; NaN if the process is gone. */
export function procRssBytes (pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? NaN : Number(m[1]) * 1024
  } catch {
    return NaN
  }
}

/** Busy and total CPU seconds of the whole machine (/proc/stat), to see what else ran. */
export function machineCpuSeconds (): { busy: number, total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  const idle = (v[3] ?? 0) + (v[4] ?? 0)
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK }
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function waitForExit (child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true
  return await new Promise(resolve => {
    const timer = setTimeout(() => { resolve(false) }, ms)
    child.once('exit', () => { clearTimeout(timer); resolve(true) })
  })
}

/** SIGTERM, then SIGKILL after `graceMs`; by PID, this child only. */
async function stopChild (child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  process.kill(child.pid, 'SIGTERM')
  if (!await waitForExit(child, graceMs)) {
    process.kill(child.pid, 'SIGKILL')
    await waitForExit(child, 2000)
  }
}

/** Last resort at exit: kill this child by PID and remove its temp folder. */
function killOnExit (child: ChildProcess, dir: string): () => void {
  return onCleanup(() => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
}

function tail (file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** Where a producer connects: a unix socket path, or a loopback TCP port. */
export type RedisEndpoint = string | { readonly host: string, readonly port: number }

/** One Redis process of a bench, for per-node CPU (a cluster has several). */
export interface RedisNode {
  /** `host:port`, or `standalone` for the unix-socket Redis. */
  readonly address: string
  readonly role: 'master' | 'replica'
  readonly pid: number
}

/** What a measurement window asks of the Redis side, one Redis or a cluster. */
export interface MeasuredRedis {
  /** Redis CPU seconds so far: the one server, or every master of a cluster together. */
  cpuSeconds (): Promise<number>
  /** Calls and microseconds per command, from INFO commandstats (a cluster: its masters summed). */
  commandStats (): Promise<Record<string, { calls: number, usec: number }>>
  /** Every Redis process, so a window can give each one's CPU (from /proc). */
  nodes (): readonly RedisNode[]
  /** Which live feeds the gateway holds on each master (CLIENT LIST), see {@link feedsOf}. */
  feeds (): Promise<NodeFeeds[]>
}

export interface BenchRedis extends MeasuredRedis {
  readonly url: string
  /** The unix socket, when the Redis listens on one. */
  readonly socket: string
  /** Where a producer connects (the socket, or host and port with `tcp`). */
  readonly endpoint: RedisEndpoint
  readonly pid: number
  /** A command client for setup and reads (not the hot producer path). */
  readonly client: Redis
  stop (): Promise<void>
}

/**
 * The live feeds one Redis node serves: keyspace-notification
 * subscriptions (channels and patterns under `__keyspace@`, the notify
 * feed) and connections with client tracking on (CLIENT LIST flag `t`, the
 * track feed). The bench's own connections hold neither, so this is what
 * the gateway ran, whatever it calls it.
 */
export interface NodeFeeds {
  readonly address: string
  /** Keyspace channels subscribed plus patterns (PUBSUB CHANNELS, PUBSUB NUMPAT). */
  readonly notify: number
  /** Connections with client tracking on. */
  readonly track: number
}

/** `notify`, `track`, `notify+track`, or `none` when no node had a feed. */
export function feedName (feeds: readonly NodeFeeds[]): string {
  const kinds = [feeds.some(f => f.notify > 0) ? 'notify' : '', feeds.some(f => f.track > 0) ? 'track' : ''].filter(k => k !== '')
  return kinds.length === 0 ? 'none' : kinds.join('+')
}

/** Counts the feeds on one node. */
export async function feedsOf (client: Redis, address: string): Promise<NodeFeeds> {
  const channels = await client.call('PUBSUB', 'CHANNELS', '__keyspace@*') as unknown[]
  const patterns = Number(await client.call('PUBSUB', 'NUMPAT'))
  let track = 0
  for (const line of String(await client.call('CLIENT', 'LIST')).split('\n')) {
    const flags = /(?:^| )flags=(\S*)/.exec(line)?.[1] ?? ''
    if (flags.includes('t')) track++
  }
  return { address, notify: channels.length + patterns, track }
}

/** INFO commandstats as calls and microseconds per command. */
export async function commandStatsOf (client: Redis): Promise<Record<string, { calls: number, usec: number }>> {
  const out: Record<string, { calls: number, usec: number }> = {}
  for (const m of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    out[m[1] as string] = { calls: Number(m[2]), usec: Number(m[3]) }
  }
  return out
}

export interface RedisOptions {
  /** Listen on a free loopback TCP port instead of a unix socket (as a cluster's nodes do). */
  readonly tcp?: boolean
  /** redis-server arguments; default BENCH_REDIS_ARGS. */
  readonly args?: readonly string[]
}

export async function startRedis (opts: RedisOptions = {}): Promise<BenchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-bench-redis-'))
  const socket = join(dir, 'redis.sock')
  const port = opts.tcp === true ? await freePort() : 0
  const child = spawn('redis-server', [
    ...(opts.tcp === true ? ['--port', String(port), '--bind', '127.0.0.1'] : ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700']),
    '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, 'redis.log'),
    '--maxclients', '1000',
    // e.g. BENCH_REDIS_ARGS="--notify-keyspace-events Kt" (the gateway's notify reader)
    ...opts.args ?? nodeArgsFromEnv('BENCH_REDIS_ARGS'),
  ], { stdio: 'ignore' })
  const unhook = killOnExit(child, dir)
  const client = new Redis({ ...(opts.tcp === true ? { host: '127.0.0.1', port } : { path: socket }), protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  client.on('error', () => {})
  const deadline = Date.now() + 10000
  for (;;) {
    try {
      await client.connect()
      await client.ping()
      break
    } catch {
      client.disconnect()
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start: ${tail(join(dir, 'redis.log'))}`)
      await sleep(50)
    }
  }
  const pid = child.pid as number
  const address = opts.tcp === true ? `127.0.0.1:${port}` : 'standalone'
  return {
    url: opts.tcp === true ? `redis://127.0.0.1:${port}` : `unix://${socket}`,
    socket,
    endpoint: opts.tcp === true ? { host: '127.0.0.1', port } : socket,
    pid,
    client,
    async cpuSeconds () {
      const info = await client.info('cpu')
      const sys = /used_cpu_sys:([\d.]+)/.exec(info)
      const user = /used_cpu_user:([\d.]+)/.exec(info)
      return Number(sys?.[1] ?? NaN) + Number(user?.[1] ?? NaN)
    },
    async commandStats () {
      return await commandStatsOf(client)
    },
    nodes: () => [{ address, role: 'master', pid }],
    feeds: async () => [await feedsOf(client, address)],
    async stop () {
      client.disconnect()
      await stopChild(child, 3000)
      unhook()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface ServerProcess {
  readonly name: string
  readonly pid: number
  readonly host: string
  readonly port: number
  readonly logFile: string
  /** The gateway's live reader, as its /readyz told once ready (block, notify, track; cluster). */
  readonly reader?: string
  /** The gateway's whole /readyz body once ready (what else it says of its reader and feeds). */
  readonly readyz?: Readonly<Record<string, unknown>>
  /** The gateway's internal listener (`/readyz`, `/metrics`), `http://127.0.0.1:<port>`. */
  readonly internalUrl?: string
  cpuSeconds (): number
  rssBytes (): number
  stop (): Promise<void>
}

interface ChildOptions {
  readonly name: string
  readonly entry: string
  readonly env: Record<string, string>
  readonly nodeArgs: readonly string[]
  readonly port: number
  /** Resolves true once the child answers. */
  readonly ready: () => Promise<boolean>
}

async function startNode (opts: ChildOptions): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), `sse-gw-bench-${opts.name}-`))
  const logFile = join(dir, 'out.log')
  const fd = openSync(logFile, 'a')
  const child = spawn(process.execPath, [...opts.nodeArgs, opts.entry], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env },
    stdio: ['ignore', fd, fd],
  })
  closeSync(fd)
  const unhook = killOnExit(child, dir)
  const deadline = Date.now() + 20000
  while (!await opts.ready().catch(() => false)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      unhook()
      throw new Error(`${opts.name} exited at start (${String(child.exitCode ?? child.signalCode)}):\n${tail(logFile)}`)
    }
    if (Date.now() > deadline) {
      await stopChild(child, 1000)
      unhook()
      throw new Error(`${opts.name} not ready after 20 s:\n${tail(logFile)}`)
    }
    await sleep(50)
  }
  const pid = child.pid as number
  return {
    name: opts.name,
    pid,
    host: '127.0.0.1',
    port: opts.port,
    logFile,
    cpuSeconds: () => procCpuSeconds(pid),
    rssBytes: () => procRssBytes(pid),
    async stop () {
      await stopChild(child, 8000)
      unhook()
      if (process.env.BENCH_KEEP_LOGS !== '1') rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function httpStatus (url: string): Promise<number> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) })
  await res.arrayBuffer()
  return res.status
}

/** Extra flags from an env var, split on white space (node flags, redis-server arguments). */
export function nodeArgsFromEnv (name: string): string[] {
  const raw = process.env[name]
  return raw === undefined || raw.trim() === '' ? [] : raw.trim().split(/\s+/)
}

/** `A=1,B=2` into an object (extra settings for the gateway). */
export function envPairs (raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const pair of (raw ?? '').split(',')) {
    const eq = pair.indexOf('=')
    if (eq > 0) out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim()
  }
  return out
}

/** Where the gateway reads: one Redis (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES seeds). */
export type GatewayRedis = { readonly redisUrl: string } | { readonly clusterNodes: string }

export type GatewayOptions = GatewayRedis & {
  readonly keyPrefix: string
  /** More settings (READER_SHARDS, LOG_LEVEL, ...); BENCH_GATEWAY_ENV adds to them. */
  readonly env?: Record<string, string>
  /** Node flags before BENCH_GATEWAY_NODE_ARGS (e.g. MEMORY_PROBE_ARGS). */
  readonly nodeArgs?: readonly string[]
}

/** Starts `node dist/src/main.js` on free loopback ports and waits for /readyz. */
export async function startGateway (opts: GatewayOptions): Promise<ServerProcess> {
  const port = await freePort()
  const internalPort = await freePort()
  const proc = await startNode({
    name: 'gateway',
    entry: GATEWAY_ENTRY,
    port,
    nodeArgs: [...opts.nodeArgs ?? [], ...nodeArgsFromEnv('BENCH_GATEWAY_NODE_ARGS')],
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      INTERNAL_PORT: String(internalPort),
      INTERNAL_HOST: '127.0.0.1',
      ...('clusterNodes' in opts ? { REDIS_CLUSTER_NODES: opts.clusterNodes } : { REDIS_URL: opts.redisUrl }),
      KEY_PREFIX: opts.keyPrefix,
      JWT_SECRET: BENCH_SECRET,
      DRAIN_WINDOW_MS: '0',
      ...opts.env,
      ...envPairs(process.env.BENCH_GATEWAY_ENV),
    },
    ready: async () => await httpStatus(`http://127.0.0.1:${internalPort}/readyz`) === 200,
  })
  // Which reader ran: the bench tables name it (auto picks by the server).
  const ready = await fetch(`http://127.0.0.1:${internalPort}/readyz`, { signal: AbortSignal.timeout(1000) }).then(async r => await r.json() as Record<string, unknown>).catch(() => undefined)
  const internalUrl = `http://127.0.0.1:${internalPort}`
  if (ready === undefined) return { ...proc, internalUrl, cpuSeconds: () => proc.cpuSeconds(), rssBytes: () => proc.rssBytes(), stop: async () => { await proc.stop() } }
  const reader = typeof ready.reader === 'string' ? ready.reader : undefined
  return { ...proc, ...(reader === undefined ? {} : { reader }), readyz: ready, internalUrl, cpuSeconds: () => proc.cpuSeconds(), rssBytes: () => proc.rssBytes(), stop: async () => { await proc.stop() } }
}

/**
 * What the gateway says of its live reading, asked at the end of a window:
 * its /readyz body, the reader modes its `reader_mode` gauge has at 1, and
 * every metric series that names a feed (so a feed the gateway reports in a
 * later build shows up here without a change to the bench).
 */
export interface GatewayReport {
  readonly readyz: Readonly<Record<string, unknown>> | null
  readonly readerModes: string[]
  readonly feedSeries: string[]
}

export async function gatewayReport (server: ServerProcess): Promise<GatewayReport | undefined> {
  if (server.internalUrl === undefined) return undefined
  const get = async (path: string): Promise<string | null> => await fetch(`${server.internalUrl ?? ''}${path}`, { signal: AbortSignal.timeout(2000) }).then(async r => await r.text()).catch(() => null)
  const [readyz, metrics] = await Promise.all([get('/readyz'), get('/metrics')])
  let body: Record<string, unknown> | null = null
  try { body = readyz === null ? null : JSON.parse(readyz) as Record<string, unknown> } catch {}
  const series = (metrics ?? '').split('\n').filter(l => l !== '' && !l.startsWith('#'))
  return {
    readyz: body,
    readerModes: series.flatMap(l => { const m = /^sse_gateway_reader_mode\{mode="([^"]+)"\} 1$/.exec(l); return m === null ? [] : [m[1] as string] }),
    feedSeries: series.filter(l => /feed/i.test(l)).slice(0, 50),
  }
}

export interface CeilingOptions {
  readonly redisUrl: string
  readonly keyPrefix: string
  /** Verify HS256 tokens (connect-rate ceiling). */
  readonly verify?: boolean
  /** Hold connections without reading Redis (idle-memory ceiling). */
  readonly idle?: boolean
  readonly shards?: number
  /** Node flags before BENCH_CEILING_NODE_ARGS (e.g. MEMORY_PROBE_ARGS). */
  readonly nodeArgs?: readonly string[]
}

export type ServerKind = 'gateway' | 'ceiling'

/**
 * The gateway or the raw ceiling, on the same Redis under its own key
 * prefix; `env` adds gateway settings. The ceiling reads one Redis only.
 */
export async function startServer (kind: ServerKind, redis: GatewayRedis, keyPrefix: string, env?: Record<string, string>): Promise<ServerProcess> {
  if (kind === 'gateway') return await startGateway({ ...redis, keyPrefix, ...(env === undefined ? {} : { env }) })
  if (!('redisUrl' in redis)) throw new Error('the ceiling reads one Redis, not a cluster')
  return await startCeiling({ redisUrl: redis.redisUrl, keyPrefix })
}

export async function startCeiling (opts: CeilingOptions): Promise<ServerProcess> {
  const port = await freePort()
  return await startNode({
    name: 'ceiling',
    entry: CEILING_ENTRY,
    port,
    nodeArgs: [...opts.nodeArgs ?? [], ...nodeArgsFromEnv('BENCH_CEILING_NODE_ARGS')],
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: opts.redisUrl,
      KEY_PREFIX: opts.keyPrefix,
      SHARDS: String(opts.shards ?? 4),
      ...(opts.verify === true ? { VERIFY_SECRET: BENCH_SECRET } : {}),
      ...(opts.idle === true ? { IDLE: '1' } : {}),
    },
    ready: async () => await httpStatus(`http://127.0.0.1:${port}/livez`) === 200,
  })
}

/**
 * Node flags that preload test/helpers/memory-probe.mjs: on SIGUSR2 the
 * process collects garbage twice and prints what it still holds. The same
 * probe goes into the gateway and the raw ceiling, so both are measured after
 * a full collection and the figure no longer moves with when V8 happened to
 * collect.
 */
export const MEMORY_PROBE_ARGS: readonly string[] = ['--expose-gc', '--import', MEMORY_PROBE]

export interface ProbedMemory {
  readonly vmRss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
  readonly arrayBuffers: number
  readonly rss: number
}

/** Sends SIGUSR2 to a process started with MEMORY_PROBE_ARGS and reads its answer from its log. */
export async function probeMemory (server: ServerProcess, timeoutMs = 15000): Promise<ProbedMemory> {
  const seen = readFileSync(server.logFile, 'utf8').length
  process.kill(server.pid, 'SIGUSR2')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const text = readFileSync(server.logFile, 'utf8').slice(seen)
    const m = /^memory-probe (\{.*\})$/m.exec(text)
    if (m !== null) {
      const probed = JSON.parse(m[1] as string) as ProbedMemory & { gc: boolean }
      if (!probed.gc) throw new Error(`${server.name}: memory probe ran without --expose-gc`)
      return probed
    }
    if (Date.now() > deadline) throw new Error(`${server.name}: no memory-probe answer in ${timeoutMs} ms`)
    await sleep(50)
  }
}
