/**
 * The demo page's script (served as `/demo/demo.js`, a module). It uses the
 * client helper the way an app would: a token from `demo/token` (or pasted),
 * events shown as they arrive with their channel, gap and expiry notices,
 * back-off shown in the status pill, a publish form over `POST /publish`,
 * and the same stream as `curl` lines.
 *
 * Every value that reaches the DOM goes through `textContent`, never
 * `innerHTML`: event data is producer input.
 */
import { connect, streamChannels, streamUrl, type Connection, type ConnectionState, type GapChannel, type StateDetail, type TokenReason } from '../client/sse-client.js'
import { checkConnectForm, parseTopics, readClaims } from './connect-form.js'

/** What the gateway tells the page (the `demo-config` JSON in the HTML). */
interface DemoConfig {
  /** `GET demo/token` exists; otherwise the page asks for a token. */
  readonly tokenEndpoint: boolean
  /** `POST /publish` exists. */
  readonly publishEnabled: boolean
  /** MAX_TOPICS_PER_CONNECTION. */
  readonly maxTopics: number
}

/** The token the stream runs on. */
interface TokenInfo {
  readonly token: string
  readonly sub?: string | undefined
  /** Milliseconds. */
  readonly expiresAt?: number | undefined
}

/** The stream the page has open: what it was asked for, kept apart from the form, which may be edited meanwhile. */
interface ActiveStream {
  /** Set once `connect` returns (it reports its first state before that). */
  connection: Connection | undefined
  readonly sub: string | undefined
  readonly topics: readonly string[]
}

const cfg = JSON.parse(byId('demo-config').textContent ?? '{}') as DemoConfig
const local = storageOf(() => window.localStorage)
const session = storageOf(() => window.sessionStorage)

const NAMES_KEY = 'sse-demo:event-names'
const names = new Set(['note', 'chat', 'price', 'order', 'alert', ...storedNames()])
const MAX_ITEMS = 200
const STATE_TEXT: Record<ConnectionState, string> = { connecting: 'connecting', open: 'live', reconnecting: 'reconnecting', 'backing-off': 'retrying', closed: 'disconnected' }

let active: ActiveStream | undefined
let tokenInfo: TokenInfo | undefined
let received = 0
// Notices already shown since the stream last opened: a retry loop adds each once.
const shown = new Set<string>()
let backoffTimer: ReturnType<typeof setInterval> | undefined

function byId (id: string): HTMLElement {
  const node = document.getElementById(id)
  if (node === null) throw new Error(`demo page: no #${id}`)
  return node
}

function input (id: string): HTMLInputElement | HTMLTextAreaElement {
  return byId(id) as HTMLInputElement | HTMLTextAreaElement
}

function storageOf (get: () => Storage): Storage | undefined {
  try {
    return get()
  } catch {
    // Storage disabled or a sandboxed frame: the page works without it.
    return undefined
  }
}

function getItem (storage: Storage | undefined, key: string): string | undefined {
  try {
    return storage?.getItem(key) ?? undefined
  } catch {
    return undefined
  }
}

function putItem (storage: Storage | undefined, key: string, value: string): void {
  try {
    storage?.setItem(key, value)
  } catch {}
}

function storedNames (): string[] {
  try {
    const v = JSON.parse(getItem(session, NAMES_KEY) ?? '[]') as unknown
    return Array.isArray(v) ? v.filter((n): n is string => typeof n === 'string') : []
  } catch {
    return []
  }
}

function el (tag: string, className?: string, text?: string): HTMLElement {
  const node = document.createElement(tag)
  if (className !== undefined && className !== '') node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function clock (): string {
  const d = new Date()
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`
}

function pretty (data: string): string {
  try {
    const v = JSON.parse(data) as unknown
    if (v !== null && typeof v === 'object') return JSON.stringify(v, null, 2)
  } catch {}
  return data
}

function add (li: HTMLElement): void {
  const list = byId('events')
  list.querySelector('.empty')?.remove()
  li.classList.add('fresh')
  list.prepend(li)
  while (list.children.length > MAX_ITEMS) list.lastElementChild?.remove()
}

function showEvent (name: string, data: string, id: string, channel: string | undefined): void {
  received++
  byId('count').textContent = received === 1 ? '1 event' : `${received} events`
  byId('cursor').textContent = id === '' ? '(none)' : id
  const li = el('li', 'event')
  li.dataset.name = name
  const line = el('div', 'line')
  line.append(el('span', name === 'message' ? 'name unnamed' : 'name', name === 'message' ? 'message (unnamed)' : name))
  // The client helper names it from the event's id (left out for an id it cannot read).
  if (channel !== undefined) line.append(el('span', 'channel', channel))
  line.append(el('time', '', clock()))
  li.append(line, el('pre', 'data', pretty(data)), el('div', 'id', `id ${id === '' ? '(none)' : id}`))
  add(li)
}

function notice (kind: string, title: string, text?: string): void {
  const key = `${kind}|${title}|${text ?? ''}`
  if (shown.has(key)) return
  shown.add(key)
  const li = el('li', 'notice')
  li.dataset.kind = kind
  const line = el('div', 'line')
  line.append(el('span', 'badge', kind), el('strong', '', title), el('time', '', clock()))
  li.append(line)
  if (text !== undefined && text !== '') li.append(el('p', '', text))
  add(li)
}

function setPill (state: ConnectionState, detail?: StateDetail): void {
  byId('status').dataset.state = state
  clearInterval(backoffTimer)
  const text = byId('status-text')
  if (state === 'backing-off' && detail?.delayMs !== undefined && detail.delayMs > 0) {
    const until = Date.now() + detail.delayMs
    const tick = (): void => { text.textContent = `retrying in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s` }
    tick()
    backoffTimer = setInterval(tick, 250)
  } else {
    text.textContent = STATE_TEXT[state]
  }
  byId('connect-btn').textContent = state === 'closed' ? 'Connect' : 'Reconnect'
  ;(byId('disconnect-btn') as HTMLButtonElement).disabled = state === 'closed'
}

function formTopics (): string[] {
  return parseTopics(input('topics').value)
}

/** The stream's topics when one is open, else what the form says. */
function currentTopics (): readonly string[] {
  return active?.topics ?? formTopics()
}

async function fetchToken (sub: string): Promise<TokenInfo> {
  const res = await fetch(`demo/token?sub=${encodeURIComponent(sub)}`, { cache: 'no-store' })
  const body = await res.json().catch(() => ({})) as { token?: string, sub?: string, expiresAt?: number, message?: string }
  if (!res.ok || body.token === undefined) throw new Error(body.message ?? `HTTP ${res.status}`)
  tokenInfo = { token: body.token, sub: body.sub, expiresAt: body.expiresAt }
  renderToken()
  return tokenInfo
}

/** getToken of the stream: a demo token for the stream's own name, or whatever the token box holds now. */
function tokenSource (sub: string | undefined): (reason: TokenReason) => Promise<string> {
  return async reason => {
    if (reason === 'token-expired') {
      notice('token', 'Token expired', 'The gateway ended the stream with gateway.token-expired. The client fetched a fresh token and resumed from its cursor: nothing is missed.')
    }
    if (cfg.tokenEndpoint) return (await fetchToken(sub ?? '')).token
    // A pasted token is read again on every reconnect: pasting a fresh one fixes a 401.
    const token = input('token').value.trim()
    if (token === '') throw new Error('Paste a token first.')
    const claims = readClaims(token)
    tokenInfo = { token, sub: claims?.sub, expiresAt: claims?.expiresAt }
    renderToken()
    return token
  }
}

function renderToken (): void {
  const sub = tokenInfo?.sub
  byId('who').textContent = sub !== undefined ? `user:${sub}` : '(no sub)'
  const channels = byId('channels')
  channels.replaceChildren()
  for (const t of currentTopics()) channels.append(new Option(`topic:${t}`))
  if (sub !== undefined) channels.append(new Option(`user:${sub}`))
  renderSnippet()
  renderExpiry()
}

function renderExpiry (): void {
  const at = tokenInfo?.expiresAt
  const out = byId('expires')
  if (at === undefined) {
    out.textContent = '-'
    return
  }
  const s = Math.max(0, Math.round((at - Date.now()) / 1000))
  out.textContent = s === 0 ? 'expired' : `in ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

function renderSnippet (): void {
  const base = new URL('.', location.href).href.replace(/\/$/, '')
  const topics = currentTopics()
  const sub = (cfg.tokenEndpoint ? active?.sub ?? input('sub').value.trim() : tokenInfo?.sub) ?? 'you'
  const lines: string[] = []
  if (cfg.tokenEndpoint) {
    lines.push(`TOKEN=$(curl -s "${base}/demo/token?sub=${encodeURIComponent(sub === '' ? 'you' : sub)}" | node -pe "JSON.parse(require('fs').readFileSync(0)).token")`)
  } else {
    lines.push(`TOKEN=$(npm run -s token -- --sub ${sub} --topics 'demo.*')`)
  }
  lines.push('', '# read: the same stream as this page')
  lines.push(`curl -N "${base}/events?${topics.map(t => `topic=${encodeURIComponent(t)}`).join('&')}&token=$TOKEN"`)
  if (cfg.publishEnabled) {
    lines.push('', '# publish: shows up here at once')
    lines.push(`curl -s ${base}/publish -H "authorization: Bearer $TOKEN" -H "content-type: application/json" \\`)
    lines.push(`  -d '${JSON.stringify({ channel: `topic:${topics[0] ?? 'demo.news'}`, event: 'note', data: 'hello from curl' })}'`)
  }
  byId('snippet').textContent = lines.join('\n')
}

async function diagnose (stream: ActiveStream): Promise<void> {
  // EventSource does not say why it gave up: ask the same URL for JSON.
  if (tokenInfo === undefined) return
  const url = streamUrl(new URL('events', location.href), stream.topics, tokenInfo.token, stream.connection?.lastEventId)
  const ctl = new AbortController()
  try {
    const res = await fetch(url, { headers: { accept: 'application/json' }, signal: ctl.signal, cache: 'no-store' })
    if (res.ok) {
      ctl.abort()
      return
    }
    const body = await res.json().catch(() => null) as { error?: string, message?: string } | null
    const hint = cfg.tokenEndpoint || res.status !== 401 ? '' : ' Paste a fresh token: the client retries with whatever the box holds.'
    notice('error', `The gateway refused the stream (${res.status}${body?.error !== undefined ? ` ${body.error}` : ''})`, (body?.message ?? '') + hint)
  } catch {}
}

function onState (s: ActiveStream, state: ConnectionState, detail: StateDetail): void {
  // A stream the page has replaced or closed reports its end: not news.
  if (s !== active) return
  setPill(state, detail)
  if (state === 'open') {
    shown.clear()
    notice('connected', 'Stream open', `Reading ${streamChannels(s.sub, s.topics).join(', ')}${s.connection?.lastEventId !== undefined ? '; resumed from the saved cursor.' : '.'}`)
  }
  if (state === 'reconnecting' && detail.reason === 'unavailable') notice('retry', 'Gateway unavailable', `${detail.message ?? ''} EventSource reconnects by itself and resumes.`)
  if (state === 'backing-off' && detail.reason === 'error') void diagnose(s)
  if (state === 'backing-off' && detail.reason === 'token-error') {
    const error = detail.error
    notice('error', 'Could not get a token', error instanceof Error ? error.message : String(error))
  }
}

function showConnectError (field: string | undefined, message: string): void {
  byId('connect-error').textContent = message
  for (const id of ['sub', 'topics', 'token']) input(id).removeAttribute('aria-invalid')
  if (field !== undefined) input(field).setAttribute('aria-invalid', 'true')
}

/**
 * Connects with what the form says. The form is checked first, and only a
 * valid one replaces the stream the page has: a typo must not cost a
 * working stream.
 */
function start (): void {
  const check = checkConnectForm(
    { sub: input('sub').value, topics: input('topics').value, token: input('token').value },
    { tokenEndpoint: cfg.tokenEndpoint, maxTopics: cfg.maxTopics, nowMs: Date.now() })
  if (!check.ok) {
    showConnectError(check.field, check.message)
    return
  }
  showConnectError(undefined, '')
  const { sub, topics } = check
  if (cfg.tokenEndpoint && sub !== undefined) putItem(local, 'sse-demo:sub', sub)
  putItem(local, 'sse-demo:topics', topics.join(', '))
  active?.connection?.close()
  shown.clear()
  // The stream is the page's before it connects: its first state changes are shown.
  const stream: ActiveStream = { connection: undefined, sub, topics }
  active = stream
  stream.connection = connect({
    url: new URL('events?history=20', location.href),
    topics,
    getToken: tokenSource(sub),
    events: [...names],
    storageKey: `sse-demo:cursor:${cfg.tokenEndpoint ? sub ?? '' : 'pasted-token'}|${[...topics].sort().join(',')}`,
    // The user channel's name: the demo token's sub (a pasted token's is read by the helper).
    ...(sub !== undefined ? { user: sub } : {}),
    onEvent: (name, data, id, channel) => {
      showEvent(name, data, id, channel)
    },
    onGap: (channels: GapChannel[]) => {
      notice('gap', 'History gap', `${channels.map(c => `${c.channel} (${c.reason})`).join(', ')}: events of these channels were lost to trimming. An app would refetch their state now; delivery goes on.`)
    },
    onState: (state, detail) => { onState(stream, state, detail) },
  })
  renderToken()
}

async function publish (event: SubmitEvent): Promise<void> {
  event.preventDefault()
  const out = byId('publish-result')
  const channel = input('channel').value.trim()
  const name = input('event').value.trim()
  const data = input('data').value
  out.className = 'result'
  out.textContent = 'Publishing...'
  try {
    if (name !== '') {
      names.add(name)
      putItem(session, NAMES_KEY, JSON.stringify([...names]))
      active?.connection?.listen(name)
    }
    if (cfg.tokenEndpoint && (tokenInfo === undefined || (tokenInfo.expiresAt ?? 0) - Date.now() < 5000)) {
      await fetchToken(active?.sub ?? input('sub').value.trim())
    }
    if (tokenInfo === undefined) throw new Error('Connect first: publishing needs a token.')
    const body = name !== '' ? { channel, event: name, data } : { channel, data }
    const res = await fetch('publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tokenInfo.token}` },
      body: JSON.stringify(body),
    })
    const answer = await res.json().catch(() => ({})) as { id?: string, channel?: string, error?: string, message?: string }
    if (!res.ok) throw new Error(`${res.status} ${answer.error ?? ''}: ${answer.message ?? 'refused'}`)
    const read = streamChannels(tokenInfo.sub, currentTopics())
    out.className = 'result ok'
    out.textContent = `Published to ${answer.channel ?? channel} as ${answer.id ?? '?'}${read.includes(channel) ? '' : ` (not shown here: this page does not read ${channel})`}`
  } catch (err) {
    out.className = 'result err'
    out.textContent = err instanceof Error ? err.message : String(err)
  }
}

input('sub').value = getItem(local, 'sse-demo:sub') ?? `guest-${Math.random().toString(16).slice(2, 6)}`
input('topics').value = getItem(local, 'sse-demo:topics') ?? 'demo.news, demo.chat'
if (cfg.publishEnabled) input('channel').value = `topic:${formTopics()[0] ?? 'demo.news'}`
byId('connect-form').addEventListener('submit', e => {
  e.preventDefault()
  start()
})
byId('disconnect-btn').addEventListener('click', () => {
  const stream = active
  active = undefined
  stream?.connection?.close()
  setPill('closed')
})
byId('clear').addEventListener('click', () => {
  received = 0
  byId('count').textContent = '0 events'
  byId('events').replaceChildren()
})
input('topics').addEventListener('change', renderToken)
if (cfg.publishEnabled) byId('publish-form').addEventListener('submit', e => { void publish(e as SubmitEvent) })
setInterval(renderExpiry, 1000)
renderSnippet()
if (cfg.tokenEndpoint) start()
else setPill('closed')
