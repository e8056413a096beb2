/**
 * A local identity provider for JWKS tests: signing keys with a `kid`, tokens
 * with any header, and an HTTP server (node:http on 127.0.0.1, port 0) that
 * publishes key sets per path, counts fetches, and can fail, hang, answer
 * too much or go away, as a real endpoint does.
 */
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateKeyPairSync, sign, type JsonWebKey, type KeyObject } from 'node:crypto'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export type SigningAlg = 'RS256' | 'ES256' | 'EdDSA'

export interface SigningKey {
  readonly kid: string
  readonly alg: SigningAlg
  readonly privateKey: KeyObject
  /** The public JWK as an identity provider publishes it (`kid`, `use`, `alg`). */
  readonly jwk: JsonWebKey
  /** The public key as PEM. */
  readonly publicPem: string
}

export function signingKey (kid: string, alg: SigningAlg = 'RS256'): SigningKey {
  const { publicKey, privateKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519')
  return {
    kid,
    alg,
    privateKey,
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg },
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

/**
 * A token signed by `key` with its `alg` and `kid` (the header may add or
 * override anything: `kid: undefined` drops it, `jku` adds one); `exp` an
 * hour from now unless the claims say otherwise.
 */
export function signedToken (key: SigningKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const head: Record<string, unknown> = { alg: key.alg, typ: 'JWT', kid: key.kid, ...header }
  for (const k of Object.keys(head)) if (head[k] === undefined) delete head[k]
  const body: Record<string, unknown> = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims }
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k]
  const input = `${b64(head)}.${b64(body)}`
  const sig = key.alg === 'EdDSA'
    ? sign(null, Buffer.from(input), key.privateKey)
    : sign('sha256', Buffer.from(input), key.alg === 'ES256' ? { key: key.privateKey, dsaEncoding: 'ieee-p1363' } : key.privateKey)
  return `${input}.${sig.toString('base64url')}`
}

/** How a path answers: its key set, or a failure. */
export type Behaviour =
  | { readonly kind: 'keys', readonly keys: readonly unknown[], readonly cacheControl?: string }
  | { readonly kind: 'status', readonly status: number }
  | { readonly kind: 'hang' }
  | { readonly kind: 'body', readonly body: string }

export class JwksServer {
  readonly #server: Server
  readonly #paths = new Map<string, Behaviour>()
  readonly #fetches = new Map<string, number>()
  readonly #hanging = new Set<ServerResponse>()
  base = ''

  private constructor () {
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] as string
      this.#fetches.set(path, (this.#fetches.get(path) ?? 0) + 1)
      const b = this.#paths.get(path)
      if (b === undefined) {
        res.writeHead(404).end()
        return
      }
      switch (b.kind) {
        case 'keys':
          res.writeHead(200, { 'content-type': 'application/json', ...(b.cacheControl !== undefined ? { 'cache-control': b.cacheControl } : {}) })
          res.end(JSON.stringify({ keys: b.keys }))
          return
        case 'status':
          res.writeHead(b.status, { 'content-type': 'text/plain' }).end('unavailable')
          return
        case 'body':
          res.writeHead(200, { 'content-type': 'application/json' }).end(b.body)
          return
        case 'hang':
          this.#hanging.add(res)
          res.on('close', () => { this.#hanging.delete(res) })
      }
    })
  }

  static async start (): Promise<JwksServer> {
    const s = new JwksServer()
    await new Promise<void>(resolve => { s.#server.listen(0, '127.0.0.1', resolve) })
    s.base = `http://127.0.0.1:${(s.#server.address() as AddressInfo).port}`
    return s
  }

  /** The URL of `path` on this server. */
  url (path: string): string {
    return `${this.base}${path}`
  }

  /** `path` publishes these keys (public JWKs, or anything, to test bad sets). */
  publish (path: string, keys: ReadonlyArray<SigningKey | unknown>, cacheControl?: string): void {
    const list = keys.map(k => (k as SigningKey).jwk !== undefined && (k as SigningKey).privateKey !== undefined ? (k as SigningKey).jwk : k)
    this.#paths.set(path, { kind: 'keys', keys: list, ...(cacheControl !== undefined ? { cacheControl } : {}) })
  }

  behave (path: string, behaviour: Behaviour): void {
    this.#paths.set(path, behaviour)
  }

  /** Requests `path` has had so far. */
  fetches (path: string): number {
    return this.#fetches.get(path) ?? 0
  }

  async stop (): Promise<void> {
    for (const res of this.#hanging) res.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>(resolve => { this.#server.close(() => { resolve() }) })
  }
}
