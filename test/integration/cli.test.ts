/**
 * The command line as a user runs it: `node dist/src/cli.js token` and
 * `publish` as child processes, against a throwaway redis-server and a
 * gateway. Exit codes (0 done, 1 failed, 2 usage), what goes to stdout (the
 * token, the entry id, nothing else) and what goes to stderr.
 */
import { spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { type TestContext } from '../helpers/extra.js'
import { startGateway } from '../helpers/gateway.js'
import { ensureBuilt, freePort } from '../helpers/process.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { openStream } from '../helpers/sse.js'
import { SECRET, hsToken } from '../helpers/token.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = join(ROOT, 'dist', 'src', 'cli.js')
ensureBuilt()

const redis = await startRedis()
t.teardown(() => redis.stop())

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs the CLI with a clean environment (PATH plus `env`), feeding `stdin`. */
async function cli (args: string[], env: Record<string, string> = {}, stdin = ''): Promise<Run> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 30000)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    child.stdin.end(stdin)
  })
}

function payloadOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>
}

function usage (t: TestContext, r: Run, message: RegExp, what: string): void {
  t.equal(r.code, 2, `${what}: exit 2`)
  t.equal(r.stdout, '', `${what}: nothing on stdout`)
  t.match(r.stderr, message, `${what}: says what is wrong`)
  t.match(r.stderr, /usage:\n {2}sse-gateway token/, `${what}: prints the usage`)
}

const ID_LINE = /^\d+-\d+\n$/

t.test('token: a signed HS256 token with the claims asked for', async t => {
  const r = await cli(['token', '--sub', '42', '--topics', 'news, orders.*', '--publish', 'topic:*,user:42', '--ttl', '600', '--aud', 'app', '--iss', 'me'], { JWT_SECRET: SECRET })
  t.equal(r.code, 0, 'exit 0')
  t.equal(r.stderr, '')
  t.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'one JWT on stdout')
  const token = r.stdout.trim()
  t.same(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')), { alg: 'HS256', typ: 'JWT' })
  const p = payloadOf(token)
  t.match(p, { sub: '42', topics: ['news', 'orders.*'], publish: ['topic:*', 'user:42'], aud: 'app', iss: 'me' })
  t.equal((p.exp as number) - (p.iat as number), 600, '--ttl sets exp')

  const named = payloadOf((await cli(['token', '--topics', 'a', '--publish', 'topic:a'], { JWT_SECRET: SECRET, JWT_TOPICS_CLAIM: 'rd', JWT_PUBLISH_CLAIM: 'wr' })).stdout.trim())
  t.match(named, { rd: ['a'], wr: ['topic:a'] }, 'claim names follow JWT_TOPICS_CLAIM and JWT_PUBLISH_CLAIM')
  t.notOk('topics' in named || 'publish' in named)
})

t.test('token: --kid sets the header\'s kid; JWT_SECRET_FILE and the first of several secrets sign; --sub fills JWT_USER_CLAIM', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sse-cli-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'secrets')
  const older = 'older-secret-0123456789-abcdefghijklmnopqr'
  writeFileSync(file, `${SECRET}\n${older}\n`)
  const r = await cli(['token', '--sub', 'ann', '--kid', 'hmac-2026'], { JWT_SECRET_FILE: file, JWT_USER_CLAIM: 'uid' })
  t.equal(r.code, 0, r.stderr)
  const token = r.stdout.trim()
  t.same(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')), { alg: 'HS256', typ: 'JWT', kid: 'hmac-2026' })
  t.match(payloadOf(token), { uid: 'ann' })
  const head = token.slice(0, token.lastIndexOf('.'))
  t.equal(token.slice(token.lastIndexOf('.') + 1), createHmac('sha256', SECRET).update(head).digest('base64url'), 'signed with the first secret')
  usage(t, await cli(['token', '--kid', 'has space'], { JWT_SECRET: SECRET }), /--kid must be/, 'bad --kid')
  usage(t, await cli(['token'], { JWT_SECRET: SECRET, JWT_SECRET_FILE: file }), /both set/, 'both forms')
})

t.test('token: usage errors exit 2', async t => {
  usage(t, await cli(['token', '--sub', '1']), /JWT_SECRET \(or JWT_SECRET_FILE\) must be set/, 'no JWT_SECRET')
  usage(t, await cli(['token'], { JWT_SECRET: 'short' }), /at least 32 characters/, 'short JWT_SECRET')
  usage(t, await cli(['token', '--ttl', 'soon'], { JWT_SECRET: SECRET }), /--ttl must be a positive whole number/, 'bad --ttl')
  usage(t, await cli(['token', '--bogus'], { JWT_SECRET: SECRET }), /Unknown option '--bogus'/, 'unknown option')
})

t.test('no command, an unknown one: exit 2; --help: exit 0', async t => {
  usage(t, await cli([]), /missing command/, 'no command')
  usage(t, await cli(['frobnicate']), /unknown command: frobnicate/, 'unknown command')
  const help = await cli(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /sse-gateway publish --channel/)
})

t.test('publish --redis: prints the entry id; XADD MAXLEN ~ and EXPIRE as the helper does', async t => {
  const prefix = uniquePrefix('cli')
  const r = await cli(['publish', '--channel', 'user:42', '--event', 'notice', '--data', '{"text":"hi"}', '--redis', redis.url, '--prefix', prefix])
  t.equal(r.code, 0, `exit 0 (${r.stderr})`)
  t.match(r.stdout, ID_LINE, 'only the entry id on stdout')
  t.equal(r.stderr, '')
  t.same(await redis.client.xrange(`${prefix}user:42`, '-', '+'), [[r.stdout.trim(), ['event', 'notice', 'data', '{"text":"hi"}']]], 'the entry, with the printed id')
  const ttl = await redis.client.ttl(`${prefix}user:42`)
  t.ok(ttl > 86390 && ttl <= 86400, `user channel: 24 h EXPIRE (${ttl})`)

  const topic = await cli(['publish', '--channel', 'topic:news', '--data', 'x', '--redis', redis.url, '--prefix', prefix])
  t.equal(topic.code, 0)
  t.equal(await redis.client.ttl(`${prefix}topic:news`), -1, 'topic: no EXPIRE')

  const custom = await cli(['publish', '--channel', 'topic:news', '--data', 'y', '--redis', redis.url, '--prefix', prefix, '--expire', '90', '--maxlen', '1'])
  t.equal(custom.code, 0)
  const ttl2 = await redis.client.ttl(`${prefix}topic:news`)
  t.ok(ttl2 > 80 && ttl2 <= 90, `--expire 90 (${ttl2})`)
  t.same((await redis.client.xrevrange(`${prefix}topic:news`, '+', '-', 'COUNT', 1))[0]?.[0], custom.stdout.trim(), 'newest entry is the one printed')
})

t.test('publish: REDIS_URL and KEY_PREFIX from the environment; --data - reads standard input', async t => {
  const prefix = uniquePrefix('cli')
  const data = 'line 1\nline 2\n{"é":"\u{1F600}"}'
  const r = await cli(['publish', '--channel', 'topic:env', '--data', '-'], { REDIS_URL: redis.url, KEY_PREFIX: prefix }, data)
  t.equal(r.code, 0, r.stderr)
  t.same(await redis.client.xrange(`${prefix}topic:env`, '-', '+'), [[r.stdout.trim(), ['data', data]]], 'stdin, byte for byte, under KEY_PREFIX')
})

t.test('publish: REDIS_URL_FILE, as the gateway reads it', async t => {
  const prefix = uniquePrefix('cli')
  const dir = mkdtempSync(join(tmpdir(), 'sse-cli-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'redis-url')
  writeFileSync(file, `${redis.url}\n`)
  const r = await cli(['publish', '--channel', 'topic:f', '--data', 'x'], { REDIS_URL_FILE: file, KEY_PREFIX: prefix })
  t.equal(r.code, 0, r.stderr)
  t.equal(await redis.client.xlen(`${prefix}topic:f`), 1)
  usage(t, await cli(['publish', '--channel', 'topic:f', '--data', 'x'], { REDIS_URL_FILE: file, REDIS_URL: redis.url }), /REDIS_URL and REDIS_URL_FILE are both set/, 'both forms')
})

t.test('publish: usage errors exit 2 and write nothing', async t => {
  const prefix = uniquePrefix('cli')
  const to = ['--redis', redis.url, '--prefix', prefix]
  // Independent runs: side by side, so a loaded machine does not add them up.
  const cases: Array<[string, Promise<Run>, RegExp]> = [
    ['no --channel', cli(['publish', '--data', 'x', ...to]), /--channel is required/],
    ['no --data', cli(['publish', '--channel', 'topic:a', ...to]), /--data is required/],
    ['bad channel', cli(['publish', '--channel', 'news', '--data', 'x', ...to]), /SSEGW_ERR_PUBLISH_CHANNEL_INVALID: Channel "news" is not valid/],
    ['reserved event name', cli(['publish', '--channel', 'topic:a', '--event', 'gateway.gap', '--data', 'x', ...to]), /SSEGW_ERR_PUBLISH_EVENT_INVALID/],
    ['data over MAX_EVENT_BYTES', cli(['publish', '--channel', 'topic:a', '--data', 'x'.repeat(2000), ...to], { MAX_EVENT_BYTES: '1000' }), /SSEGW_ERR_PUBLISH_TOO_LARGE: `data` is 2000 bytes; the gateway relays at most 1000/],
    ['bad --maxlen', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--maxlen', 'lots', ...to]), /--maxlen must be a whole number/],
    ['--maxlen 0', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--maxlen', '0', ...to]), /SSEGW_ERR_PUBLISH_OPTION_INVALID: `maxLen` must be/],
    ['--maxlen and --minid', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--maxlen', '5', '--minid', '1-0', ...to]), /not both/],
    ['no destination', cli(['publish', '--channel', 'topic:a', '--data', 'x']), /nowhere to publish: give --redis URL \(or set REDIS_URL\), --cluster HOST:PORT,... \(or set REDIS_CLUSTER_NODES\), --sentinels with --sentinel-master, or --url/],
    ['both destinations', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--redis', redis.url, '--url', 'http://127.0.0.1:1']), /give one of --redis, --cluster or --url/],
    ['--maxlen with --url', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--url', 'http://127.0.0.1:1', '--token', 't', '--maxlen', '5']), /apply to --redis and --cluster only/],
    ['--cluster and --sentinels', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--cluster', '127.0.0.1:1', '--sentinels', '127.0.0.1:2', '--sentinel-master', 'mymaster']), /give --cluster .* or --sentinels .*, not both/],
    ['--url without a token', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--url', 'http://127.0.0.1:1']), /--token JWT or SSE_GATEWAY_TOKEN/],
    ['bad --url', cli(['publish', '--channel', 'topic:a', '--data', 'x', '--url', 'not a url', '--token', 't']), /--url must be the gateway's base URL/],
    ['positional arguments', cli(['publish', 'topic:a', 'x', ...to]), /unexpected argument "topic:a"/],
  ]
  for (const [what, run, message] of cases) usage(t, await run, message, what)
  t.same(await redis.client.keys(`${prefix}*`), [], 'nothing was written')
})

t.test('publish: failures exit 1 with the reason', async t => {
  const prefix = uniquePrefix('cli')
  const gone = await cli(['publish', '--channel', 'topic:a', '--data', 'x', '--redis', 'unix:///nonexistent/redis.sock'])
  t.equal(gone.code, 1, 'unreachable Redis: exit 1')
  t.equal(gone.stdout, '')
  t.match(gone.stderr, /cannot reach Redis at unix:\/\/\/nonexistent\/redis\.sock: .*ENOENT/)
  const secret = await cli(['publish', '--channel', 'topic:a', '--data', 'x', '--redis', 'redis://user:hunter2secret@127.0.0.1:1'])
  t.equal(secret.code, 1)
  t.notMatch(secret.stderr, /hunter2secret/, 'the Redis password is not printed')
  await redis.client.set(`${prefix}topic:str`, 'not a stream')
  const wrong = await cli(['publish', '--channel', 'topic:str', '--data', 'x', '--redis', redis.url, '--prefix', prefix])
  t.equal(wrong.code, 1, 'a Redis error: exit 1')
  t.match(wrong.stderr, /WRONGTYPE/)
  const port = await freePort()
  const noGateway = await cli(['publish', '--channel', 'topic:a', '--data', 'x', '--url', `http://127.0.0.1:${port}`, '--token', 't'])
  t.equal(noGateway.code, 1, 'unreachable gateway: exit 1')
  t.match(noGateway.stderr, new RegExp(`^sse-gateway publish: cannot reach the gateway at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`))
})

t.test('publish --url: through POST /publish, with a token the token command minted', async t => {
  const prefix = uniquePrefix('cli')
  const gw = await startGateway({ REDIS_URL: redis.url, KEY_PREFIX: prefix })
  t.teardown(() => gw.close())
  const reader = await openStream(`${gw.url}/events?topic=news`, { authorization: `Bearer ${hsToken({ topics: ['news'] })}` })
  t.teardown(() => { reader.close() })

  const minted = await cli(['token', '--publish', 'topic:news'], { JWT_SECRET: SECRET })
  t.equal(minted.code, 0)
  const token = minted.stdout.trim()
  const r = await cli(['publish', '--channel', 'topic:news', '--event', 'price', '--data', '{"p":1}', '--url', gw.url, '--token', token])
  t.equal(r.code, 0, `exit 0 (${r.stderr})`)
  t.match(r.stdout, ID_LINE, 'only the entry id on stdout')
  const [e] = await reader.waitForEvents(1)
  t.same(e, { event: 'price', data: '{"p":1}', id: r.stdout.trim() }, 'the client got it, with the printed id')

  const viaEnv = await cli(['publish', '--channel', 'topic:news', '--data', 'env', '--url', `${gw.url}/`], { SSE_GATEWAY_TOKEN: token })
  t.equal(viaEnv.code, 0, 'token from SSE_GATEWAY_TOKEN, base URL with a trailing slash')

  const denied = await cli(['publish', '--channel', 'topic:other', '--data', 'x', '--url', gw.url, '--token', token])
  t.equal(denied.code, 1, 'refused by the gateway: exit 1')
  t.equal(denied.stdout, '')
  t.match(denied.stderr, /the gateway answered 403: SSEGW_ERR_PUBLISH_FORBIDDEN: This token may not publish to "topic:other"/)
  const reader2 = hsToken({ topics: ['*'] })
  const noClaim = await cli(['publish', '--channel', 'topic:news', '--data', 'x', '--url', gw.url, '--token', reader2])
  t.equal(noClaim.code, 1)
  t.match(noClaim.stderr, /403: SSEGW_ERR_PUBLISH_FORBIDDEN/)
  const local = await cli(['publish', '--channel', 'topic:bad name', '--data', 'x', '--url', gw.url, '--token', token])
  t.equal(local.code, 2, 'a bad channel is refused before the request: exit 2')
})
