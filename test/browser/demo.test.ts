/**
 * The first-run promise in a real browser: the gateway started as the
 * README's first command starts it (no REDIS_URL, no JWT_SECRET, demo on by
 * default), /demo opened in headless Chromium, an event published through
 * the page's form shows up live, one published by another service too, and
 * a reload resumes from the stored cursor. A screenshot is saved to
 * test-artifacts/demo.png.
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

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const SCREENSHOT = join(ARTIFACTS, 'demo.png')

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
  t.equal(await page.locator('li.event').count(), 2, 'two events, each once')

  // Let the arrival highlight fade, so the screenshot shows the page at rest.
  await page.waitForTimeout(1500)
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  t.ok(existsSync(SCREENSHOT), `screenshot saved to ${SCREENSHOT}`)

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

  t.same(problems, [], 'no console errors, CSP violations or failed requests')
})
