/**
 * Regression: start-up errors that do not say what to fix. Each failure to
 * start is one log line in the normal shape (pino: level, time, msg) that
 * names the variable and what to set, and the process exits 1.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ensureBuilt, freePort } from '../helpers/process.js'
import { SECRET } from '../helpers/token.js'
import type { TestContext } from '../helpers/extra.js'

t.setTimeout(90000)
const MAIN = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'src', 'main.js')

interface Run { code: number | null, lines: Array<Record<string, unknown>>, raw: string }

async function run (env: Record<string, string>): Promise<Run> {
  ensureBuilt()
  const port = await freePort()
  const internalPort = await freePort()
  const proc = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOST: '127.0.0.1', INTERNAL_HOST: '127.0.0.1', PORT: String(port), INTERNAL_PORT: String(internalPort), JWT_SECRET: SECRET, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let raw = ''
  proc.stdout.on('data', (b: Buffer) => { raw += b.toString() })
  proc.stderr.on('data', (b: Buffer) => { raw += b.toString() })
  const timer = setTimeout(() => { proc.kill('SIGKILL') }, 20000)
  const code = await new Promise<number | null>(resolve => proc.once('exit', c => { resolve(c) }))
  clearTimeout(timer)
  const lines = raw.split('\n').filter(l => l.trim().length > 0).map(l => {
    try { return JSON.parse(l) as Record<string, unknown> } catch { return { unparsed: l } }
  })
  return { code, lines, raw }
}

function fatalLine (t: TestContext, r: Run, what: string): Record<string, unknown> | undefined {
  t.equal(r.code, 1, `${what}: exits 1`)
  for (const l of r.lines) t.notOk('unparsed' in l, `${what}: every line is JSON (${String(l.unparsed ?? '').slice(0, 80)})`)
  const fatal = r.lines.find(l => l.level === 60)
  t.ok(fatal !== undefined, `${what}: a fatal line in pino's shape (${r.raw.slice(0, 300)})`)
  if (fatal === undefined) return undefined
  t.type(fatal.time, 'string', `${what}: with a time`)
  t.type(fatal.msg, 'string', `${what}: with msg`)
  t.equal(fatal.service, 'sse-gateway', `${what}: the service field`)
  t.notOk('message' in fatal, `${what}: msg, not message`)
  return fatal
}

async function holdPort (port: number): Promise<Server> {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(port, '127.0.0.1', resolve))
  return srv
}

t.test('start-up errors that do not say what to fix: a port in use names its variable', async t => {
  for (const variable of ['PORT', 'INTERNAL_PORT'] as const) {
    const port = await freePort()
    const srv = await holdPort(port)
    const r = await run({ [variable]: String(port) })
    srv.close()
    const fatal = fatalLine(t, r, `${variable} in use`)
    t.match(String(fatal?.msg), new RegExp(`\\b${variable}\\b`), `${variable} in use: the message names ${variable}`)
    t.match(String(fatal?.msg), /in use/, `${variable} in use: says the port is in use`)
    t.equal(fatal?.error, 'SSEGW_ERR_CONFIG_INVALID', `${variable} in use: a stable code`)
  }
})

t.test('start-up errors that do not say what to fix: REDIS_URL that is not a Redis URL is refused, naming REDIS_URL', async t => {
  const bad: Array<[string, RegExp]> = [
    ['redis-sentinel://127.0.0.1:26379/mymaster', /scheme/],
    ['redis+cluster://127.0.0.1:7101', /scheme/],
    ['http://127.0.0.1:6379', /scheme/],
    ['redis://127.0.0.1:7101,redis://127.0.0.1:7102', /one URL/],
    ['127.0.0.1:6379', /redis:\/\//],
    ['unix://', /socket path/],
  ]
  for (const [url, also] of bad) {
    const r = await run({ REDIS_URL: url })
    const fatal = fatalLine(t, r, `REDIS_URL=${url}`)
    t.match(String(fatal?.msg), /^REDIS_URL\b/, `REDIS_URL=${url}: names the variable first`)
    t.match(String(fatal?.msg), also, `REDIS_URL=${url}: says what to set`)
    t.notMatch(r.raw, /ENOENT|Invalid URL/, `REDIS_URL=${url}: not a socket path or a bare Invalid URL`)
  }
})

t.test('start-up errors that do not say what to fix: an invalid setting is logged in the normal shape', async t => {
  const r = await run({ MAX_CONNECTIONS: 'lots' })
  const fatal = fatalLine(t, r, 'MAX_CONNECTIONS=lots')
  t.match(String(fatal?.msg), /MAX_CONNECTIONS must be a whole number/)
  t.equal(fatal?.error, 'SSEGW_ERR_CONFIG_INVALID')
})
