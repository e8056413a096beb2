/**
 * The first-run promise in a real browser: the gateway started as the
 * README's first command starts it (no REDIS_URL, no JWT_SECRET, demo on by
 * default), /demo opened in headless Chromium, an event published through
 * the page's form shows up live, one published by another service too, and
 * a reload resumes from the stored cursor, each event showing its channel.
 * On a 390 px phone the page does not scroll sideways, and the connect form
 * refuses a bad name or topic without dropping the stream it has.
 * Screenshots are saved to test-artifacts/demo.png and demo-390.png.
 *
 * Needs Debian's chromium at /usr/bin/chromium (`.ci/run` installs it). Its
 * absence fails the test: a skipped browser test would hide a broken promise.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { startGateway } from '../helpers/gateway.js'
import { ensureBuilt } from '../helpers/process.js'
import { hsToken } from '../helpers/token.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const SCREENSHOT = join(ARTIFACTS, 'demo.png')
const PHONE_SCREENSHOT = join(ARTIFACTS, 'demo-390.png')
/** An iPhone 12 to 15's viewport, in CSS pixels. */
const PHONE = { width: 390, height: 844 }

async function launch (t: Test): Promise<BrowserContext> {
  // A fresh profile per run: no cached page, no stored cursor.
  const profile = mkdtempSync(join(tmpdir(), 'sse-gw-chromium-'))
  t.teardown(() => { rmSync(profile, { recursive: true, force: true }) })
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    timeout: 60000,
  })
  t.teardown(() => context.close())
  return context
}

/** Console errors, failed requests and uncaught exceptions of a page (a CSP violation is a console error). */
function watchProblems (page: Page): string[] {
  const problems: string[] = []
  page.on('console', m => { if (m.type() === 'error') problems.push(`console: ${m.text()}`) })
  page.on('pageerror', e => { problems.push(`pageerror: ${e.message}`) })
  page.on('requestfailed', r => {
    // The page's own EventSource is cut when the page reloads or closes.
    if (!new URL(r.url()).pathname.startsWith('/events')) problems.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`)
  })
  return problems
}

t.test('/demo in Chromium: publish through the form and the event appears live', async t => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does it). This test must not be skipped.`)
    return
  }
  // The page imports the compiled client helper (dist/src/client/sse-client.js).
  ensureBuilt()
  // As `npm start` with no settings: the in-memory engine, a generated
  // secret, the demo on. (startGateway only adds loopback ports.)
  const gw = await startGateway({ JWT_SECRET: undefined })
  t.teardown(() => gw.close())
  t.equal(gw.gateway.config.redisUrl, undefined, 'no REDIS_URL: the in-memory engine')
  t.equal(gw.gateway.config.demoEnabled, true, 'the demo is on by default')

  const context = await launch(t)
  const page = context.pages()[0] ?? await context.newPage()
  const problems = watchProblems(page)

  await page.goto(`${gw.url}/`)
  t.equal(new URL(page.url()).pathname, '/demo', '/ redirects to the demo')
  t.equal(await page.title(), 'sse-gateway · live demo')
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 15000 })
  t.equal(await page.locator('#status-text').textContent(), 'live', 'the page connected with a demo token')
  const who = await page.locator('#who').textContent()
  t.match(who, /^user:guest-[0-9a-f]{4}$/, 'as a guest with its own channel')

  // Through the form: POST /publish, then back over the stream.
  const marker = `hello-${Date.now()}`
  await page.fill('#channel', 'topic:demo.news')
  await page.fill('#event', 'greeting')
  await page.fill('#data', JSON.stringify({ text: 'Hello from headless Chromium', marker }))
  await page.click('#publish-btn')
  const item = page.locator('li.event', { hasText: marker })
  await item.waitFor({ timeout: 10000 })
  t.equal(await item.locator('.name').textContent(), 'greeting', 'with its event name')
  t.equal(await item.locator('.channel').textContent(), 'topic:demo.news', 'and its channel')
  t.match(await item.locator('pre.data').textContent(), /"marker": "hello-\d+"/, 'its data, pretty-printed')
  const id = ((await item.locator('.id').textContent()) ?? '').replace(/^id /, '')
  t.match(id, /^1\.[0-9a-z._]+$/, 'and its id (the cursor)')
  t.match(await item.locator('time').textContent(), /^\d\d:\d\d:\d\d\.\d{3}$/, 'and the time it arrived')
  const result = await page.locator('#publish-result').textContent()
  t.match(result, /^Published to topic:demo\.news as \d+-\d+$/, 'the form shows the entry id')
  t.equal(await page.locator('#cursor').textContent(), id, 'the cursor moved')

  // Another service publishes to this user's channel: it appears without any action in the page.
  const sub = (who ?? '').slice('user:'.length)
  const { token } = await (await fetch(`${gw.url}/demo/token?sub=${sub}`)).json() as { token: string }
  const res = await fetch(`${gw.url}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: `user:${sub}`, data: 'A message just for you, from the server side' }),
  })
  t.equal(res.status, 200)
  await page.locator('li.event', { hasText: 'just for you' }).waitFor({ timeout: 10000 })
  t.equal(await page.locator('li.event', { hasText: 'just for you' }).locator('.name').textContent(), 'message (unnamed)')
  t.equal(await page.locator('li.event', { hasText: 'just for you' }).locator('.channel').textContent(), `user:${sub}`, 'on the user\'s own channel')
  t.equal(await page.locator('li.event').count(), 2, 'two events, each once')

  // Let the arrival highlight fade, so the screenshot shows the page at rest.
  await page.waitForTimeout(1500)
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  t.ok(existsSync(SCREENSHOT), `screenshot saved to ${SCREENSHOT}`)
  t.equal(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), true, 'no horizontal scroll at 1280 px')

  // Leaving and coming back resumes from the cursor kept in sessionStorage:
  // what was published while the page was away arrives, nothing from before.
  const missed = `while-away-${Date.now()}`
  await page.goto('about:blank')
  await fetch(`${gw.url}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'topic:demo.chat', event: 'note', data: missed }),
  })
  await page.goto(`${gw.url}/demo`)
  await page.locator('li.event', { hasText: missed }).waitFor({ timeout: 15000 })
  t.match(await page.locator('li.notice[data-kind="connected"]').first().textContent(), /resumed from the saved cursor/)
  t.equal(await page.locator('li.event').count(), 1, 'only the missed event: nothing from before the reload again')
  t.equal(await page.locator('li.event', { hasText: missed }).locator('.channel').textContent(), 'topic:demo.chat', 'its channel, told from the resumed cursor')

  t.same(problems, [], 'no console errors, CSP violations or failed requests')
})

t.test('/demo on a 390 px phone: no sideways scroll; the connect form refuses bad input and keeps the stream', async t => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does it). This test must not be skipped.`)
    return
  }
  ensureBuilt()
  const gw = await startGateway({ JWT_SECRET: undefined })
  t.teardown(() => gw.close())
  const context = await launch(t)
  const page = context.pages()[0] ?? await context.newPage()
  await page.setViewportSize(PHONE)
  const problems = watchProblems(page)
  const streams: string[] = []
  page.on('request', r => { if (new URL(r.url()).pathname === '/events') streams.push(r.url()) })

  await page.goto(`${gw.url}/demo`)
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 15000 })
  const sub = ((await page.locator('#who').textContent()) ?? '').slice('user:'.length)
  const { token } = await (await fetch(`${gw.url}/demo/token?sub=${sub}`)).json() as { token: string }
  const publish = async (channel: string, data: string): Promise<void> => {
    const res = await fetch(`${gw.url}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, event: 'note', data }),
    })
    t.equal(res.status, 200, `published to ${channel}`)
  }
  t.equal(streams.length, 1, 'one stream open')

  // Refused before anything is dropped: the error is shown, the stream stays.
  const refusals: Array<[string, string, string, RegExp]> = [
    ['a name the token endpoint refuses', 'not a name!', 'demo.news, demo.chat', /^Name: 1 to 64 of/],
    ['a topic a demo token cannot read', sub, 'demo.news, orders', /demo\.\* topics only: orders$/],
    ['a topic name the gateway refuses', sub, 'demo.news, demo.b@d name?', /^Not a topic name: name\?/],
  ]
  for (const [what, name, topics, message] of refusals) {
    await page.fill('#sub', name)
    await page.fill('#topics', topics)
    await page.click('#connect-btn')
    t.match(await page.locator('#connect-error').textContent(), message, `${what}: the form says why`)
    t.equal(await page.locator('#status').getAttribute('data-state'), 'open', `${what}: the stream is still open`)
  }
  t.equal(await page.locator('#topics').getAttribute('aria-invalid'), 'true', 'the field at fault is marked')
  t.equal(streams.length, 1, 'no new stream was opened')
  const kept = `still-here-${Date.now()}`
  await publish('topic:demo.news', kept)
  await page.locator('li.event', { hasText: kept }).waitFor({ timeout: 10000 })
  t.equal(await page.locator('li.event', { hasText: kept }).locator('.channel').textContent(), 'topic:demo.news', 'and it still delivers')

  // A valid form replaces the stream: no topics, so only the user channel,
  // whose ids are bare entry ids; the channel is the only one there is.
  await page.fill('#sub', sub)
  await page.fill('#topics', '')
  await page.click('#connect-btn')
  await page.locator('li.notice[data-kind="connected"]', { hasText: `Reading user:${sub}.` }).waitFor({ timeout: 15000 })
  t.equal(await page.locator('#connect-error').textContent(), '', 'the error is cleared')
  t.equal(await page.locator('#sub').getAttribute('aria-invalid'), null)
  t.equal(streams.length, 2, 'a new stream')
  const solo = `solo-${Date.now()}`
  await publish(`user:${sub}`, solo)
  const item = page.locator('li.event', { hasText: solo })
  await item.waitFor({ timeout: 10000 })
  t.match(await item.locator('.id').textContent(), /^id \d+-\d+$/, 'a single-channel stream sends bare entry ids')
  t.equal(await item.locator('.channel').textContent(), `user:${sub}`, 'and the event shows its channel')

  // The phone layout: nothing wider than the viewport; the terminal
  // snippet's long lines scroll inside their own box.
  await page.fill('#topics', 'demo.news, demo.chat')
  await page.click('#connect-btn')
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 15000 })
  await page.waitForTimeout(1500)
  // A string, evaluated in the page: this file is type-checked without the DOM.
  const layout = await page.evaluate(`(() => {
    const pre = document.getElementById('snippet')
    return { page: document.documentElement.scrollWidth, viewport: window.innerWidth, preScroll: pre.scrollWidth, preBox: pre.clientWidth, preOverflow: getComputedStyle(pre).overflowX }
  })()`) as { page: number, viewport: number, preScroll: number, preBox: number, preOverflow: string }
  t.equal(layout.viewport, PHONE.width)
  t.ok(layout.page <= PHONE.width, `the page is ${layout.page} px wide, no more than the ${PHONE.width} px viewport: no horizontal scroll`)
  t.ok(layout.preBox <= PHONE.width && layout.preScroll > layout.preBox, `the snippet (${layout.preScroll} px of text in a ${layout.preBox} px box) scrolls inside itself`)
  t.equal(layout.preOverflow, 'auto')
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: PHONE_SCREENSHOT, fullPage: true })
  t.ok(existsSync(PHONE_SCREENSHOT), `screenshot saved to ${PHONE_SCREENSHOT}`)

  t.same(problems, [], 'no console errors, CSP violations or failed requests')
})

t.test('/demo with JWT_SECRET set: a pasted token; a refused one shows why and backs off, a fresh one is taken up', async t => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does it). This test must not be skipped.`)
    return
  }
  ensureBuilt()
  const gw = await startGateway({})
  t.teardown(() => gw.close())
  const context = await launch(t)
  const page = context.pages()[0] ?? await context.newPage()
  const problems = watchProblems(page)

  await page.goto(`${gw.url}/demo`)
  t.equal(await page.locator('#status-text').textContent(), 'disconnected', 'no token, no stream')
  t.ok(await page.locator('textarea#token').isVisible(), 'the page asks for a token')

  const claims = { sub: 'carol', topics: ['demo.*'], publish: ['topic:demo.*'] }
  const checks: Array<[string, string, RegExp]> = [
    ['no token', '', /^Paste a token first\.$/],
    ['no JWT', 'hello', /^This is not a JWT/],
    ['an expired token', hsToken({ ...claims, exp: Math.floor(Date.now() / 1000) - 60 }), /expired/],
  ]
  for (const [what, token, message] of checks) {
    await page.fill('#token', token)
    await page.click('#connect-btn')
    t.match(await page.locator('#connect-error').textContent(), message, `${what}: refused by the form`)
  }
  t.equal(await page.locator('#token').getAttribute('aria-invalid'), 'true')
  t.equal(await page.locator('#status-text').textContent(), 'disconnected', 'and nothing was opened')

  // Signed with another secret: the form cannot tell, the gateway refuses.
  await page.fill('#token', hsToken(claims, 'another-secret-0123456789-abcdefghijklmnopqrstuv'))
  await page.fill('#topics', 'demo.news')
  await page.click('#connect-btn')
  const refused = page.locator('li.notice[data-kind="error"]', { hasText: 'The gateway refused the stream (401' })
  await refused.waitFor({ timeout: 15000 })
  t.match(await refused.textContent(), /Paste a fresh token/, 'the gateway\'s reason, and what to do')
  t.equal(await page.locator('#status').getAttribute('data-state'), 'backing-off', 'backing off')
  t.match(await page.locator('#status-text').textContent(), /^retrying in \d+ s$/)

  // The next attempt reads the box again.
  const good = hsToken(claims)
  await page.fill('#token', good)
  await page.locator('#status[data-state="open"]').waitFor({ timeout: 30000 })
  t.equal(await page.locator('#who').textContent(), 'user:carol', 'the token\'s sub is the user channel')
  const marker = `pasted-${Date.now()}`
  const res = await fetch(`${gw.url}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${good}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'topic:demo.news', event: 'note', data: marker }),
  })
  t.equal(res.status, 200)
  const item = page.locator('li.event', { hasText: marker })
  await item.waitFor({ timeout: 10000 })
  t.equal(await item.locator('.channel').textContent(), 'topic:demo.news')

  // The refused attempts are logged by the browser (a 401 and a JSON answer
  // to EventSource); anything else is a problem.
  const unexpected = problems.filter(p => !/^console: (Failed to load resource: the server responded with a status of 401|EventSource's response has a MIME type)/.test(p))
  t.same(unexpected, [], 'no other console errors, CSP violations or failed requests')
})
