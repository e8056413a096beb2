/**
 * The demo, served when DEMO_ENABLED: `GET /demo` (the page; `/` redirects
 * to it), its style sheet and browser modules under `/demo/`, `GET
 * /client/sse-client.js` (the client helper the page imports; see
 * demo-assets.ts for where the files are) and, when the gateway signs with a generated secret (no JWT key was
 * configured), `GET /demo/token` for development tokens.
 *
 * Security contract: `/demo/token` hands a token to anyone who can reach the
 * port, so it exists only when no JWT key is configured, and its tokens are
 * signed with a random per-process secret that is never logged: they can
 * read `demo.*` topics and their own user channel, publish to `demo.*`
 * topics and their own user channel, and nothing else, and die with the
 * process. With JWT_SECRET / JWT_PUBLIC_KEY set the page asks for a token
 * instead.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Config, JwtSettings } from '../core/config.js'
import { Errors, GatewayError } from '../core/errors.js'
import { DEMO_FILES, DEMO_PAGE, readDemoAsset, renderDemoPage, type DemoAsset } from './demo-assets.js'
import { mintToken } from '../core/token.js'

export interface DemoRouteOptions {
  readonly config: Config
  readonly logger: Logger
  /** The generated HMAC secret when the gateway made one (no JWT key configured): serve `/demo/token`. */
  readonly tokenSecret: string | undefined
}

/** Topic patterns a demo token may read. */
export const DEMO_TOPICS = ['demo.*'] as const
/** Lifetime of a demo token unless `ttl` says otherwise, in seconds. */
export const DEMO_TOKEN_TTL_SECONDS = 300
const MIN_TTL_SECONDS = 5
const MAX_TTL_SECONDS = 3600
/** Demo user names: short and plain, so they read well in channel names. */
const DEMO_SUB = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/**
 * JWT settings with a random 256-bit HS256 secret, for a demo gateway that
 * was given no key. Tokens signed with it are valid for this process only.
 */
export function generatedJwtSettings (config: Config): JwtSettings {
  const key = Object.freeze({ key: randomBytes(32).toString('base64url'), kind: 'secret' as const, algorithms: Object.freeze(['HS256']), from: 'the demo\'s generated secret' })
  return Object.freeze({
    keys: Object.freeze([key]),
    jwks: Object.freeze([]),
    jwksFetch: Object.freeze({ minTtlMs: 60000, maxTtlMs: 60000, cooldownMs: 30000, timeoutMs: 5000, maxBytes: 262144 }),
    algorithms: key.algorithms,
    audience: Object.freeze([]),
    issuer: Object.freeze([]),
    clockToleranceMs: 0,
    userClaim: config.userClaim,
  })
}

async function loadAsset (asset: DemoAsset): Promise<string> {
  const text = await readDemoAsset(asset)
  if (text === undefined) {
    throw new GatewayError(Errors.NOT_FOUND, `${asset.path} is not built: run \`npm run build\` (it compiles src/client/ and src/demo/ to dist/ and copies the page's HTML and CSS there).`)
  }
  return text
}

function securityHeaders (reply: FastifyReply): FastifyReply {
  return reply
    .header('x-content-type-options', 'nosniff')
    // The page puts tokens in URLs (EventSource): never leak them as a referrer.
    .header('referrer-policy', 'no-referrer')
}

export async function demoRoute (app: FastifyInstance, opts: DemoRouteOptions): Promise<void> {
  const { config, logger, tokenSecret } = opts
  if (tokenSecret !== undefined) {
    logger.warn({ demo: true, tokenEndpoint: '/demo/token' },
      'DEMO_ENABLED and no JWT_SECRET or JWT_PUBLIC_KEY: tokens are signed with a random per-process secret, and anyone who can reach this port can get one from GET /demo/token (demo.* topics and their own user channel). For a first run only: set JWT_SECRET, or DEMO_ENABLED=false, for anything else.')
  }

  app.get('/', async (_request, reply) => reply.redirect('demo', 302))

  // The page is filled in once (its sections depend on settings only); a
  // response adds its nonce.
  let page: ((nonce: string) => string) | undefined
  app.get('/demo', async (_request, reply) => {
    page ??= renderDemoPage(await loadAsset(DEMO_PAGE), {
      sections: { 'token-endpoint': tokenSecret !== undefined, publish: config.publishEnabled },
      text: { publishClaim: config.publishClaim },
      json: { config: { tokenEndpoint: tokenSecret !== undefined, publishEnabled: config.publishEnabled, maxTopics: config.maxTopicsPerConnection } },
    })
    // No inline code or style: the page's script and style sheet are files
    // from 'self'. Its script elements (the module, and the JSON config,
    // which is data and never runs) carry this response's nonce; nothing
    // inline runs without it.
    const nonce = randomBytes(16).toString('base64')
    securityHeaders(reply)
      .header('content-type', DEMO_PAGE.contentType)
      .header('cache-control', 'no-store')
      .header('content-security-policy', [
        "default-src 'none'",
        `script-src 'self' 'nonce-${nonce}'`,
        "style-src 'self'",
        "connect-src 'self'",
        'img-src data:',
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; '))
    return page(nonce)
  })

  // Read once, on first request: a gateway that was not built still starts
  // and says what to do.
  const files = new Map<string, string>()
  for (const asset of DEMO_FILES) {
    app.get(asset.path, async (_request, reply) => {
      let text = files.get(asset.path)
      if (text === undefined) {
        text = await loadAsset(asset)
        files.set(asset.path, text)
      }
      return securityHeaders(reply)
        .header('content-type', asset.contentType)
        .header('cache-control', 'no-cache')
        .send(text)
    })
  }

  if (tokenSecret === undefined) return
  app.get('/demo/token', async (request: FastifyRequest, reply: FastifyReply) => {
    const query = (request.query ?? {}) as Record<string, unknown>
    const sub = query.sub === undefined ? `guest-${randomBytes(3).toString('hex')}` : query.sub
    if (typeof sub !== 'string' || !DEMO_SUB.test(sub)) {
      throw new GatewayError(Errors.DEMO_REQUEST_INVALID, '`sub` must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.')
    }
    let ttl = DEMO_TOKEN_TTL_SECONDS
    if (query.ttl !== undefined) {
      ttl = typeof query.ttl === 'string' && /^\d{1,5}$/.test(query.ttl) ? Number(query.ttl) : NaN
      if (!(ttl >= MIN_TTL_SECONDS && ttl <= MAX_TTL_SECONDS)) {
        throw new GatewayError(Errors.DEMO_REQUEST_INVALID, `\`ttl\` must be a whole number of seconds from ${MIN_TTL_SECONDS} to ${MAX_TTL_SECONDS}.`)
      }
    }
    const topics = [...DEMO_TOPICS]
    const publish = ['topic:demo.*', `user:${sub}`]
    const publishClaim = config.publishClaim
    const now = Date.now()
    const token = mintToken(tokenSecret, { [config.userClaim]: sub, [config.topicsClaim]: topics, [publishClaim]: publish }, ttl, now)
    securityHeaders(reply).header('cache-control', 'no-store')
    return { token, sub, topics, publish, expiresAt: (Math.floor(now / 1000) + ttl) * 1000 }
  })
}
