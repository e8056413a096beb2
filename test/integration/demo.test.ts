/**
 * The demo routes over HTTP: on by default with no REDIS_URL, off with one;
 * `/demo/token` only when the gateway signs with its own generated secret
 * (never logged), with tokens limited to demo topics and the caller's own
 * channel; the page's security headers; the client helper served as a module.
 */
import t from 'tap'
import { ensureBuilt } from '../helpers/process.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis } from '../helpers/redis.js'
import { getJson, openStream } from '../helpers/sse.js'
import { getAnswer, getText, type TestContext } from '../helpers/extra.js'
import { SECRET, hsToken } from '../helpers/token.js'

ensureBuilt()

/** The first command of the README: no REDIS_URL, no JWT_SECRET, DEMO_ENABLED left to its default. */
async function firstRun (t: TestContext, env: Record<string, string | undefined> = {}): Promise<TestGateway> {
  const gw = await startGateway({ JWT_SECRET: undefined, ...env })
  t.teardown(() => gw.close())
  return gw
}

async function post (url: string, token: string, body: unknown): Promise<{ status: number, body: any }> {
  const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}

function claimsOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>
}

t.test('first run: / redirects to /demo, a page with a strict CSP, the client module next to it', async t => {
  const gw = await firstRun(t)
  t.equal(gw.gateway.config.demoEnabled, true, 'DEMO_ENABLED defaults to on without REDIS_URL')
  const root = await fetch(`${gw.url}/`, { redirect: 'manual' })
  t.equal(root.status, 302)
  t.equal(new URL(root.headers.get('location') ?? '', `${gw.url}/`).pathname, '/demo')

  const page = await fetch(`${gw.url}/demo`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html; charset=utf-8/)
  t.equal(page.headers.get('referrer-policy'), 'no-referrer', 'tokens in EventSource URLs never leak as a referrer')
  const csp = page.headers.get('content-security-policy') ?? ''
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1]
  t.ok(nonce, 'a nonce in the CSP')
  t.match(csp, /default-src 'none'/)
  t.match(csp, /connect-src 'self'/)
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)
  const html = await page.text()
  t.match(html, /<title>sse-gateway · live demo<\/title>/)
  t.notMatch(html, /(?:src|href)="https?:/, 'no external resources')
  const tags = [...html.matchAll(/<(script|style)\b([^>]*)>/g)]
  t.ok(tags.length >= 2 && tags.every(m => (m[2] ?? '').includes(`nonce="${nonce ?? ''}"`)), 'every script carries the nonce')
  t.notMatch(html, /<style\b|\sstyle=/, 'no inline style: the style sheet is a file')
  t.same([...html.matchAll(/<script\b([^>]*)>([^<]*)<\/script>/g)].filter(m => !/type="application\/json"/.test(m[1] ?? '') && (m[2] ?? '').trim() !== '').length, 0, 'no inline code: the only inline script is the JSON config')
  t.match(html, /<link rel="stylesheet" href="demo\/demo\.css"/, 'its style sheet')
  t.match(html, /<script type="module" src="demo\/demo\.js"/, 'its script, a module')
  t.notMatch(html, /<textarea id="token"/, 'with demo tokens the page asks for a name, not a token')
  t.notMatch(html, /\{\{|<!-- (?:if|else|end):/, 'the template is filled in')
  t.match(csp, /style-src 'self'(;|$)/)

  // The page's files, and every module they import, resolved as a browser
  // resolves them: served, typed, and without a dangling source map.
  const css = await fetch(new URL('demo/demo.css', `${gw.url}/demo`))
  t.equal(css.status, 200)
  t.match(css.headers.get('content-type'), /^text\/css; charset=utf-8/)
  t.equal(css.headers.get('x-content-type-options'), 'nosniff')
  t.match(await css.text(), /minmax\(0, 1fr\)/)
  const modules = new Map<string, string>()
  const queue = [new URL('demo/demo.js', `${gw.url}/demo`).href]
  for (let href = queue.shift(); href !== undefined; href = queue.shift()) {
    if (modules.has(href)) continue
    const res = await fetch(href)
    t.equal(res.status, 200, `${new URL(href).pathname} is served`)
    t.match(res.headers.get('content-type'), /^text\/javascript; charset=utf-8/)
    t.equal(res.headers.get('cache-control'), 'no-cache')
    const text = await res.text()
    t.notMatch(text, /sourceMappingURL/, `${new URL(href).pathname}: no dangling source map reference`)
    modules.set(href, text)
    for (const m of text.matchAll(/^import .* from '([^']+)'/gm)) queue.push(new URL(m[1] as string, href).href)
  }
  t.ok(modules.has(`${gw.url}/client/sse-client.js`), 'the page imports the client helper')
  const second = await fetch(`${gw.url}/demo`)
  t.not(/'nonce-([^']+)'/.exec(second.headers.get('content-security-policy') ?? '')?.[1], nonce, 'a new nonce per response')

  const client = await fetch(`${gw.url}/client/sse-client.js`)
  t.equal(client.status, 200)
  t.match(client.headers.get('content-type'), /^text\/javascript/)
  const js = await client.text()
  t.match(js, /export function connect/)
  t.notMatch(js, /^import /m, 'no imports: a browser loads it as it is')
  t.notMatch(js, /sourceMappingURL/, 'no dangling source map reference')
})

t.test('/demo/token: a short-lived token for demo topics and the caller\'s own channel; the secret is never logged', async t => {
  const gw = await firstRun(t)
  const secret = gw.gateway.config.jwt?.keys[0]?.key
  t.ok(secret !== undefined && secret.length >= 32, 'a generated secret')
  t.not(secret, SECRET)
  const warning = gw.logs.map(l => JSON.parse(l) as { level: number, msg: string }).find(l => /random per-process secret/.test(l.msg))
  t.equal(warning?.level, 40, 'logged at warn level')
  t.notOk(gw.logs.some(l => l.includes(secret as string)), 'the secret is in no log line')

  const { status, headers, body } = await getJson(`${gw.url}/demo/token?sub=alice`)
  t.equal(status, 200)
  t.equal(headers['cache-control'], 'no-store')
  t.match(body, { sub: 'alice', topics: ['demo.*'], publish: ['topic:demo.*', 'user:alice'] })
  const claims = claimsOf(body.token as string)
  t.match(claims, { sub: 'alice', topics: ['demo.*'], publish: ['topic:demo.*', 'user:alice'] })
  const ttl = (claims.exp as number) - (claims.iat as number)
  t.equal(ttl, 300, 'five minutes by default')
  t.equal(body.expiresAt, (claims.exp as number) * 1000)
  t.equal(claimsOf((await getJson(`${gw.url}/demo/token?sub=bob&ttl=30`)).body.token as string).exp as number - Math.floor(Date.now() / 1000) <= 30, true, 'ttl asks for a shorter life')
  t.match((await getJson(`${gw.url}/demo/token`)).body, { sub: /^guest-[0-9a-f]{6}$/ }, 'a guest name when none is given')

  for (const q of ['sub=', 'sub=a%20b', 'sub=' + 'x'.repeat(65), 'sub=-x', 'sub=a&sub=b', 'sub=a&ttl=0', 'sub=a&ttl=99999', 'sub=a&ttl=1e3']) {
    const r = await getJson(`${gw.url}/demo/token?${q}`)
    t.match(r, { status: 400, body: { error: 'SSEGW_ERR_DEMO_REQUEST_INVALID' } }, q)
  }

  // What the token may do: read demo.* and its own channel, publish there; nothing else.
  const token = body.token as string
  const s = await openStream(`${gw.url}/events?topic=demo.news&token=${token}`)
  t.teardown(() => { s.close() })
  t.equal(s.status, 200)
  const published = await post(`${gw.url}/publish`, token, { channel: 'topic:demo.news', event: 'note', data: 'hi' })
  t.equal(published.status, 200)
  t.match(published.body, { id: /^\d+-\d+$/ })
  await s.waitForEvents(1)
  t.match(s.events[0], { event: 'note', data: 'hi' })
  t.equal((await post(`${gw.url}/publish`, token, { channel: 'user:alice', data: 'self' })).status, 200, 'may publish to its own channel')
  t.equal((await post(`${gw.url}/publish`, token, { channel: 'user:bob', data: 'x' })).status, 403, 'not to another user')
  t.equal((await post(`${gw.url}/publish`, token, { channel: 'topic:orders', data: 'x' })).status, 403, 'not to other topics')
  t.equal((await getAnswer(`${gw.url}/events?topic=orders&token=${token}`)).status, 403, 'nor read them')
  t.equal((await getAnswer(`${gw.url}/events?topic=demo.x&token=${hsToken({ topics: ['demo.*'] })}`)).status, 401, 'a token signed with another secret is refused')
})

t.test('with JWT_SECRET set the demo is served but mints no tokens', async t => {
  const gw = await firstRun(t, { JWT_SECRET: SECRET })
  t.equal(gw.gateway.config.jwt?.keys[0]?.key, SECRET, 'the configured secret is used')
  t.equal((await getJson(`${gw.url}/demo/token?sub=alice`)).status, 404)
  const page = await getText(`${gw.url}/demo`)
  t.equal(page.status, 200)
  t.match(page.body, /id="token"[^>]*placeholder/, 'the page asks for a token')
  t.notOk(gw.logs.some(l => l.includes('random per-process secret')))
})

t.test('DEMO_ENABLED off, or REDIS_URL set: no /demo, /demo/token, /client or / redirect', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const cases: Array<[string, Record<string, string | undefined>]> = [
    ['DEMO_ENABLED=false', { DEMO_ENABLED: 'false' }],
    ['REDIS_URL set', { REDIS_URL: redis.url }],
  ]
  for (const [what, env] of cases) {
    const gw = await firstRun(t, env)
    t.equal(gw.gateway.config.demoEnabled, false, `${what}: off`)
    for (const path of ['/', '/demo', '/demo/token?sub=a', '/client/sse-client.js']) {
      const r = await getJson(`${gw.url}${path}`)
      t.match(r, { status: 404, body: { error: 'SSEGW_ERR_NOT_FOUND' } }, `${what}: ${path} is 404`)
    }
    t.equal(gw.gateway.config.jwt, undefined, `${what}: no secret generated`)
    t.notOk(gw.logs.some(l => l.includes('random per-process secret')))
  }
  const on = await firstRun(t, { REDIS_URL: redis.url, DEMO_ENABLED: 'true' })
  t.equal((await getJson(`${on.url}/demo`)).status, 200, 'DEMO_ENABLED=true turns it on with Redis too')
})
