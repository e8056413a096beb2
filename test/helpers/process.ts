/**
 * A gateway in its own OS process (`node dist/src/main.js`), for tests that
 * need a second replica or the real process's memory: free loopback ports,
 * readiness wait, RSS from /proc, kill by pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { SECRET } from './token.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const MAIN = join(ROOT, 'dist', 'src', 'main.js')
const PROBE = join(ROOT, 'test', 'helpers', 'memory-probe.mjs')
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')

/** A free TCP port on 127.0.0.1 (listen on 0, close, reuse the number). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

function newestMtime (dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p))
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs)
  }
  return newest
}

function isBuilt (): boolean {
  return existsSync(MAIN) && statSync(MAIN).mtimeMs >= newestMtime(join(ROOT, 'src'))
}

const sleepSync = (ms: number): void => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms) }

/**
 * Builds `dist/` when `dist/src/main.js` is missing or older than `src/`
 * (`npm test` builds it first). Test files run in parallel: a lock folder
 * keeps two of them from running tsc over each other.
 */
export function ensureBuilt (): void {
  if (isBuilt()) return
  const lock = join(tmpdir(), `sse-gw-build-${createHash('sha1').update(ROOT).digest('hex').slice(0, 12)}.lock`)
  const deadline = Date.now() + 180000
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch {
      // Someone else builds; a lock older than 3 minutes is stale.
      try { if (Date.now() - statSync(lock).mtimeMs > 180000) rmdirSync(lock) } catch {}
      if (Date.now() > deadline) throw new Error('timed out waiting for another build of dist/')
      sleepSync(200)
    }
  }
  try {
    if (isBuilt()) return
    // The steps of `npm run build`: the gateway, the demo's browser code, the demo's HTML and CSS.
    const steps: Array<[string, string[]]> = [
      ['tsc -p tsconfig.build.json', [TSC, '-p', 'tsconfig.build.json']],
      ['tsc -p tsconfig.demo.json', [TSC, '-p', 'tsconfig.demo.json']],
      ['scripts/copy-demo-assets.mjs', [join(ROOT, 'scripts', 'copy-demo-assets.mjs')]],
    ]
    for (const [what, args] of steps) {
      const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`${what} failed:\n${r.stdout}${r.stderr}`)
    }
  } finally {
    rmdirSync(lock)
  }
}

/** What the process holds after a full garbage collection (see memory-probe.mjs). */
export interface MemoryProbe {
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
  readonly arrayBuffers: number
  /** VmRSS read by the process itself, after the collection. */
  readonly vmRss: number
}

export interface SpawnOptions {
  /**
   * Preload test/helpers/memory-probe.mjs (and --expose-gc) so that
   * {@link GatewayProcess.probeMemory} works. The gateway itself is unchanged.
   */
  readonly memoryProbe?: boolean
  /** Extra node options placed before the script (e.g. V8 flags). */
  readonly nodeArgs?: readonly string[]
  /** How much of the process's output to keep, in characters (default 20,000). */
  readonly keepOutputChars?: number
}

export interface GatewayProcess {
  readonly pid: number
  /** `http://127.0.0.1:<port>` of the public listener. */
  readonly url: string
  readonly internalUrl: string
  /** What the process wrote to stdout and stderr so far. */
  readonly output: () => string
  /** Resident set size now, in bytes (VmRSS). */
  rss (): number
  /** Peak resident set size, in bytes (VmHWM). */
  peakRss (): number
  /** Full GC in the process, then its memory figures (needs `memoryProbe`). */
  probeMemory (): Promise<MemoryProbe>
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  readonly exited: Promise<number | string>
  /** Sends a signal (SIGTERM to test draining). */
  kill (signal: NodeJS.Signals): void
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop (): Promise<void>
}

function statusField (pid: number, field: string): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
  if (m === null) throw new Error(`no ${field} in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

async function httpStatus (url: string): Promise<number> {
  return await new Promise(resolve => {
    const req = request(url, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', () => { resolve(0) })
    req.setTimeout(2000, () => { req.destroy() })
    req.end()
  })
}

async function waitForExit (proc: ChildProcess, ms: number): Promise<boolean> {
  if (proc.exitCode !== null || proc.signalCode !== null) return true
  return await new Promise(resolve => {
    const timer = setTimeout(() => { proc.off('exit', onExit); resolve(false) }, ms)
    const onExit = (): void => { clearTimeout(timer); resolve(true) }
    proc.once('exit', onExit)
  })
}

/**
 * Starts `node dist/src/main.js` with `env` on top of test defaults (loopback
 * ports picked here, the test JWT secret, LOG_LEVEL=warn, no drain window) and
 * waits until `/readyz` answers 200.
 */
export async function spawnGateway (env: Record<string, string>, opts: SpawnOptions = {}): Promise<GatewayProcess> {
  ensureBuilt()
  let lastError = ''
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const internalPort = await freePort()
    // A clean environment: the test runner's NODE_OPTIONS (loaders) must not
    // reach the gateway, or its memory is not the gateway's.
    const childEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      PORT: String(port),
      INTERNAL_PORT: String(internalPort),
      HOST: '127.0.0.1',
      INTERNAL_HOST: '127.0.0.1',
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      DRAIN_WINDOW_MS: '0',
      ...env,
    }
    const args = [...(opts.nodeArgs ?? [])]
    if (opts.memoryProbe === true) args.push('--expose-gc', '--import', pathToFileURL(PROBE).href)
    const proc = spawn(process.execPath, [...args, MAIN], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    const probes: Array<(p: MemoryProbe) => void> = []
    const keepChars = opts.keepOutputChars ?? 20000
    const keep = (chunk: Buffer): void => { output = (output + chunk.toString('utf8')).slice(-keepChars) }
    const exited = new Promise<number | string>(resolve => {
      proc.once('exit', (code, signal) => { resolve(code ?? signal ?? -1) })
    })
    let partial = ''
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', (chunk: Buffer) => {
      keep(chunk)
      const lines = (partial + chunk.toString('utf8')).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        const m = /^memory-probe (\{.*\})$/.exec(line)
        if (m !== null) probes.shift()?.(JSON.parse(m[1] as string) as MemoryProbe)
      }
    })
    const pid = proc.pid
    if (pid === undefined) throw new Error('could not start the gateway process')
    // Never outlive the test process, even when it fails before teardown.
    const reap = (): void => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') }
    process.once('exit', reap)
    proc.once('exit', () => { process.off('exit', reap) })
    const url = `http://127.0.0.1:${port}`
    const internalUrl = `http://127.0.0.1:${internalPort}`
    const deadline = Date.now() + 30000
    let ready = false
    while (Date.now() < deadline && proc.exitCode === null && proc.signalCode === null) {
      if (await httpStatus(`${internalUrl}/readyz`) === 200) { ready = true; break }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    if (!ready) {
      proc.kill('SIGKILL')
      await waitForExit(proc, 5000)
      lastError = output
      // A port taken between freePort() and listen(): try other ports.
      if (/EADDRINUSE/.test(output)) continue
      throw new Error(`gateway process did not become ready:\n${output}`)
    }
    return {
      pid,
      url,
      internalUrl,
      output: () => output,
      exited,
      kill: (signal: NodeJS.Signals) => { proc.kill(signal) },
      rss: () => statusField(pid, 'VmRSS'),
      peakRss: () => statusField(pid, 'VmHWM'),
      async probeMemory () {
        if (opts.memoryProbe !== true) throw new Error('spawnGateway(..., { memoryProbe: true }) first')
        const answer = new Promise<MemoryProbe>(resolve => { probes.push(resolve) })
        process.kill(pid, 'SIGUSR2')
        return await answer
      },
      async stop () {
        if (proc.exitCode !== null || proc.signalCode !== null) return
        process.kill(pid, 'SIGTERM')
        if (!await waitForExit(proc, 5000)) {
          process.kill(pid, 'SIGKILL')
          await waitForExit(proc, 5000)
        }
      },
    }
  }
  throw new Error(`gateway process did not start (ports in use):\n${lastError}`)
}
