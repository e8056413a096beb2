/**
 * A throwaway redis-server per test file, on a unix socket in a temp folder:
 * isolated, killable and restartable, never the shared one.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

export interface TestRedis {
  /** `unix:///.../redis.sock`, as REDIS_URL takes it. */
  readonly url: string
  readonly socket: string
  /** A command client for the test itself (producer side). */
  readonly client: Redis
  readonly pid: number | undefined
  /** SIGKILL the server (fault tests). */
  kill (): Promise<void>
  /** Start it again on the same socket and data folder. */
  restart (): Promise<void>
  stop (): Promise<void>
}

export interface TestRedisOptions {
  /** Keep an append-only file so a restart keeps the data. */
  readonly appendonly?: boolean
  /** `notify-keyspace-events` flags (e.g. `Kt` for the notify reader). */
  readonly notify?: string
  /** More redis-server arguments (e.g. `--rename-command CONFIG x`, as managed Redis withholds CONFIG). */
  readonly args?: readonly string[]
}

async function waitForExit (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  await new Promise<void>(resolve => proc.once('exit', () => { resolve() }))
}

async function ping (socket: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const c = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    c.on('error', () => {})
    try {
      await c.connect()
      await c.ping()
      c.disconnect()
      return
    } catch {
      c.disconnect()
      if (Date.now() > deadline) throw new Error(`redis-server on ${socket} did not start`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
}

export async function startRedis (opts: TestRedisOptions = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-redis-'))
  const socket = join(dir, 'redis.sock')
  let proc: ChildProcess
  const launch = async (): Promise<void> => {
    proc = spawn('redis-server', [
      '--port', '0', '--unixsocket', socket, '--unixsocketperm', '700',
      '--save', '', '--appendonly', opts.appendonly === true ? 'yes' : 'no',
      '--appendfsync', 'always', '--dir', dir, '--logfile', join(dir, 'redis.log'),
      ...(opts.notify !== undefined ? ['--notify-keyspace-events', opts.notify] : []),
      ...(opts.args ?? []),
    ], { stdio: 'ignore' })
    await ping(socket)
  }
  await launch()
  const client = new Redis({ path: socket, protocol: 2, maxRetriesPerRequest: 50 })
  client.on('error', () => {})
  return {
    url: `unix://${socket}`,
    socket,
    client,
    get pid () { return proc.pid },
    async kill () {
      proc.kill('SIGKILL')
      await waitForExit(proc)
    },
    async restart () {
      await launch()
      // The test's own client must be back too before a test uses it: a
      // command sent while it is still reconnecting can fail with
      // "Connection is closed".
      const deadline = Date.now() + 10000
      for (;;) {
        try {
          if (client.status === 'end') await client.connect()
          await client.ping()
          return
        } catch (err) {
          if (Date.now() > deadline) throw err
          await new Promise(resolve => setTimeout(resolve, 50))
        }
      }
    },
    async stop () {
      client.disconnect()
      proc.kill('SIGTERM')
      await waitForExit(proc)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

let counter = 0
/** A unique key prefix per test: tests in one file never see each other's keys. */
export function uniquePrefix (name = 't'): string {
  counter++
  return `${name}${process.pid}x${counter}:`
}
