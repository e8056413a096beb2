/**
 * The control plane across replicas (README "Control"): three gateway
 * processes on one real Redis, and the CLI as a fourth process. A user
 * disconnected or a token revoked ends its streams on every replica within
 * a second, with the control event, and its reconnect is refused
 * everywhere; MAX_CONNECTIONS_PER_USER holds across replicas under
 * concurrent connects, and a SIGKILLed replica's streams are freed within
 * CONTROL_LEASE_MS; presence follows connects, closes and a killed replica.
 */
import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { connect } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { scrapeMetric, signatureOf } from '../helpers/extra.js'
import { ensureBuilt, spawnGateway, type GatewayProcess } from '../helpers/process.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { RawStream, getJson, openStream, sleep } from '../helpers/sse.js'
import { hsToken } from '../helpers/token.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = join(ROOT, 'dist', 'src', 'cli.js')
const CONTROL_TOKEN = 'control-token-0123456789-abcdefghijklmnop'
const LEASE_MS = 3000
ensureBuilt()

const redis = await startRedis()
t.teardown(() => redis.stop())
const prefix = uniquePrefix('ctl')
const replicas: GatewayProcess[] = await Promise.all([0, 1, 2].map(async () => await spawnGateway({
  REDIS_URL: redis.url,
  KEY_PREFIX: prefix,
  CONTROL_TOKEN,
  CONTROL_LEASE_MS: String(LEASE_MS),
  MAX_CONNECTIONS_PER_USER: '3',
  LOG_LEVEL: 'info',
  RETRY_MS: '100',
})))
t.teardown(async () => { await Promise.all(replicas.map(async r => await r.stop())) })
const streams: RawStream[] = []
t.teardown(() => { for (const s of streams) s.close() })
const tokensSeen: string[] = []

interface Run { code: number | null, stdout: string, stderr: string }
async function cli (args: string[]): Promise<Run> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    child.on('error', reject)
    child.on('close', code => { resolve({ code, stdout, stderr }) })
  })
}

/** A token for `sub`, issued `ageS` seconds ago (so a cut-off at now is after its `iat`). */
function token (sub: string, extra: Record<string, unknown> = {}, ageS = 10): string {
  const tok = hsToken({ sub, iat: Math.floor(Date.now() / 1000) - ageS, ...extra })
  tokensSeen.push(tok)
  return tok
}

async function open (r: GatewayProcess, tok: string, query = ''): Promise<RawStream> {
  const s = await openStream(`${r.url}/events?token=${tok}${query}`)
  streams.push(s)
  return s
}

async function post (url: string, body: unknown, auth: string | null = CONTROL_TOKEN): Promise<{ status: number, body: any }> {
  return await new Promise((resolve, reject) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth !== null ? { authorization: `Bearer ${auth}` } : {}) } }, res => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { data += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) }) })
    })
    req.on('error', reject)
    req.end(text)
  })
}

const presence = async (r: GatewayProcess, query: string): Promise<any> =>
  (await getJson(`${r.internalUrl}/control/presence?${query}`, { authorization: `Bearer ${CONTROL_TOKEN}` })).body

async function eventually (check: () => Promise<boolean>, ms: number, what: string): Promise<number> {
  const start = Date.now()
  while (!await check()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(50)
  }
  return Date.now() - start
}

t.test('the CLI disconnects a user: every stream on every replica ends within 1 s with gateway.revoked, its reconnect is refused everywhere, a token issued after is accepted', async t => {
  const old = token('kick')
  const open3 = await Promise.all(replicas.map(async r => await open(r, old)))
  for (const s of open3) t.equal(s.status, 200)
  const other = await open(replicas[0] as GatewayProcess, token('bystander'))
  await sleep(300)
  const run = await cli(['disconnect', '--user', 'kick', '--redis', redis.url, '--prefix', prefix])
  t.equal(run.code, 0, run.stderr)
  t.match(run.stdout, /^\d+-\d+\n$/, 'prints the control entry id')
  const given = Date.now()
  await Promise.all(open3.map(async s => { await s.waitForEnd(1000) }))
  t.ok(Date.now() - given <= 1000, `all three ended in ${Date.now() - given} ms`)
  for (const s of open3) {
    const last = s.events[s.events.length - 1]
    t.equal(last?.event, 'gateway.revoked')
    t.equal(JSON.parse(last?.data ?? '{}').reason, 'revoked')
  }
  t.notOk(other.ended, 'another user\'s stream goes on')
  for (const r of replicas) {
    const res = await getJson(`${r.url}/events?token=${old}`)
    t.equal(res.status, 401, 'the old token is refused on every replica')
    t.equal(res.body.error, 'SSEGW_ERR_AUTH_REVOKED_TOKEN')
  }
  const fresh = token('kick', {}, 0)
  for (const r of replicas) {
    const res = await getJson(`${r.url}/events?token=${fresh}`, {}, { stopAtStream: true })
    t.equal(res.status, 200, 'a token issued after the cut-off is accepted')
  }
  const cut = await redis.client.pttl(`${prefix}__gateway:user:{kick}:before`)
  t.ok(cut > 86_000_000 && cut <= 86_400_000, `the cut-off is kept for CONTROL_MAX_TOKEN_LIFETIME_MS (${cut} ms left)`)
  t.ok(await scrapeMetric(replicas[1]?.internalUrl as string, 'sse_gateway_control_applied_total', { kind: 'revoke-user' }) >= 1, 'counted as applied')
  t.equal(await scrapeMetric(replicas[1]?.internalUrl as string, 'sse_gateway_connections_closed_total', { reason: 'revoked' }), 1)
})

t.test('disconnect --allow-reconnect and --session end streams with gateway.disconnected and refuse nothing', async t => {
  const tok = token('kick2')
  const [a, b] = await Promise.all([open(replicas[0] as GatewayProcess, tok), open(replicas[1] as GatewayProcess, tok)])
  await sleep(200)
  const run = await cli(['disconnect', '--user', 'kick2', '--allow-reconnect', '--redis', redis.url, '--prefix', prefix])
  t.equal(run.code, 0, run.stderr)
  for (const s of [a, b]) {
    await s.waitForEnd(1000)
    t.equal(s.events[s.events.length - 1]?.event, 'gateway.disconnected')
  }
  const again = await open(replicas[2] as GatewayProcess, tok)
  t.equal(again.status, 200, 'the same token comes back')
  // One session, by the id the presence answer (and the logs) show.
  const mine = await presence(replicas[0] as GatewayProcess, 'user=kick2')
  t.equal(mine.streams, 1)
  const session = mine.sessions[0].session as string
  const bad = await cli(['disconnect', '--session', 'nope', '--redis', redis.url])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--session must be a session id/)
  const ok = await post(`${replicas[1]?.internalUrl as string}/control/disconnect`, { session })
  t.equal(ok.status, 200)
  t.same(ok.body.applied, 'disconnect-session')
  await again.waitForEnd(1000)
  t.equal(again.events[again.events.length - 1]?.event, 'gateway.disconnected')
})

t.test('revoke --jti: the token\'s streams end on every replica, it is refused everywhere, its Redis state expires with the token', async t => {
  const exp = Math.floor(Date.now() / 1000) + 600
  const tok = token('jti-user', { jti: 'tok-1', exp })
  const sibling = token('jti-user', { jti: 'tok-2', exp })
  const open3 = await Promise.all(replicas.map(async r => await open(r, tok)))
  await sleep(200)
  const run = await cli(['revoke', '--jti', 'tok-1', '--exp', String(exp), '--redis', redis.url, '--prefix', prefix])
  t.equal(run.code, 0, run.stderr)
  const given = Date.now()
  await Promise.all(open3.map(async s => { await s.waitForEnd(1000) }))
  t.ok(Date.now() - given <= 1000, `ended in ${Date.now() - given} ms`)
  for (const s of open3) t.equal(s.events[s.events.length - 1]?.event, 'gateway.revoked')
  const kept = await open(replicas[0] as GatewayProcess, sibling)
  t.equal(kept.status, 200, 'the user\'s other token is not revoked')
  for (const r of replicas) t.equal((await getJson(`${r.url}/events?token=${tok}`)).body.error, 'SSEGW_ERR_AUTH_REVOKED_TOKEN')
  t.equal(await redis.client.call('pexpiretime', `${prefix}__gateway:jti:tok-1`), exp * 1000, 'the revocation expires at the token\'s exp')
  // A token about to expire: its revocation is gone once it has.
  const shortExp = Math.floor(Date.now() / 1000) + 2
  const r2 = await post(`${replicas[2]?.internalUrl as string}/control/revoke`, { jti: 'tok-short', exp: shortExp })
  t.equal(r2.status, 200)
  t.equal(await redis.client.exists(`${prefix}__gateway:jti:tok-short`), 1)
  await eventually(async () => await redis.client.exists(`${prefix}__gateway:jti:tok-short`) === 0, 4000, 'the revocation to expire')
})

t.test('MAX_CONNECTIONS_PER_USER=3 holds across three replicas under 30 simultaneous connects', async t => {
  const tok = token('capped')
  const tries = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
    const r = replicas[i % 3] as GatewayProcess
    const s = new RawStream(`${r.url}/events?token=${tok}`)
    streams.push(s)
    await s.opened
    return s
  }))
  const ok = tries.filter(s => s.status === 200)
  const refused = tries.filter(s => s.status === 429)
  t.equal(ok.length, 3, 'three streams open')
  t.equal(refused.length, 27, 'the others get 429')
  t.match(JSON.parse(refused[0]?.body ?? '{}'), { error: 'SSEGW_ERR_TOO_MANY_CONNECTIONS', message: /across the gateway's replicas/ })
  t.equal(await redis.client.zcard(`${prefix}__gateway:user:{capped}:conn`), 3, 'three leases')
  ok[0]?.close()
  await eventually(async () => await redis.client.zcard(`${prefix}__gateway:user:{capped}:conn`) === 2, 2000, 'the closed stream\'s lease to go')
  const again = await open(replicas[1] as GatewayProcess, tok)
  t.equal(again.status, 200, 'a slot freed by a close is taken again')
  for (const s of [...ok, again]) s.close()
})

t.test('regression: a client that hangs up while its stream is being admitted leaves no lease behind', async t => {
  const tok = token('quitter')
  const port = Number(new URL((replicas[0] as GatewayProcess).url).port)
  // Admissions wait (scripts are held back by a write pause): the clients leave meanwhile.
  await redis.client.call('client', 'pause', '600', 'WRITE')
  await Promise.all(Array.from({ length: 3 }, async () => {
    await new Promise<void>(resolve => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(`GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\nAccept: text/event-stream\r\n\r\n`)
        setTimeout(() => { sock.destroy(); resolve() }, 200)
      })
      sock.on('error', () => { resolve() })
    })
  }))
  // A lease the replica still held would be renewed; one it gave back is gone for good.
  await sleep(600 + LEASE_MS + 500)
  t.equal(await redis.client.zcard(`${prefix}__gateway:user:{quitter}:conn`), 0, 'no lease left')
  const s = await open(replicas[0] as GatewayProcess, tok)
  t.equal(s.status, 200, 'the user can connect')
  s.close()
})

t.test('presence follows connects, closes and a SIGKILLed replica, whose streams are freed within CONTROL_LEASE_MS', async t => {
  const [r0, r1, r2] = replicas as [GatewayProcess, GatewayProcess, GatewayProcess]
  const alice = await open(r0, token('alice', { topics: ['room.a', 'room.b'] }), '&topic=room.a&topic=room.b')
  const bob = await open(r1, token('bob', { topics: ['room.a'] }), '&topic=room.a')
  const bob2 = await open(r2, token('bob', { topics: ['room.a'] }), '&topic=room.a')
  const carol = await open(r2, token('carol', { topics: ['room.b'] }), '&topic=room.b')
  for (const s of [alice, bob, bob2, carol]) t.equal(s.status, 200)
  const a = await presence(r2, 'channel=topic:room.a')
  t.equal(a.streams, 3, 'three streams read room.a, on two other replicas')
  t.same([...a.users].sort(), ['alice', 'bob'])
  t.equal(a.truncated, false)
  const who = await presence(r1, 'user=alice')
  t.equal(who.streams, 1)
  t.same([...who.channels].sort(), ['topic:room.a', 'topic:room.b', 'user:alice'])
  t.same((await presence(r0, 'channel=user:bob')).streams, 2)
  const limited = await presence(r0, 'channel=topic:room.a&limit=1')
  t.equal(limited.streams, 3, 'the count stays exact')
  t.ok(limited.users.length <= 1 && limited.truncated === true, 'the list is bounded by limit')

  bob2.close()
  await eventually(async () => (await presence(r0, 'channel=topic:room.a')).streams === 2, 1000, 'a close to show')

  // r1 holds bob's stream; kill it with no chance to clean up.
  const capped = token('killcap')
  const held = await Promise.all([open(r1, capped), open(r1, capped), open(r0, capped)])
  for (const s of held) t.equal(s.status, 200)
  t.equal((await getJson(`${r2.url}/events?token=${capped}`)).status, 429, 'the cap is reached')
  r1.kill('SIGKILL')
  const killedAt = Date.now()
  await r1.exited
  const freed = await eventually(async () => {
    const res = await getJson(`${r2.url}/events?token=${capped}`, {}, { stopAtStream: true })
    return res.status === 200
  }, LEASE_MS + 2000, 'the killed replica\'s slots to be freed')
  const elapsed = Date.now() - killedAt
  t.ok(elapsed <= LEASE_MS + 1000, `a slot was free ${elapsed} ms after the SIGKILL (lease ${LEASE_MS} ms; polled for ${freed} ms)`)
  await eventually(async () => {
    const p = await presence(r0, 'channel=topic:room.a')
    return p.streams === 1 && p.users.length === 1 && p.users[0] === 'alice'
  }, LEASE_MS + 1000, 'presence without the killed replica\'s streams')
  t.equal((await presence(r2, 'user=bob')).streams, 0, 'bob reads nothing any more')
})

t.test('the endpoint refuses bad input and bad credentials with clear errors', async t => {
  const base = replicas[0]?.internalUrl as string
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['/control/revoke', { user: 'x', jti: 'y' }, 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /one of `jti`/],
    ['/control/revoke', { jti: 'y', exp: 10 }, 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /in the past/],
    ['/control/revoke', { user: 'x', before: 'yesterday' }, 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /`before` must be/],
    ['/control/revoke', { user: 'x', before: Date.now() + 3_600_000 }, 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /ahead/],
    ['/control/disconnect', { user: '' }, 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /`user` must be/],
    ['/control/disconnect', { user: 'x', before: 'now' }, 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /does not apply|applies to revoke/],
    ['/control/disconnect', [1], 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /JSON object/],
    ['/control/disconnect', '{not json', 400, 'SSEGW_ERR_CONTROL_REQUEST_INVALID', /could not be read/],
  ]
  for (const [path, body, status, code, message] of cases) {
    const res = await post(`${base}${path}`, body)
    t.equal(res.status, status, `${path} ${JSON.stringify(body)}`)
    t.equal(res.body.error, code)
    t.match(res.body.message, message)
  }
  const noAuth = await post(`${base}/control/disconnect`, { user: 'x' }, null)
  t.equal(noAuth.status, 401)
  t.equal(noAuth.body.error, 'SSEGW_ERR_CONTROL_UNAUTHORIZED')
  t.equal((await post(`${base}/control/disconnect`, { user: 'x' }, 'wrong-token-wrong-token-wrong-token')).status, 401)
  const q = await getJson(`${base}/control/presence?channel=nope`, { authorization: `Bearer ${CONTROL_TOKEN}` })
  t.equal(q.status, 400)
  t.match(q.body.message, /topic:<name> or user:<sub>/)
  t.equal((await getJson(`${base}/control/presence?user=x&limit=5000`, { authorization: `Bearer ${CONTROL_TOKEN}` })).status, 400)
  t.equal((await getJson(`${base}/metrics`)).status, 200, 'the other internal routes need no control token')
  const usage = await cli(['revoke', '--user', 'x', '--before', 'soon', '--redis', redis.url])
  t.equal(usage.code, 2)
  t.match(usage.stderr, /--before must be "now"/)
  const nowhere = await cli(['disconnect', '--user', 'x'])
  t.equal(nowhere.code, 2)
  t.match(nowhere.stderr, /no Redis to write to/)
})

t.test('no token and no CONTROL_TOKEN in any replica\'s output', async t => {
  const all = replicas.map(r => r.output()).join('\n')
  t.match(all, /control command applied/, 'the commands were logged')
  t.notOk(all.includes(CONTROL_TOKEN), 'no CONTROL_TOKEN')
  for (const tok of tokensSeen) t.notOk(all.includes(signatureOf(tok)), 'no token signature')
  t.notOk(all.includes('tok-1'), 'no jti')
})
