/** Builds a real gateway in this process, listening on free loopback ports. */
import { Writable } from 'node:stream'
import { buildGateway, type Gateway } from '../../src/app.js'
import { loadConfig } from '../../src/core/config.js'
import { createLogger } from '../../src/log.js'
import { getJson, sleep } from './sse.js'
import { SECRET } from './token.js'

export interface TestGateway {
  readonly gateway: Gateway
  /** `http://127.0.0.1:<port>` of the public listener. */
  readonly url: string
  readonly internalUrl: string
  /** Every log line written so far, raw JSON text. */
  readonly logs: string[]
  close (): Promise<void>
}

export async function startGateway (env: Record<string, string | undefined>): Promise<TestGateway> {
  const logs: string[] = []
  const sink = new Writable({
    write (chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.length > 0) logs.push(line)
      done()
    },
  })
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    INTERNAL_PORT: '0',
    INTERNAL_HOST: '127.0.0.1',
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'info',
    ...env,
  })
  const gateway = await buildGateway(config, { logger: createLogger(config.logLevel, sink) })
  const { url, internalUrl } = await gateway.listen()
  return {
    gateway,
    url,
    internalUrl,
    logs,
    async close () { await gateway.shutdown(0) },
  }
}

/** `/readyz` of `gw` once it answers 200, or its last answer after `ms`. */
export async function readyWithin (gw: TestGateway, ms: number): Promise<{ status: number, body: Record<string, unknown> }> {
  const deadline = Date.now() + ms
  let r = await getJson(`${gw.internalUrl}/readyz`)
  while (r.status !== 200 && Date.now() < deadline) {
    await sleep(100)
    r = await getJson(`${gw.internalUrl}/readyz`)
  }
  return r
}
