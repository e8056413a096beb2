/**
 * The connect form's rules, checked before the page drops the stream it has:
 * a form the gateway would refuse must not cost the user a working stream.
 * The rules are the gateway's own (src/core/channels.ts, the demo token
 * route), so an accepted form is one the gateway accepts. No imports: the
 * browser loads this module as it is.
 */

/** Topic names: the gateway's `TOPIC_NAME`. */
const TOPIC_NAME = /^[A-Za-z0-9][A-Za-z0-9._\-:@/]{0,127}$/
/** Names `GET /demo/token` accepts as `sub`. */
const DEMO_SUB = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** Demo tokens read `demo.*` topics only. */
const DEMO_TOPIC = /^demo\../
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** What the connect form holds. */
export interface ConnectInput {
  /** The name box (dev-token mode). */
  readonly sub: string
  /** The topics box: names separated by commas or spaces. */
  readonly topics: string
  /** The token box (pasted-token mode). */
  readonly token: string
}

export interface ConnectRules {
  /** Tokens come from `GET /demo/token` (so `sub` is asked, topics are `demo.*`); otherwise one is pasted. */
  readonly tokenEndpoint: boolean
  /** The gateway's MAX_TOPICS_PER_CONNECTION. */
  readonly maxTopics: number
  /** Now, in milliseconds (the pasted token's `exp` is checked against it). */
  readonly nowMs: number
}

/** The claims of a pasted token the page reads (it cannot verify the signature: the gateway does). */
export interface PastedClaims {
  readonly sub?: string
  /** Expiry, in milliseconds. */
  readonly expiresAt?: number
}

export type ConnectCheck =
  | { readonly ok: true, readonly sub: string | undefined, readonly topics: string[], readonly claims: PastedClaims | undefined }
  | { readonly ok: false, readonly field: 'sub' | 'topics' | 'token', readonly message: string }

/** The topics box as a list: separated by commas or white space, each once. */
export function parseTopics (text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter(t => t !== ''))]
}

function base64UrlJson (part: string): unknown {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/')
  const binary = atob(base64.padEnd(base64.length + (4 - base64.length % 4) % 4, '='))
  // atob gives one character per byte: decode them as the UTF-8 they are.
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, c => c.charCodeAt(0))))
}

/** The payload of a JWT, read without verifying it; undefined when it is not one. */
export function readClaims (token: string): PastedClaims | undefined {
  if (!JWT_SHAPE.test(token)) return undefined
  let payload: unknown
  try {
    payload = base64UrlJson(token.split('.')[1] as string)
  } catch {
    return undefined
  }
  if (payload === null || typeof payload !== 'object') return undefined
  const { sub, exp } = payload as { sub?: unknown, exp?: unknown }
  return {
    ...(typeof sub === 'string' && sub !== '' ? { sub } : {}),
    ...(typeof exp === 'number' ? { expiresAt: exp * 1000 } : {}),
  }
}

/** Checks the connect form; the first problem found, naming its field, or what to connect with. */
export function checkConnectForm (input: ConnectInput, rules: ConnectRules): ConnectCheck {
  const topics = parseTopics(input.topics)
  let sub: string | undefined
  let claims: PastedClaims | undefined
  if (rules.tokenEndpoint) {
    sub = input.sub.trim()
    if (!DEMO_SUB.test(sub)) return { ok: false, field: 'sub', message: 'Name: 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.' }
  } else {
    const token = input.token.trim()
    if (token === '') return { ok: false, field: 'token', message: 'Paste a token first.' }
    claims = readClaims(token)
    if (claims === undefined) return { ok: false, field: 'token', message: 'This is not a JWT: three base64url parts separated by dots, the middle one JSON.' }
    if (claims.expiresAt !== undefined && claims.expiresAt <= rules.nowMs) return { ok: false, field: 'token', message: 'This token has expired: mint a fresh one.' }
    sub = claims.sub
  }
  const badName = topics.filter(t => !TOPIC_NAME.test(t))
  if (badName.length > 0) return { ok: false, field: 'topics', message: `Not a topic name: ${badName.join(', ')} (1 to 128 of A-Z a-z 0-9 . _ - : @ /, starting with a letter or digit).` }
  if (rules.tokenEndpoint) {
    const notDemo = topics.filter(t => !DEMO_TOPIC.test(t))
    if (notDemo.length > 0) return { ok: false, field: 'topics', message: `Demo tokens read demo.* topics only: ${notDemo.join(', ')}` }
  }
  if (topics.length > rules.maxTopics) return { ok: false, field: 'topics', message: `${topics.length} topics: this gateway allows at most ${rules.maxTopics} per connection.` }
  if (topics.length === 0 && sub === undefined) return { ok: false, field: 'topics', message: 'Name at least one topic: this token has no sub, so no user channel.' }
  return { ok: true, sub, topics, claims }
}
