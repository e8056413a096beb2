/**
 * Why HTTP/2 matters in a browser (issue 15): one page opens 12 EventSource
 * streams to the gateway over TLS, and all 12 are live at once (each gets
 * an event published after all are open). Over HTTP/1.1 Chromium opens at
 * most 6 connections per host, so the same page gets only 6 streams: shown
 * here too, so the first half of the test could not pass without HTTP/2.
 * The test's own CA is trusted through Chromium's
 * `--ignore-certificate-errors-spki-list` (the SPKI hash of the server key).
 * Screenshot: test-artifacts/http2-12-streams.png.
 *
 * Needs Debian's chromium at /usr/bin/chromium; its absence fails the test.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { scrapeMetric } from '../helpers/extra.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeTestCa, spkiHash } from '../helpers/tls.js'
import { hsToken } from '../helpers/token.js'
import type { MemorySource } from '../../src/source/memory-source.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))
const SCREENSHOT = join(ARTIFACTS, 'http2-12-streams.png')
const STREAMS = 12

async function launch (t: Test, spki: string): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'sse-gw-chromium-'))
  t.teardown(() => { rmSync(profile, { recursive: true, force: true }) })
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 700 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Trust the test server's key, and only it: no --ignore-certificate-errors.
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
    timeout: 60000,
  })
  t.teardown(() => context.close())
  return context
}

/**
 * Opens `n` EventSources on the page and draws each one's state; resolves
 * with how many are open after `settleMs`.
 */
/**
 * Runs in the page: opens `n` EventSources and draws each one's state; the
 * streams are kept on `window.streams`. A script text, since the test's
 * TypeScript has no DOM types.
 */
const OPEN_STREAMS = `async ({ n, token, settleMs }) => {
  document.head.innerHTML = '<title>EventSource streams over HTTP/2</title><style>body{font:15px system-ui,sans-serif;margin:24px}li{margin:4px 0}li.open{color:#0a6}li.got{font-weight:600}li.waiting{color:#a60}</style>'
  document.body.innerHTML = '<h1>' + n + ' EventSource streams, one page</h1><p id="proto"></p><ol id="list"></ol>'
  const list = document.getElementById('list')
  window.streams = []
  for (let i = 0; i < n; i++) {
    const li = document.createElement('li')
    li.className = 'waiting'
    li.textContent = 'stream ' + (i + 1) + ': connecting'
    list.appendChild(li)
    const es = new EventSource('/events?topic=tabs&token=' + encodeURIComponent(token))
    const s = { es, open: false, got: [] }
    es.onopen = () => { s.open = true; li.className = 'open'; li.textContent = 'stream ' + (i + 1) + ': open' }
    es.onmessage = e => { s.got.push(e.data); li.className = 'open got'; li.textContent = 'stream ' + (i + 1) + ': open, got "' + e.data + '"' }
    window.streams.push(s)
  }
  await new Promise(resolve => setTimeout(resolve, settleMs))
  return window.streams.filter(s => s.open).length
}`

/** Opens `n` EventSources on the page; resolves with how many are open after `settleMs`. */
async function openStreams (page: Page, n: number, token: string, settleMs: number): Promise<number> {
  return await page.evaluate(`(${OPEN_STREAMS})(${JSON.stringify({ n, token, settleMs })})`) as number
}

async function countGot (page: Page, data: string): Promise<number> {
  return await page.evaluate(`window.streams.filter(s => s.got.includes(${JSON.stringify(data)})).length`) as number
}

async function gatewayWith (t: Test, env: Record<string, string>): Promise<TestGateway> {
  const gw = await startGateway({ PUBLIC_TOPICS: 'tabs', DEMO_ENABLED: 'false', ...env })
  t.teardown(() => gw.close())
  return gw
}

t.test(`Chromium over TLS: ${STREAMS} EventSource streams in one page, all live at once (HTTP/2)`, async t => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does it). This test must not be skipped.`)
    return
  }
  const ca = makeTestCa()
  t.teardown(() => { ca.remove() })
  const gw = await gatewayWith(t, { TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.serverKey })
  t.match(gw.url, /^https:/)
  const context = await launch(t, spkiHash(ca.serverCert))
  const page = context.pages()[0] ?? await context.newPage()
  // Any page of the gateway's origin: the streams are same-origin.
  const answer = await page.goto(`${gw.url}/page`)
  t.equal(answer?.status(), 404, 'the gateway\'s origin loads over TLS, its certificate trusted')
  const token = hsToken({ sub: 'tabs-user' })

  const open = await openStreams(page, STREAMS, token, 1500)
  t.equal(open, STREAMS, `all ${STREAMS} streams open`)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_open'), STREAMS, `the gateway holds ${STREAMS} streams`)
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_opened_total', { protocol: 'h2' }), STREAMS, 'every one over HTTP/2')

  const marker = `after-all-open-${Date.now()}`
  ;(gw.gateway.source as MemorySource).append('sse:topic:tabs', { data: marker })
  const deadline = Date.now() + 10000
  while (await countGot(page, marker) < STREAMS && Date.now() < deadline) await page.waitForTimeout(50)
  t.equal(await countGot(page, marker), STREAMS, `the event published after all were open reached all ${STREAMS}`)

  await page.evaluate(`document.getElementById('proto').textContent = ${JSON.stringify(`HTTP/2 over TLS (ALPN h2): ${STREAMS} streams on one connection, each got the event published after all were open.`)}`)
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  t.ok(existsSync(SCREENSHOT), `screenshot saved to ${SCREENSHOT}`)
})

t.test(`the same page over HTTP/1.1: Chromium opens only 6 of the ${STREAMS} (why HTTP/2)`, async t => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing`)
    return
  }
  const gw = await gatewayWith(t, {})
  const context = await launch(t, 'none')
  const page = context.pages()[0] ?? await context.newPage()
  await page.goto(`${gw.url}/page`)
  const open = await openStreams(page, STREAMS, hsToken({ sub: 'tabs-user' }), 1500)
  t.equal(open, 6, 'six streams open, the other six wait for a connection')
  t.equal(await scrapeMetric(gw.internalUrl, 'sse_gateway_connections_open'), 6, 'the gateway sees six')
})
