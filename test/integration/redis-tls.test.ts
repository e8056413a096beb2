/**
 * `rediss://` to a Redis whose certificate a CA made by the test signed:
 * with REDIS_TLS_CA_FILE every connection (commands, live readers, POST
 * /publish, the command line) speaks TLS and events flow; with the client
 * certificate too when the server requires one (mutual TLS); without the CA
 * the gateway stays up, not ready, and says what to set.
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { startGateway, readyWithin, type TestGateway } from '../helpers/gateway.js'
import { bearer, post } from '../helpers/publish.js'
import { ensureBuilt, freePort } from '../helpers/process.js'
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.js'
import { getJson, openStream, sleep } from '../helpers/sse.js'
import { makeTestCa, tlsArgs } from '../helpers/tls.js'
import { hsToken } from '../helpers/token.js'

t.setTimeout(90000)
const CLI = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'dist', 'src', 'cli.js')
ensureBuilt()

const ca = makeTestCa()
t.teardown(() => { ca.remove() })

async function tlsRedis (t: Test, clientCertificates: boolean): Promise<{ redis: TestRedis, url: string }> {
  const port = await freePort()
  const redis = await startRedis({ notify: 'Kt', args: tlsArgs(ca, port, clientCertificates) })
  t.teardown(() => redis.stop())
  return { redis, url: `rediss://127.0.0.1:${port}` }
}

/** The gateway's connections over TCP (the server's only TCP port is its TLS port), by name. */
async function tlsClients (redis: TestRedis): Promise<string[]> {
  const list = String(await redis.client.call('CLIENT', 'LIST'))
  return list.split('\n').filter(l => / name=sse-gateway:/.test(l) && / addr=127\.0\.0\.1:/.test(l)).map(l => / name=(\S+)/.exec(l)?.[1] ?? '')
}

async function eventsFlow (t: Test, redis: TestRedis, gw: TestGateway, prefix: string): Promise<void> {
  const s = await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ sub: 'tls', topics: ['news'] })}` })
  t.teardown(() => { s.close() })
  await sleep(200)
  await redis.client.xadd(`${prefix}topic:news`, '*', 'data', 'over-tls')
  const posted = await post(`${gw.url}/publish`, { channel: 'topic:news', data: 'posted' }, bearer(hsToken({ sub: 'tls', publish: ['topic:news'] })))
  t.equal(posted.status, 200, 'POST /publish writes over TLS')
  await s.waitForEvents(2, 10000)
  t.same(s.events.map(e => e.data), ['over-tls', 'posted'], 'events flow over TLS')
}

t.test('rediss:// with REDIS_TLS_CA_FILE: every connection speaks TLS, events flow, ready', async t => {
  const { redis, url } = await tlsRedis(t, false)
  const prefix = uniquePrefix('tls')
  // And an ACL user whose password comes from a mounted file (trailing newline).
  await redis.client.call('ACL', 'SETUSER', 'gateway', 'on', '>tls-password-123', '~*', '&*', '+@all')
  const passwordFile = join(ca.dir, 'password')
  writeFileSync(passwordFile, 'tls-password-123\n')
  const gw = await startGateway({ REDIS_URL: url, REDIS_TLS_CA_FILE: ca.caCert, REDIS_USERNAME: 'gateway', REDIS_PASSWORD_FILE: passwordFile, KEY_PREFIX: prefix, READER_MODE: 'notify', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  const r = await readyWithin(gw, 10000)
  t.equal(r.status, 200, `ready (${JSON.stringify(r.body)})`)
  await eventsFlow(t, redis, gw, prefix)
  const names = await tlsClients(redis)
  for (const name of ['sse-gateway:commands', 'sse-gateway:notify', 'sse-gateway:notify-reader', 'sse-gateway:publish']) {
    t.ok(names.includes(name), `${name} is connected over TCP with TLS (${names.join(', ')})`)
  }
  await sleep(1000)
  t.equal((await getJson(`${gw.internalUrl}/readyz`)).status, 200, 'the probe keeps it ready')

  // The command line takes the same variables.
  const cli = async (args: string[], env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> => await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'publish', '--channel', 'topic:news', '--data', 'from-cli', '--prefix', prefix, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    child.on('error', reject)
    child.on('close', code => { resolve({ code, stdout, stderr }) })
  })
  const run = await cli([], { REDIS_URL: url, REDIS_TLS_CA_FILE: ca.caCert, REDIS_USERNAME: 'gateway', REDIS_PASSWORD_FILE: passwordFile })
  t.equal(run.code, 0, `the CLI publishes over TLS (${run.stderr})`)
  t.match(run.stdout, /^\d+-\d+\n$/, 'and prints the entry id')
  const plain = await cli(['--redis', 'redis://127.0.0.1:1'], { REDIS_TLS_CA_FILE: ca.caCert })
  t.equal(plain.code, 2, 'the CLI refuses TLS settings with a redis:// URL')
  t.match(plain.stderr, /REDIS_TLS_CA_FILE is set but the Redis URL \(--redis or REDIS_URL\) is not a rediss:\/\/ URL/)
})

t.test('mutual TLS: with REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE the server lets the gateway in; without them it does not', async t => {
  const { redis, url } = await tlsRedis(t, true)
  const prefix = uniquePrefix('mtls')
  const gw = await startGateway({ REDIS_URL: url, REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.clientKey, KEY_PREFIX: prefix, READER_MODE: 'block', READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => gw.close())
  const r = await readyWithin(gw, 10000)
  t.equal(r.status, 200, `ready (${JSON.stringify(r.body)})`)
  await eventsFlow(t, redis, gw, prefix)
  t.ok((await tlsClients(redis)).includes('sse-gateway:reader'), 'the blocking readers connect over TLS too')

  const without = await startGateway({ REDIS_URL: url, REDIS_TLS_CA_FILE: ca.caCert, KEY_PREFIX: prefix, READER_PROBE_INTERVAL_MS: '300' })
  t.teardown(() => without.close())
  await sleep(1500)
  const w = await getJson(`${without.internalUrl}/readyz`)
  t.equal(w.status, 503, 'without a client certificate: not ready')
  t.equal(w.body.redis, 'down', 'readiness says Redis cannot be reached')
})

t.test('rediss:// to a private CA without REDIS_TLS_CA_FILE: up, not ready, one log line that says to set it', async t => {
  const { url } = await tlsRedis(t, false)
  for (const [what, env] of [['no CA', {}], ['the wrong CA', { REDIS_TLS_CA_FILE: ca.otherCaCert }]] as const) {
    const gw = await startGateway({ REDIS_URL: url, KEY_PREFIX: uniquePrefix('noca'), ...env })
    t.teardown(() => gw.close())
    await sleep(2000)
    const r = await getJson(`${gw.internalUrl}/readyz`)
    t.equal(r.status, 503, `${what}: not ready`)
    t.equal(r.body.redis, 'down', `${what}: readiness says Redis cannot be reached`)
    const lines = gw.logs.filter(l => l.includes('redis unreachable'))
    t.equal(lines.length, 1, `${what}: one line, not one per retry`)
    t.match(lines[0], /certificate/, `${what}: it names the certificate problem`)
    t.match(lines[0], /REDIS_TLS_CA_FILE/, `${what}: and the setting that mends it`)
    t.notMatch(lines[0], /\s+at /, `${what}: no stack trace`)
  }
})
