/**
 * The demo page: one HTML document with its CSS and script inline (under a
 * per-response CSP nonce), no external resources, no build step. It imports
 * the client helper from `client/sse-client.js` (served by the same route)
 * and exercises it the way an app would: token from `demo/token` (or pasted),
 * events shown as they arrive, gap and expiry notices, a publish form over
 * `POST /publish`. Every value that reaches the DOM goes through
 * `textContent`, never `innerHTML`: event data is producer input.
 *
 * The embedded script avoids template literals so that this file's own
 * template literal stays plain text.
 */

export interface DemoPageOptions {
  /** CSP nonce of this response (base64). */
  readonly nonce: string
  /** `GET demo/token` exists (the gateway signs with a generated secret); otherwise the page asks for a token. */
  readonly tokenEndpoint: boolean
  /** `POST /publish` exists. */
  readonly publishEnabled: boolean
  readonly topicsClaim: string
  readonly publishClaim: string
}

/** JSON safe inside a `<script>` element. */
function scriptJson (value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`)
}

const STYLE = `
:root {
  --bg: #f4f5f8; --panel: #ffffff; --ink: #17181c; --muted: #60646f; --line: #e3e5ea;
  --accent: #4f46e5; --accent-ink: #ffffff; --accent-soft: #eef0ff;
  --ok: #0f9f6e; --ok-soft: #e3f6ee; --warn: #b7791f; --warn-soft: #fdf3e1; --bad: #d33a3a; --bad-soft: #fdeaea;
  --code-bg: #f7f7fa; --shadow: 0 1px 2px rgba(16, 18, 27, .06), 0 4px 16px rgba(16, 18, 27, .05);
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1115; --panel: #171a21; --ink: #e8eaf0; --muted: #9aa0ad; --line: #272b35;
    --accent: #8b84ff; --accent-ink: #0f1115; --accent-soft: #23234a;
    --ok: #3ccf91; --ok-soft: #12301f; --warn: #f0b44c; --warn-soft: #33280f; --bad: #ff6b6b; --bad-soft: #3a1717;
    --code-bg: #12151b; --shadow: none;
  }
}
* { box-sizing: border-box; }
html, body { margin: 0; }
body {
  background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  -webkit-font-smoothing: antialiased;
}
header.top {
  display: flex; align-items: center; justify-content: space-between; gap: 16px;
  padding: 14px 28px; background: var(--panel); border-bottom: 1px solid var(--line);
  position: sticky; top: 0; z-index: 2;
}
.brand { display: flex; align-items: center; gap: 10px; font-weight: 650; font-size: 17px; letter-spacing: -.01em; }
.logo { width: 26px; height: 26px; border-radius: 8px; background: linear-gradient(135deg, var(--accent), #06b6d4); display: grid; place-items: center; }
.logo::after { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #fff; box-shadow: 0 0 0 4px rgba(255,255,255,.35); }
.tag { font-size: 12px; font-weight: 600; color: var(--accent); background: var(--accent-soft); padding: 2px 8px; border-radius: 999px; }
.pill { display: inline-flex; align-items: center; gap: 8px; padding: 5px 12px; border-radius: 999px; font-size: 13px; font-weight: 600; background: var(--warn-soft); color: var(--warn); }
.pill .dot { width: 8px; height: 8px; border-radius: 50%; background: currentColor; }
.pill[data-state="open"] { background: var(--ok-soft); color: var(--ok); }
.pill[data-state="open"] .dot { animation: pulse 1.6s ease-out infinite; }
.pill[data-state="backing-off"] { background: var(--bad-soft); color: var(--bad); }
.pill[data-state="closed"] { background: var(--line); color: var(--muted); }
@keyframes pulse { 0% { box-shadow: 0 0 0 0 currentColor; } 70% { box-shadow: 0 0 0 7px transparent; } 100% { box-shadow: 0 0 0 0 transparent; } }
main { display: grid; grid-template-columns: minmax(300px, 390px) 1fr; gap: 20px; padding: 22px 28px 8px; max-width: 1320px; margin: 0 auto; align-items: start; }
@media (max-width: 880px) { main { grid-template-columns: 1fr; padding: 16px; } header.top { padding: 12px 16px; } }
.side { display: grid; gap: 20px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; padding: 18px 20px; box-shadow: var(--shadow); }
.card h2 { margin: 0 0 12px; font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); font-weight: 650; }
label { display: block; font-size: 13px; font-weight: 600; margin: 12px 0 5px; }
label:first-of-type { margin-top: 0; }
label small { font-weight: 400; color: var(--muted); }
input, textarea {
  width: 100%; font: inherit; color: var(--ink); background: var(--bg); border: 1px solid var(--line);
  border-radius: 9px; padding: 8px 11px; outline: none; transition: border-color .15s, box-shadow .15s;
}
textarea { font-family: var(--mono); font-size: 13px; resize: vertical; min-height: 76px; }
input:focus, textarea:focus { border-color: var(--accent); box-shadow: 0 0 0 3px var(--accent-soft); }
.row { display: flex; gap: 10px; margin-top: 14px; align-items: center; flex-wrap: wrap; }
button {
  font: inherit; font-weight: 600; border-radius: 9px; padding: 8px 16px; cursor: pointer;
  border: 1px solid var(--accent); background: var(--accent); color: var(--accent-ink); transition: filter .15s, transform .05s;
}
button:hover { filter: brightness(1.08); }
button:active { transform: translateY(1px); }
button.ghost { background: transparent; color: var(--ink); border-color: var(--line); }
button:disabled { opacity: .5; cursor: default; }
dl.facts { display: grid; grid-template-columns: auto 1fr; gap: 6px 14px; margin: 16px 0 0; font-size: 13px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-family: var(--mono); font-size: 12.5px; overflow-wrap: anywhere; }
.hint { font-size: 13px; color: var(--muted); margin: 10px 0 0; }
.result { font-size: 13px; margin: 0; min-height: 1.5em; overflow-wrap: anywhere; }
.result.ok { color: var(--ok); } .result.err { color: var(--bad); }
pre.snippet { margin: 0; padding: 12px 14px; background: var(--code-bg); border: 1px solid var(--line); border-radius: 9px; font: 12.5px/1.6 var(--mono); white-space: pre; overflow-x: auto; color: var(--ink); }
.wide { grid-column: 1 / -1; }
.feed { min-height: 60vh; display: flex; flex-direction: column; }
.feed-head { display: flex; align-items: center; gap: 12px; margin-bottom: 6px; }
.feed-head h2 { margin: 0; }
.feed-head .count { font-size: 13px; color: var(--muted); margin-right: auto; }
.feed-head button { padding: 4px 12px; font-size: 13px; }
ol.events { list-style: none; margin: 0; padding: 0; }
ol.events li { border-top: 1px solid var(--line); padding: 12px 4px; }
ol.events li:first-child { border-top: 0; }
li.empty { color: var(--muted); text-align: center; padding: 56px 12px !important; }
li.empty strong { display: block; color: var(--ink); font-size: 16px; margin-bottom: 4px; }
li.event .line, li.notice .line { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
li.event .name { font: 600 12.5px var(--mono); color: var(--accent); background: var(--accent-soft); padding: 2px 8px; border-radius: 6px; }
li.event .name.unnamed { color: var(--muted); background: var(--line); }
li time { font: 12px var(--mono); color: var(--muted); margin-left: auto; }
li.event pre.data { margin: 8px 0 6px; padding: 10px 12px; background: var(--code-bg); border-radius: 8px; font: 13px/1.5 var(--mono); white-space: pre-wrap; overflow-wrap: anywhere; max-height: 260px; overflow: auto; }
li.event .id { font: 11.5px var(--mono); color: var(--muted); overflow-wrap: anywhere; }
li.notice { font-size: 13.5px; }
li.notice .badge { font-size: 11.5px; font-weight: 700; text-transform: uppercase; letter-spacing: .05em; padding: 2px 8px; border-radius: 6px; background: var(--warn-soft); color: var(--warn); }
li.notice[data-kind="gap"] .badge { background: var(--bad-soft); color: var(--bad); }
li.notice[data-kind="connected"] .badge { background: var(--ok-soft); color: var(--ok); }
li.notice[data-kind="error"] .badge { background: var(--bad-soft); color: var(--bad); }
li.notice p { margin: 4px 0 0; color: var(--muted); }
li.fresh { animation: arrive 1.4s ease-out; }
@keyframes arrive { from { background: var(--accent-soft); } to { background: transparent; } }
footer { max-width: 1320px; margin: 0 auto; padding: 6px 28px 28px; color: var(--muted); font-size: 13px; }
footer code, .hint code { font-family: var(--mono); font-size: 12px; background: var(--code-bg); border: 1px solid var(--line); border-radius: 5px; padding: 0 4px; }
.hidden { display: none !important; }
`

const SCRIPT = `
import { connect, streamUrl } from './client/sse-client.js'

const cfg = JSON.parse(document.getElementById('demo-config').textContent)
const $ = id => document.getElementById(id)
const local = (() => { try { return window.localStorage } catch { return null } })()
const session = (() => { try { return window.sessionStorage } catch { return null } })()
const get = (s, k) => { try { return s ? s.getItem(k) : null } catch { return null } }
const put = (s, k, v) => { try { if (s) s.setItem(k, v) } catch {} }

const NAMES_KEY = 'sse-demo:event-names'
const names = new Set(['note', 'chat', 'price', 'order', 'alert'].concat(JSON.parse(get(session, NAMES_KEY) || '[]')))
const MAX_ITEMS = 200

let conn = null
let tokenInfo = null
let received = 0
// Notices already shown since the stream last opened: a retry loop adds each once.
const shown = new Set()
let backoffTimer = null

function el (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function clock () {
  const d = new Date()
  const p = (n, w) => String(n).padStart(w || 2, '0')
  return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3)
}

function pretty (data) {
  try {
    const v = JSON.parse(data)
    if (v !== null && typeof v === 'object') return JSON.stringify(v, null, 2)
  } catch {}
  return data
}

function add (li) {
  const list = $('events')
  const empty = list.querySelector('.empty')
  if (empty) empty.remove()
  li.classList.add('fresh')
  list.prepend(li)
  while (list.children.length > MAX_ITEMS) list.lastElementChild.remove()
}

function showEvent (name, data, id) {
  received++
  $('count').textContent = received === 1 ? '1 event' : received + ' events'
  $('cursor').textContent = id || '(none)'
  const li = el('li', 'event')
  li.dataset.name = name
  const line = el('div', 'line')
  line.append(el('span', name === 'message' ? 'name unnamed' : 'name', name === 'message' ? 'message (unnamed)' : name), el('time', '', clock()))
  const pre = el('pre', 'data', pretty(data))
  const idLine = el('div', 'id', 'id ' + (id || '(none)'))
  li.append(line, pre, idLine)
  add(li)
}

function notice (kind, title, text) {
  const key = kind + '|' + title + '|' + text
  if (shown.has(key)) return
  shown.add(key)
  const li = el('li', 'notice')
  li.dataset.kind = kind
  const line = el('div', 'line')
  line.append(el('span', 'badge', kind), el('strong', '', title), el('time', '', clock()))
  li.append(line)
  if (text) li.append(el('p', '', text))
  add(li)
}

const STATE_TEXT = { connecting: 'connecting', open: 'live', reconnecting: 'reconnecting', 'backing-off': 'retrying', closed: 'disconnected' }

function setPill (state, detail) {
  const pill = $('status')
  pill.dataset.state = state
  clearInterval(backoffTimer)
  if (state === 'backing-off' && detail && detail.delayMs) {
    const until = Date.now() + detail.delayMs
    const tick = () => { $('status-text').textContent = 'retrying in ' + Math.max(0, Math.ceil((until - Date.now()) / 1000)) + ' s' }
    tick()
    backoffTimer = setInterval(tick, 250)
  } else {
    $('status-text').textContent = STATE_TEXT[state] || state
  }
  $('connect-btn').textContent = state === 'closed' ? 'Connect' : 'Reconnect'
  $('disconnect-btn').disabled = state === 'closed'
}

function topicsList () {
  return $('topics').value.split(/[\\s,]+/).filter(Boolean)
}

function subName () {
  return $('sub').value.trim()
}

function decodeClaims (token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(atob(part))
  } catch { return {} }
}

async function fetchToken () {
  const res = await fetch('demo/token?sub=' + encodeURIComponent(subName()), { cache: 'no-store' })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(body.message || ('HTTP ' + res.status))
  tokenInfo = body
  renderToken()
  return body
}

async function getToken (reason) {
  if (reason === 'token-expired') {
    notice('token', 'Token expired', 'The gateway ended the stream with gateway.token-expired. The client fetched a fresh token and resumed from its cursor: nothing is missed.')
  }
  if (cfg.tokenEndpoint) return (await fetchToken()).token
  const token = $('token').value.trim()
  if (!token) throw new Error('Paste a token first.')
  const claims = decodeClaims(token)
  tokenInfo = { token, sub: claims.sub, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined }
  renderToken()
  return token
}

function renderToken () {
  const sub = tokenInfo && tokenInfo.sub
  $('who').textContent = sub ? 'user:' + sub : '(no sub)'
  const channels = $('channels')
  channels.replaceChildren()
  for (const t of topicsList()) channels.append(new Option('topic:' + t))
  if (sub) channels.append(new Option('user:' + sub))
  renderSnippet()
  renderExpiry()
}

function renderExpiry () {
  const at = tokenInfo && tokenInfo.expiresAt
  if (!at) { $('expires').textContent = '-'; return }
  const s = Math.max(0, Math.round((at - Date.now()) / 1000))
  $('expires').textContent = s === 0 ? 'expired' : 'in ' + Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0')
}

function renderSnippet () {
  const base = new URL('.', location.href).href.replace(/\\/$/, '')
  const topics = topicsList()
  const sub = (cfg.tokenEndpoint ? subName() : tokenInfo && tokenInfo.sub) || 'you'
  const lines = []
  if (cfg.tokenEndpoint) {
    lines.push('TOKEN=$(curl -s "' + base + '/demo/token?sub=' + encodeURIComponent(sub) + '" | node -pe "JSON.parse(require(\\'fs\\').readFileSync(0)).token")')
  } else {
    lines.push('TOKEN=$(npm run -s token -- --sub ' + sub + " --topics 'demo.*')")
  }
  lines.push('', '# read: the same stream as this page')
  lines.push('curl -N "' + base + '/events?' + topics.map(t => 'topic=' + encodeURIComponent(t)).join('&') + '&token=$TOKEN"')
  if (cfg.publishEnabled) {
    lines.push('', '# publish: shows up here at once')
    lines.push('curl -s ' + base + '/publish -H "authorization: Bearer $TOKEN" -H "content-type: application/json" \\\\')
    lines.push("  -d '" + JSON.stringify({ channel: 'topic:' + (topics[0] || 'demo.news'), event: 'note', data: 'hello from curl' }) + "'")
  }
  $('snippet').textContent = lines.join('\\n')
}

async function diagnose () {
  // EventSource does not say why it gave up: ask the same URL for JSON.
  if (!tokenInfo) return
  const url = streamUrl(new URL('events', location.href), topicsList(), tokenInfo.token, conn && conn.lastEventId)
  const ctl = new AbortController()
  try {
    const res = await fetch(url, { headers: { accept: 'application/json' }, signal: ctl.signal, cache: 'no-store' })
    if (res.ok) { ctl.abort(); return }
    const body = await res.json().catch(() => null)
    const hint = cfg.tokenEndpoint || res.status !== 401 ? '' : ' Paste a fresh token: the client retries with whatever the box holds.'
    notice('error', 'The gateway refused the stream (' + res.status + (body && body.error ? ' ' + body.error : '') + ')', (body && body.message ? body.message : '') + hint)
  } catch {}
}

function start () {
  if (conn) conn.close()
  $('connect-error').textContent = ''
  const topics = topicsList()
  if (cfg.tokenEndpoint) {
    const sub = subName()
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(sub)) { $('connect-error').textContent = 'Name: 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.'; return }
    const bad = topics.filter(t => !/^demo\\.[A-Za-z0-9._:@/-]+$/.test(t))
    if (bad.length > 0) { $('connect-error').textContent = 'Demo tokens read demo.* topics only: ' + bad.join(', '); return }
    put(local, 'sse-demo:sub', sub)
  }
  put(local, 'sse-demo:topics', topics.join(', '))
  shown.clear()
  conn = connect({
    url: new URL('events?history=20', location.href),
    topics,
    getToken,
    events: [...names],
    storageKey: 'sse-demo:cursor:' + (cfg.tokenEndpoint ? subName() : 'pasted-token') + '|' + topics.slice().sort().join(','),
    onEvent: showEvent,
    onGap: channels => {
      notice('gap', 'History gap', channels.map(c => c.channel + ' (' + c.reason + ')').join(', ') + ': events of these channels were lost to trimming. An app would refetch their state now; delivery goes on.')
    },
    onState: (state, detail) => {
      setPill(state, detail)
      if (state === 'open') shown.clear()
      if (state === 'open') notice('connected', 'Stream open', 'Reading ' + ['user:' + ((tokenInfo && tokenInfo.sub) || '?')].concat(topics.map(t => 'topic:' + t)).join(', ') + (conn && conn.lastEventId ? '; resumed from the saved cursor.' : '.'))
      if (state === 'reconnecting' && detail.reason === 'unavailable') notice('retry', 'Gateway unavailable', (detail.message || '') + ' EventSource reconnects by itself and resumes.')
      if (state === 'backing-off' && detail.reason === 'error') diagnose()
      if (state === 'backing-off' && detail.reason === 'token-error') notice('error', 'Could not get a token', String(detail.error && detail.error.message || detail.error))
    },
  })
  renderSnippet()
}

async function publish (event) {
  event.preventDefault()
  const out = $('publish-result')
  const channel = $('channel').value.trim()
  const name = $('event').value.trim()
  const data = $('data').value
  out.className = 'result'
  out.textContent = 'Publishing...'
  try {
    if (name) {
      names.add(name)
      put(session, NAMES_KEY, JSON.stringify([...names]))
      if (conn) conn.listen(name)
    }
    if (cfg.tokenEndpoint && (!tokenInfo || tokenInfo.expiresAt - Date.now() < 5000)) await fetchToken()
    if (!tokenInfo) throw new Error('Connect first: publishing needs a token.')
    const body = name ? { channel, event: name, data } : { channel, data }
    const res = await fetch('publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + tokenInfo.token },
      body: JSON.stringify(body),
    })
    const answer = await res.json().catch(() => ({}))
    if (!res.ok) throw new Error(res.status + ' ' + (answer.error || '') + ': ' + (answer.message || 'refused'))
    const shown = topicsList().map(t => 'topic:' + t).concat(tokenInfo.sub ? ['user:' + tokenInfo.sub] : [])
    out.className = 'result ok'
    out.textContent = 'Published to ' + (answer.channel || channel) + ' as ' + answer.id + (shown.includes(channel) ? '' : ' (not shown here: this page does not read ' + channel + ')')
  } catch (err) {
    out.className = 'result err'
    out.textContent = err.message
  }
}

$('sub').value = get(local, 'sse-demo:sub') || ('guest-' + Math.random().toString(16).slice(2, 6))
$('topics').value = get(local, 'sse-demo:topics') || 'demo.news, demo.chat'
if (cfg.publishEnabled) $('channel').value = 'topic:' + (topicsList()[0] || 'demo.news')
$('connect-form').addEventListener('submit', e => { e.preventDefault(); start() })
$('disconnect-btn').addEventListener('click', () => { if (conn) conn.close(); conn = null })
$('clear').addEventListener('click', () => {
  received = 0
  $('count').textContent = '0 events'
  $('events').replaceChildren()
})
$('topics').addEventListener('change', renderToken)
if (cfg.publishEnabled) $('publish-form').addEventListener('submit', publish)
setInterval(renderExpiry, 1000)
renderSnippet()
if (cfg.tokenEndpoint) start()
else setPill('closed')
`

export function demoPage (opts: DemoPageOptions): string {
  const nonce = escapeHtml(opts.nonce)
  const config = scriptJson({ tokenEndpoint: opts.tokenEndpoint, publishEnabled: opts.publishEnabled })
  const identity = opts.tokenEndpoint
    ? `<label for="sub">Your name <small>(the token's <code>sub</code>: your channel is user:&lt;name&gt;)</small></label>
        <input id="sub" name="sub" autocomplete="off" spellcheck="false" maxlength="64">
        <input id="token" class="hidden" tabindex="-1" aria-hidden="true">`
    : `<input id="sub" class="hidden" tabindex="-1" aria-hidden="true">
        <label for="token">Token <small>(JWT_SECRET is set: mint one with <code>npm run token -- --sub you --topics 'demo.*'</code>; add a <code>${escapeHtml(opts.publishClaim)}</code> claim to publish)</small></label>
        <textarea id="token" name="token" rows="3" spellcheck="false" placeholder="eyJhbGciOi..."></textarea>`
  const publish = opts.publishEnabled
    ? `<section class="card" aria-labelledby="publish-title">
      <h2 id="publish-title">Publish</h2>
      <form id="publish-form" autocomplete="off">
        <label for="channel">Channel <small>(topic:demo.* or your user channel)</small></label>
        <input id="channel" name="channel" list="channels" spellcheck="false" required>
        <datalist id="channels"></datalist>
        <label for="event">Event name <small>(optional)</small></label>
        <input id="event" name="event" value="note" spellcheck="false" maxlength="128">
        <label for="data">Data</label>
        <textarea id="data" name="data" rows="4" spellcheck="false">{"text": "Hello from the demo page"}</textarea>
        <div class="row"><button id="publish-btn" type="submit">Publish</button></div>
        <p id="publish-result" class="result" role="status"></p>
      </form>
      <p class="hint">Sent with <code>POST /publish</code>; the gateway answers with the entry id, and the event comes back over the stream.</p>
    </section>`
    : `<section class="card"><h2>Publish</h2><p class="hint"><code>POST /publish</code> is off on this gateway (PUBLISH_ENABLED=false): publish with the CLI or XADD.</p>
      <datalist id="channels"></datalist></section>`

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>sse-gateway · live demo</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header class="top">
  <div class="brand"><span class="logo" aria-hidden="true"></span>sse-gateway <span class="tag">live demo</span></div>
  <div id="status" class="pill" data-state="connecting" role="status" aria-live="polite"><span class="dot" aria-hidden="true"></span><span id="status-text">connecting</span></div>
</header>
<main>
  <div class="side">
    <section class="card" aria-labelledby="connection-title">
      <h2 id="connection-title">Connection</h2>
      <form id="connect-form" autocomplete="off">
        ${identity}
        <label for="topics">Topics <small>(comma-separated, demo.*)</small></label>
        <input id="topics" name="topics" spellcheck="false">
        <div class="row">
          <button id="connect-btn" type="submit">Connect</button>
          <button id="disconnect-btn" class="ghost" type="button">Disconnect</button>
        </div>
        <p id="connect-error" class="result err" role="alert"></p>
      </form>
      <dl class="facts">
        <dt>Channel</dt><dd id="who">-</dd>
        <dt>Token expires</dt><dd id="expires">-</dd>
        <dt>Cursor</dt><dd id="cursor">(none yet)</dd>
      </dl>
    </section>
    ${publish}
  </div>
  <section class="card feed" aria-labelledby="feed-title">
    <div class="feed-head">
      <h2 id="feed-title">Live events</h2>
      <span id="count" class="count">0 events</span>
      <button id="clear" class="ghost" type="button">Clear</button>
    </div>
    <ol id="events" class="events" aria-live="polite">
      <li class="empty"><strong>Waiting for events</strong>Publish something: it appears here the moment the gateway relays it.</li>
    </ol>
  </section>
  <section class="card wide" aria-labelledby="terminal-title">
    <h2 id="terminal-title">From a terminal</h2>
    <pre id="snippet" class="snippet"></pre>
  </section>
</main>
<footer>
  The page reads <code>GET /events</code> through <code>client/sse-client.js</code>: a fresh token when the old one expires
  (<code>gateway.token-expired</code>), a notice on <code>gateway.gap</code>, back-off with jitter when the gateway refuses,
  and the cursor kept in sessionStorage, so a reload resumes where it left off. Open a second window and publish from one: both update.
</footer>
<script type="application/json" id="demo-config" nonce="${nonce}">${config}</script>
<script type="module" nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`
}
