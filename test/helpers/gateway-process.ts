/**
 * A gateway as a separate OS process (`node dist/src/main.js`), for tests of
 * signals, draining and several replicas. `npm test` builds dist/ first.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { getJson, sleep } from './sse.js'
import { SECRET } from './token.js'

export const MAIN = new URL('../../dist/src/main.js', import.meta.url).pathname

export interface GatewayProcess {
  readonly url: string
  readonly internalUrl: string
  readonly pid: number
  readonly proc: ChildProcess
  /** stdout and stderr lines (JSON logs). */
  readonly logs: string[]
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>
  stop (): Promise<void>
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

export async function spawnGateway (env: Record<string, string>): Promise<GatewayProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test does)`)
  const port = await freePort()
  const internalPort = await freePort()
  const proc = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      INTERNAL_HOST: '127.0.0.1',
      PORT: String(port),
      INTERNAL_PORT: String(internalPort),
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: string[] = []
  const collect = (chunk: Buffer): void => { for (const l of chunk.toString('utf8').split('\n')) if (l !== '') logs.push(l) }
  proc.stdout?.on('data', collect)
  proc.stderr?.on('data', collect)
  const exited = new Promise<number | string>(resolve => {
    proc.once('exit', (code, signal) => { resolve(code ?? signal ?? -1) })
  })
  const url = `http://127.0.0.1:${port}`
  const internalUrl = `http://127.0.0.1:${internalPort}`
  const deadline = Date.now() + 20000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gateway exited at start: ${logs.join('\n')}`)
    try {
      if ((await getJson(`${internalUrl}/readyz`)).status === 200) break
    } catch {}
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`gateway not ready: ${logs.join('\n')}`)
    }
    await sleep(50)
  }
  return {
    url,
    internalUrl,
    pid: proc.pid as number,
    proc,
    logs,
    exited,
    async stop () {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL')
        await exited
      }
    },
  }
}
