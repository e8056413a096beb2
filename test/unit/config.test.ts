/**
 * Configuration: defaults, one clear start-up error naming the bad variable,
 * the JWT key rules, CORS, and the README settings table kept in step with the
 * schema.
 */
import { generateKeyPairSync } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { SETTINGS, loadConfig, settingsTable, type Config } from '../../src/core/config.js'
import { ConfigError } from '../../src/core/errors.js'
import { makeTestCa } from '../helpers/tls.js'

type Env = Record<string, string | undefined>
interface Spec { env: string, kind: string, default?: string, min?: number, max?: number, values?: readonly string[], description: string, partOf?: string }
const specs = SETTINGS as readonly Spec[]
const SECRET = 'k'.repeat(32)

/** The ConfigError that loadConfig(env) throws (fails the test when it does not throw one). */
function configError (t: Test, env: Env): ConfigError | undefined {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) {
      t.equal(err.code, 'SSEGW_ERR_CONFIG_INVALID', 'stable code')
      return err
    }
    t.fail(`not a ConfigError: ${String(err)}`)
    return undefined
  }
  t.fail(`no error for ${JSON.stringify(env).slice(0, 200)}`)
  return undefined
}

/** loadConfig(env) throws a ConfigError whose message names `variable` (and matches `also`). */
function rejects (t: Test, env: Env, variable: string, also?: RegExp): void {
  const err = configError(t, env)
  if (err === undefined) return
  t.ok(err.message.includes(variable), `names ${variable}: ${err.message}`)
  if (also !== undefined) t.match(err.message, also)
}

/** The Config property a setting lands in, for the settings that map one to one. */
function configKey (env: string): string {
  if (env === 'JWT_TOPICS_CLAIM') return 'topicsClaim'
  if (env === 'JWT_PUBLISH_CLAIM') return 'publishClaim'
  if (env === 'JWT_USER_CLAIM') return 'userClaim'
  return env.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
}
const JWT_SETTINGS = new Set(specs.filter(s => s.partOf === 'jwt').map(s => s.env))
/** Where an int JWT_JWKS_* setting lands: `jwt.jwksFetch` (the longest TTL is never below the shortest). */
function jwksFetchValue (c: Config, env: string): number | undefined {
  const key = ({ JWT_JWKS_MIN_TTL_MS: 'minTtlMs', JWT_JWKS_MAX_TTL_MS: 'maxTtlMs', JWT_JWKS_COOLDOWN_MS: 'cooldownMs', JWT_JWKS_TIMEOUT_MS: 'timeoutMs', JWT_JWKS_MAX_BYTES: 'maxBytes' } as Record<string, string>)[env]
  return key === undefined ? undefined : (c.jwt?.jwksFetch as unknown as Record<string, number> | undefined)?.[key]
}

t.test('defaults: an empty environment gives a working configuration', async t => {
  const c = loadConfig({})
  t.match(c, {
    port: 8080,
    host: '0.0.0.0',
    internalPort: 9090,
    internalHost: '0.0.0.0',
    keyPrefix: 'sse:',
    topicsClaim: 'topics',
    tokenCookie: 'sse_token',
    maxTopicsPerConnection: 16,
    heartbeatIntervalMs: 15000,
    retryMs: 2000,
    retryJitterMs: 1000,
    readerShards: 4,
    readerBlockMs: 5000,
    readerCount: 512,
    catchupPageSize: 500,
    maxConcurrentCatchups: 32,
    slowClientBufferBytes: 262144,
    slowClientTimeoutMs: 30000,
    maxEventBytes: 262144,
    drainWindowMs: 10000,
    logLevel: 'info',
  })
  t.equal(c.jwt, undefined, 'no key: only public topics')
  t.equal(c.redisUrl, undefined, 'no REDIS_URL: the in-memory engine')
  t.equal(loadConfig({ REDIS_URL: '  ' }).redisUrl, undefined, 'a blank REDIS_URL is unset too')
  t.equal(loadConfig({ REDIS_URL: ' redis://r:6379 ' }).redisUrl, 'redis://r:6379', 'a set one is kept, trimmed')
  t.same(c.publicTopics, [])
  t.same(c.corsOrigins, [])
  t.ok(Object.isFrozen(c), 'config is frozen')
  t.ok(Object.isFrozen(c.publicTopics) && Object.isFrozen(c.corsOrigins), 'its lists too')
  // Every default in the schema is what the config holds.
  const record = c as unknown as Record<string, unknown>
  for (const s of specs) {
    if (JWT_SETTINGS.has(s.env) || s.default === undefined) continue
    const key = configKey(s.env)
    t.ok(key in record, `${s.env} is in the config as ${key}`)
    // TRUST_PROXY's default, "false", is parsed into Fastify's form.
    const want = s.env === 'TRUST_PROXY' ? false : s.kind === 'int' ? Number(s.default) : s.kind === 'bool' ? /^(1|true|yes|on)$/i.test(s.default) : s.default
    t.equal(record[key], want, `${s.env} defaults to ${s.default}`)
  }
})

t.test('every int setting reaches the config, and blank means default', async t => {
  for (const s of specs.filter(x => x.kind === 'int' && !JWT_SETTINGS.has(x.env))) {
    const other = String(s.min !== undefined && String(s.min) !== s.default ? s.min : s.max)
    const c = loadConfig({ [s.env]: ` ${other} ` }) as unknown as Record<string, unknown>
    t.equal(c[configKey(s.env)], Number(other), `${s.env}=" ${other} " (trimmed)`)
    t.equal((loadConfig({ [s.env]: '' }) as unknown as Record<string, unknown>)[configKey(s.env)], Number(s.default), `${s.env}="" is the default`)
    t.equal((loadConfig({ [s.env]: '   ' }) as unknown as Record<string, unknown>)[configKey(s.env)], Number(s.default), `${s.env}="   " is the default`)
  }
})

t.test('int settings: non-numbers and out-of-range values name the variable', async t => {
  const ints = specs.filter(s => s.kind === 'int')
  t.ok(ints.length > 10)
  for (const s of ints) {
    for (const bad of ['abc', '1.5', '1e3', '0x10', '12abc', '1 000', '1_000', 'NaN', 'Infinity', '+5', '--1']) {
      rejects(t, { JWT_SECRET: SECRET, [s.env]: bad }, s.env, /whole number/)
    }
    if (s.min !== undefined) {
      rejects(t, { JWT_SECRET: SECRET, [s.env]: String(s.min - 1) }, s.env, new RegExp(`between ${s.min} and ${s.max}`))
      t.doesNotThrow(() => loadConfig({ JWT_SECRET: SECRET, [s.env]: String(s.min) }), `${s.env}=${s.min} (min) accepted`)
    }
    if (s.max !== undefined) {
      rejects(t, { JWT_SECRET: SECRET, [s.env]: String(s.max + 1) }, s.env, new RegExp(`between ${s.min} and ${s.max}`))
      rejects(t, { JWT_SECRET: SECRET, [s.env]: '99999999999999999999999' }, s.env)
      t.doesNotThrow(() => loadConfig({ JWT_SECRET: SECRET, [s.env]: String(s.max) }), `${s.env}=${s.max} (max) accepted`)
    }
  }
  // Any whole number: accepted exactly when within [min, max].
  fc.assert(fc.property(fc.constantFrom(...ints), fc.integer({ min: -1e9, max: 1e9 }), (s, n) => {
    const inRange = (s.min === undefined || n >= s.min) && (s.max === undefined || n <= s.max)
    try {
      const c = loadConfig({ JWT_SECRET: SECRET, [s.env]: String(n) })
      const got = s.env === 'JWT_CLOCK_TOLERANCE_MS' ? c.jwt?.clockToleranceMs : s.env.startsWith('JWT_JWKS_') ? jwksFetchValue(c, s.env) : (c as unknown as Record<string, unknown>)[configKey(s.env)]
      return inRange && (got === n || (s.env === 'JWT_JWKS_MAX_TTL_MS' && n < 60000 && got === 60000))
    } catch (err) {
      return !inRange && err instanceof ConfigError && err.message.includes(s.env)
    }
  }), { numRuns: 2000 })
})

t.test('enum settings: only the listed values, error names the variable and the choices', async t => {
  const enums = specs.filter(s => s.kind === 'enum')
  t.ok(enums.length > 0)
  for (const s of enums) {
    for (const v of s.values ?? []) t.doesNotThrow(() => loadConfig({ [s.env]: v }), `${s.env}=${v}`)
    for (const bad of ['verbose', (s.values?.[0] ?? 'x').toUpperCase(), 'inf o', '*']) {
      rejects(t, { [s.env]: bad }, s.env, new RegExp((s.values ?? []).join(', ')))
    }
  }
  t.equal(loadConfig({ LOG_LEVEL: 'debug' }).logLevel, 'debug')
})

t.test('bool settings: true/false spellings, anything else names the variable', async t => {
  const bools = specs.filter(s => s.kind === 'bool')
  for (const s of bools) {
    const key = configKey(s.env)
    for (const v of ['true', 'TRUE', '1', 'yes', 'on', 'On']) t.equal((loadConfig({ [s.env]: v }) as unknown as Record<string, unknown>)[key], true, `${s.env}=${v}`)
    for (const v of ['false', 'False', '0', 'no', 'off']) t.equal((loadConfig({ [s.env]: v }) as unknown as Record<string, unknown>)[key], false, `${s.env}=${v}`)
    for (const bad of ['maybe', '2', 'y', 'tru']) rejects(t, { [s.env]: bad }, s.env)
  }
})

t.test('list settings: comma-separated, trimmed, empty items dropped; each list validation names its variable', async t => {
  t.same(loadConfig({ PUBLIC_TOPICS: ' news , orders.* ,, *.eu ,' }).publicTopics, ['news', 'orders.*', '*.eu'])
  t.same(loadConfig({ PUBLIC_TOPICS: '*' }).publicTopics, ['*'])
  t.same(loadConfig({ PUBLIC_TOPICS: ' , ' }).publicTopics, [])
  for (const bad of ['a b', '.news', '-x', 'news!', 'caf\u00e9', 'x'.repeat(129), 'news,bad topic']) {
    rejects(t, { PUBLIC_TOPICS: bad }, 'PUBLIC_TOPICS')
  }
  const jwt = loadConfig({ JWT_SECRET: SECRET, JWT_AUDIENCE: 'a, b', JWT_ISSUER: 'https://issuer.example,other' }).jwt
  t.same(jwt?.audience, ['a', 'b'])
  t.same(jwt?.issuer, ['https://issuer.example', 'other'])
  for (const bad of ['none', 'HS256,none', 'hs256', 'RS1', 'ES256K', 'HS256 RS256']) {
    rejects(t, { JWT_SECRET: SECRET, JWT_ALGORITHMS: bad }, 'JWT_ALGORITHMS')
  }
})

t.test('string settings with rules name the variable', async t => {
  rejects(t, { KEY_PREFIX: 'my prefix:' }, 'KEY_PREFIX')
  rejects(t, { KEY_PREFIX: 'a\tb' }, 'KEY_PREFIX')
  t.equal(loadConfig({ KEY_PREFIX: 'app1:sse:' }).keyPrefix, 'app1:sse:')
  t.equal(loadConfig({ KEY_PREFIX: '  app:  ' }).keyPrefix, 'app:', 'trimmed')
  for (const bad of ['top ics', 'tab\tclaim', 'x'.repeat(257), 'caf\u00e9']) rejects(t, { JWT_TOPICS_CLAIM: bad }, 'JWT_TOPICS_CLAIM')
  t.equal(loadConfig({ JWT_TOPICS_CLAIM: 'https://example.com/topics' }).topicsClaim, 'https://example.com/topics', 'URL-style namespaced claims (Auth0 and others)')
  t.equal(loadConfig({ JWT_TOPICS_CLAIM: 'scope' }).topicsClaim, 'scope')
  t.equal(loadConfig({ JWT_TOPICS_CLAIM: 'sse.topics' }).topicsClaim, 'sse.topics')
  for (const bad of ['my cookie', 'a;b', 'a=b', 'a,b', 'a"b', 'caf\u00e9']) rejects(t, { TOKEN_COOKIE: bad }, 'TOKEN_COOKIE')
  t.equal(loadConfig({ TOKEN_COOKIE: '__Host-sse' }).tokenCookie, '__Host-sse')
})

t.test('CORS_ORIGINS: "*" alone, or exact scheme://host[:port] origins', async t => {
  t.same(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins, ['*'])
  t.same(loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://localhost:3000' }).corsOrigins, ['https://app.example.com', 'http://localhost:3000'])
  t.same(loadConfig({ CORS_ORIGINS: 'https://[::1]:8443' }).corsOrigins, ['https://[::1]:8443'])
  const bad: Array<[string, RegExp]> = [
    ['*,https://app.example.com', /either \* alone/],
    ['https://app.example.com,*', /either \* alone/],
    ['https://app.example.com/', /no path/],
    ['https://app.example.com/path', /no path/],
    ['app.example.com', /scheme/],
    ['ftp://app.example.com', /scheme/],
    ['https://', /scheme/],
    ['https://a b.example', /scheme/],
    ['null', /scheme/],
    ['*.example.com', /scheme/],
  ]
  for (const [value, why] of bad) rejects(t, { CORS_ORIGINS: value }, 'CORS_ORIGINS', why)
})

// Keys generated once for the JWT tests.
const pem = (type: string, opts: Record<string, unknown> = {}): { publicPem: string, privatePem: string } => {
  const { publicKey, privateKey } = generateKeyPairSync(type as 'ec', opts as { namedCurve: string })
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
}
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const RSA = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()
const RSA_PKCS1 = rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }).toString()
const P256 = pem('ec', { namedCurve: 'P-256' })
const P384 = pem('ec', { namedCurve: 'P-384' })
const P521 = pem('ec', { namedCurve: 'P-521' })
const ED25519 = pem('ed25519')
const RS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']

t.test('JWT_SECRET: at least 32 characters, HS256/384/512 by default', async t => {
  rejects(t, { JWT_SECRET: 'k'.repeat(31) }, 'JWT_SECRET', /32 characters/)
  rejects(t, { JWT_SECRET: `  ${'k'.repeat(31)}  ` }, 'JWT_SECRET', /32 characters/)
  rejects(t, { JWT_SECRET: 'short' }, 'JWT_SECRET')
  const jwt = loadConfig({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_MS: '1500' }).jwt
  t.match(jwt, { keys: [{ key: SECRET, kind: 'secret', algorithms: ['HS256', 'HS384', 'HS512'] }], jwks: [], algorithms: ['HS256', 'HS384', 'HS512'], audience: [], issuer: [], clockToleranceMs: 1500, userClaim: 'sub' })
  t.ok(Object.isFrozen(jwt) && Object.isFrozen(jwt?.algorithms), 'frozen')
  t.same(loadConfig({ JWT_SECRET: `  ${SECRET}\n` }).jwt?.keys[0]?.key, SECRET, 'trimmed')
  t.same(loadConfig({ JWT_SECRET: SECRET, JWT_ALGORITHMS: 'HS512' }).jwt?.algorithms, ['HS512'])
  for (const alg of ['RS256', 'ES256', 'EdDSA', 'PS256']) rejects(t, { JWT_SECRET: SECRET, JWT_ALGORITHMS: alg }, 'JWT_ALGORITHMS', /JWT_SECRET cannot verify/)
  t.equal(loadConfig({ JWT_SECRET: '' }).jwt, undefined, 'blank is unset')
  t.equal(loadConfig({ JWT_SECRET: '   ' }).jwt, undefined)
})

t.test('JWT: a secret and a public key together are two keys, each pinned to the algorithms of its type', async t => {
  const jwt = loadConfig({ JWT_SECRET: SECRET, JWT_PUBLIC_KEY: RSA }).jwt
  t.match(jwt?.keys, [{ kind: 'secret', algorithms: ['HS256', 'HS384', 'HS512'] }, { kind: 'public-key', algorithms: RS }])
  t.same(jwt?.algorithms, ['HS256', 'HS384', 'HS512', ...RS])
  t.match(loadConfig({ JWT_SECRET: SECRET, JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: 'HS256,RS256' }).jwt?.keys, [{ algorithms: ['HS256'] }, { algorithms: ['RS256'] }], 'each narrowed by JWT_ALGORITHMS')
  rejects(t, { JWT_SECRET: SECRET, JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: 'RS256' }, 'JWT_SECRET', /none of which JWT_ALGORITHMS allows/)
  rejects(t, { JWT_SECRET: 'short', JWT_PUBLIC_KEY: RSA }, 'JWT_SECRET', /32 characters/)
})

t.test('JWT_PUBLIC_KEY: RSA, EC and Ed25519 PEM keys, with the algorithms of the key by default', async t => {
  t.match(loadConfig({ JWT_PUBLIC_KEY: RSA }).jwt, { keys: [{ kind: 'public-key', key: RSA.trim(), algorithms: RS }], algorithms: RS })
  t.same(loadConfig({ JWT_PUBLIC_KEY: RSA_PKCS1 }).jwt?.algorithms, RS, 'PKCS#1 RSA PUBLIC KEY')
  t.same(loadConfig({ JWT_PUBLIC_KEY: ED25519.publicPem }).jwt?.algorithms, ['EdDSA'])
  t.same(loadConfig({ JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: 'RS256' }).jwt?.algorithms, ['RS256'], 'narrowed by JWT_ALGORITHMS')
  t.same(loadConfig({ JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: 'PS512,RS256' }).jwt?.algorithms, ['PS512', 'RS256'])
  // An environment variable often holds the PEM on one line with literal \n.
  const oneLine = RSA.trim().replace(/\n/g, '\\n')
  t.notOk(oneLine.includes('\n'))
  t.equal(loadConfig({ JWT_PUBLIC_KEY: oneLine }).jwt?.keys[0]?.key, RSA.trim(), 'literal \\n become newlines')
  t.ok(Object.isFrozen(loadConfig({ JWT_PUBLIC_KEY: RSA }).jwt))
})

// Regression: any EC key defaulted to ES256, ES384 and ES512, whatever its
// curve, and JWT_ALGORITHMS=ES384 passed with a P-256 key; each ES* names one
// curve (RFC 7518 3.4), and the verifier refused the mismatch only when the
// app started, with a message that named no variable.
t.test('JWT_PUBLIC_KEY: an EC key allows the one ES algorithm of its curve (a P-256 key with ES384 is refused)', async t => {
  t.same(loadConfig({ JWT_PUBLIC_KEY: P256.publicPem }).jwt?.algorithms, ['ES256'], 'P-256: ES256')
  t.same(loadConfig({ JWT_PUBLIC_KEY: P384.publicPem }).jwt?.algorithms, ['ES384'], 'P-384: ES384')
  t.same(loadConfig({ JWT_PUBLIC_KEY: P521.publicPem }).jwt?.algorithms, ['ES512'], 'P-521: ES512')
  rejects(t, { JWT_PUBLIC_KEY: P256.publicPem, JWT_ALGORITHMS: 'ES384' }, 'JWT_ALGORITHMS', /ES256/)
  rejects(t, { JWT_PUBLIC_KEY: P384.publicPem, JWT_ALGORITHMS: 'ES256,ES384' }, 'JWT_ALGORITHMS', /ES256/)
  rejects(t, { JWT_PUBLIC_KEY: pem('ec', { namedCurve: 'secp256k1' }).publicPem }, 'JWT_PUBLIC_KEY', /secp256k1/)
})

// Regression: a private key in JWT_PUBLIC_KEY passed (node derives its public
// half) and an RSA-PSS key passed with PS*; the verifier refuses both, so the
// gateway failed at start with an error that named no variable.
t.test('JWT_PUBLIC_KEY: private keys and keys the verifier cannot use are refused at load (private key, RSA-PSS key)', async t => {
  rejects(t, { JWT_PUBLIC_KEY: P256.privatePem }, 'JWT_PUBLIC_KEY', /private key/)
  rejects(t, { JWT_PUBLIC_KEY: rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() }, 'JWT_PUBLIC_KEY', /private key/)
  rejects(t, { JWT_PUBLIC_KEY: ED25519.privatePem }, 'JWT_PUBLIC_KEY', /private key/)
  rejects(t, { JWT_PUBLIC_KEY: pem('rsa-pss', { modulusLength: 2048 }).publicPem }, 'JWT_PUBLIC_KEY', /rsa-pss/)
})

t.test('JWT_PUBLIC_KEY: other key types and non-keys are refused', async t => {
  rejects(t, { JWT_PUBLIC_KEY: pem('ed448').publicPem }, 'JWT_PUBLIC_KEY', /ed448/)
  rejects(t, { JWT_PUBLIC_KEY: pem('x25519').publicPem }, 'JWT_PUBLIC_KEY', /x25519/)
  rejects(t, { JWT_PUBLIC_KEY: 'not a key' }, 'JWT_PUBLIC_KEY', /PEM/)
  rejects(t, { JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' }, 'JWT_PUBLIC_KEY')
  rejects(t, { JWT_PUBLIC_KEY: RSA.replace(/[A-Za-z0-9+/]{10}\n/, '\n') }, 'JWT_PUBLIC_KEY')
})

t.test('JWT_ALGORITHMS must fit the key; "none" is never allowed', async t => {
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    rejects(t, { JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: alg }, 'JWT_ALGORITHMS', /cannot verify/)
    rejects(t, { JWT_PUBLIC_KEY: P256.publicPem, JWT_ALGORITHMS: alg }, 'JWT_ALGORITHMS')
    rejects(t, { JWT_PUBLIC_KEY: ED25519.publicPem, JWT_ALGORITHMS: alg }, 'JWT_ALGORITHMS')
  }
  rejects(t, { JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: 'RS256,HS256' }, 'JWT_ALGORITHMS', /HS256/)
  rejects(t, { JWT_PUBLIC_KEY: RSA, JWT_ALGORITHMS: 'ES256' }, 'JWT_ALGORITHMS')
  rejects(t, { JWT_PUBLIC_KEY: P256.publicPem, JWT_ALGORITHMS: 'RS256' }, 'JWT_ALGORITHMS')
  rejects(t, { JWT_PUBLIC_KEY: ED25519.publicPem, JWT_ALGORITHMS: 'ES256' }, 'JWT_ALGORITHMS')
  for (const env of [{ JWT_SECRET: SECRET }, { JWT_PUBLIC_KEY: RSA }, {}]) {
    rejects(t, { ...env, JWT_ALGORITHMS: 'none' }, 'JWT_ALGORITHMS', /none/)
    rejects(t, { ...env, JWT_ALGORITHMS: 'None' }, 'JWT_ALGORITHMS')
  }
  rejects(t, { JWT_ALGORITHMS: 'HS256' }, 'JWT_ALGORITHMS', /no key is \(JWT_SECRET, JWT_PUBLIC_KEY/)
})

t.test('settingsTable: a header, then one well-formed row per setting', async t => {
  const lines = settingsTable().split('\n')
  t.equal(lines[0], '| Variable | Default | Meaning |')
  t.equal(lines[1], '|---|---|---|')
  t.equal(lines.length, specs.length + 2)
  const names = new Set<string>()
  specs.forEach((s, i) => {
    t.notOk(names.has(s.env), `${s.env} listed once`)
    names.add(s.env)
    t.match(s.env, /^[A-Z][A-Z0-9_]*$/)
    t.ok(s.description.length > 10, `${s.env} has a description`)
    t.notOk(/[|\n\r]/.test(s.description), `${s.env}: no | or line break in the description (it would break the table)`)
    t.equal(lines[i + 2], `| \`${s.env}\` | ${s.default === undefined ? '' : `\`${s.default}\``} | ${s.description} |`)
  })
  t.notOk(settingsTable().includes(SECRET))
})

t.test('README.md holds exactly settingsTable() between the settings-table markers', async t => {
  const START = '<!-- settings-table:start -->'
  const END = '<!-- settings-table:end -->'
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const lines = readme.split(/\r?\n/)
  const a = lines.indexOf(START)
  const b = lines.indexOf(END)
  t.ok(a !== -1 && b > a, 'README.md has the start and end markers, each on its own line, in that order')
  t.equal(lines.filter(l => l === START).length, 1, 'one start marker')
  t.equal(lines.filter(l => l === END).length, 1, 'one end marker')
  t.equal(lines.slice(a + 1, b).join('\n'), settingsTable(), 'the table is up to date: run `npm run docs:settings`')
})

// Type-level guard: the fields the tests above read exist on Config.
const _typecheck: Array<keyof Config> = ['port', 'jwt', 'publicTopics', 'corsOrigins', 'topicsClaim', 'tokenCookie', 'keyPrefix', 'logLevel']
void _typecheck

t.test('TRUST_PROXY: false, true, or the proxies\' addresses; a hop count or a bad address names the variable', async t => {
  t.equal(loadConfig({}).trustProxy, false)
  for (const off of ['false', 'no', '0', 'off']) t.equal(loadConfig({ TRUST_PROXY: off }).trustProxy, false, off)
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true)
  t.same(loadConfig({ TRUST_PROXY: '127.0.0.2' }).trustProxy, ['127.0.0.2'])
  t.same(loadConfig({ TRUST_PROXY: ' 10.0.0.0/8, ::1 ,loopback,fd00::/8 ' }).trustProxy, ['10.0.0.0/8', '::1', 'loopback', 'fd00::/8'])
  t.ok(Object.isFrozen(loadConfig({ TRUST_PROXY: 'uniquelocal' }).trustProxy))
  for (const bad of ['1', '2', '10.0.0.0/33', '10.0.0/8', 'nginx', '1.2.3.4/8/1', '::1/129']) {
    rejects(t, { TRUST_PROXY: bad }, 'TRUST_PROXY')
  }
  rejects(t, { TRUST_PROXY: '1' }, 'TRUST_PROXY', /hop count/)
})

t.test('REDIS_URL: one standalone Redis URL; other schemes and lists are refused without echoing the value', async t => {
  for (const ok of ['redis://127.0.0.1:6379', 'redis://:pw@h:1/2', 'rediss://user:pw@host:6380', 'unix:///tmp/redis.sock', 'redis://h']) {
    t.equal(loadConfig({ REDIS_URL: ok }).redisUrl, ok, ok)
  }
  for (const bad of ['redis-sentinel://s:26379/m', 'redis+cluster://h:7000', 'http://h:6379', 'redis://a:1,redis://b:2', 'redis://a:1 redis://b:2', 'h:6379', 'unix://', 'unix://host/path', 'redis://h/notadb', 'redis://']) {
    rejects(t, { REDIS_URL: bad }, 'REDIS_URL', /^REDIS_URL\b/)
  }
  t.notMatch(configError(t, { REDIS_URL: 'http://user:s3cret@h:6379' })?.message, /s3cret/, 'never the password')
})

t.test('Redis credentials and TLS: files read and checked at start-up, one place per credential, never echoed', async t => {
  const ca = makeTestCa()
  t.teardown(() => { ca.remove() })
  const file = (name: string, text: string): string => {
    const p = join(ca.dir, name)
    writeFileSync(p, text)
    return p
  }
  const tls = 'rediss://redis.example:6380'
  const a = loadConfig({ REDIS_URL: tls, REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.clientKey, REDIS_USERNAME: 'gw', REDIS_PASSWORD_FILE: file('pw', 'p4ss-word\n') }).redisAccess
  t.equal(a.username, 'gw')
  t.equal(a.password, 'p4ss-word', 'a mounted password file\'s trailing newline is stripped')
  t.equal(a.tls?.ca, readFileSync(ca.caCert, 'utf8'), 'the CA is read at start-up')
  t.ok(a.tls?.cert?.includes('BEGIN CERTIFICATE') === true && a.tls?.key?.includes('PRIVATE KEY') === true, 'cert and key too')
  t.same(loadConfig({ REDIS_URL: tls }).redisAccess, { tls: {} }, 'rediss:// with nothing else: TLS with the system\'s CAs')
  t.same(loadConfig({ REDIS_URL: 'redis://h:6379' }).redisAccess, {}, 'plain redis://: nothing')
  t.equal(loadConfig({ REDIS_URL: 'unix:///tmp/r.sock', REDIS_PASSWORD: 'pw' }).redisAccess.password, 'pw', 'a password for a unix socket (which has no place for one in its URL)')
  t.equal(loadConfig({ REDIS_URL: 'redis://gw:pw@h:6379' }).redisAccess.password, undefined, 'credentials in the URL keep working (ioredis reads them from it)')

  rejects(t, { REDIS_PASSWORD: 'pw' }, 'REDIS_PASSWORD', /none of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS is/)
  rejects(t, { REDIS_URL: 'redis://h:6379', REDIS_TLS_CA_FILE: ca.caCert }, 'REDIS_TLS_CA_FILE', /rediss:\/\//)
  rejects(t, { REDIS_URL: 'unix:///tmp/r.sock', REDIS_TLS_CA_FILE: ca.caCert }, 'REDIS_TLS_CA_FILE', /rediss:\/\//)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CA_FILE: join(ca.dir, 'nope.crt') }, 'REDIS_TLS_CA_FILE', /does not exist/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CA_FILE: ca.dir }, 'REDIS_TLS_CA_FILE', /is a directory/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CA_FILE: file('junk.crt', 'not a certificate') }, 'REDIS_TLS_CA_FILE', /no PEM certificate/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CA_FILE: file('bad.crt', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }, 'REDIS_TLS_CA_FILE', /cannot be read/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CERT_FILE: ca.clientCert }, 'REDIS_TLS_CERT_FILE', /REDIS_TLS_KEY_FILE/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_KEY_FILE: ca.clientKey }, 'REDIS_TLS_KEY_FILE', /REDIS_TLS_CERT_FILE/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.caCert }, 'REDIS_TLS_KEY_FILE', /no readable PEM private key/)
  rejects(t, { REDIS_URL: tls, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.serverKey }, 'REDIS_TLS_KEY_FILE', /not the key of the certificate/)
  rejects(t, { REDIS_URL: 'redis://h:6379', REDIS_PASSWORD: 'a', REDIS_PASSWORD_FILE: file('pw2', 'b') }, 'REDIS_PASSWORD_FILE', /give one/)
  rejects(t, { REDIS_URL: 'redis://h:6379', REDIS_PASSWORD_FILE: join(ca.dir, 'missing') }, 'REDIS_PASSWORD_FILE', /does not exist/)
  rejects(t, { REDIS_URL: 'redis://h:6379', REDIS_PASSWORD_FILE: file('empty', '\n') }, 'REDIS_PASSWORD_FILE', /empty/)
  rejects(t, { REDIS_URL: 'redis://h:6379', REDIS_USERNAME: 'gw' }, 'REDIS_USERNAME', /no password/)
  rejects(t, { REDIS_URL: 'redis://gw@h:6379', REDIS_USERNAME: 'gw', REDIS_PASSWORD: 'x' }, 'REDIS_USERNAME', /one place/)
  const both = configError(t, { REDIS_URL: 'redis://:in-url-s3cret@h:6379', REDIS_PASSWORD: 'env-s3cret' })
  t.match(both?.message, /REDIS_PASSWORD is set and REDIS_URL holds a password too/, 'a password in the URL and in REDIS_PASSWORD is refused: which wins would be a guess')
  t.notMatch(both?.message, /s3cret/, 'neither password is in the message')
  t.notMatch(configError(t, { REDIS_URL: 'redis://h:6379', REDIS_PASSWORD: 'env-s3cret', REDIS_PASSWORD_FILE: file('pw3', 'file-s3cret') })?.message, /s3cret/, 'nor a file\'s')
  const denied = (() => {
    try {
      loadConfig({ REDIS_URL: tls, REDIS_TLS_CA_FILE: '/x/ca.crt' }, { readFile: () => { throw Object.assign(new Error('EACCES'), { code: 'EACCES' }) } })
    } catch (err) { return (err as Error).message }
    return ''
  })()
  t.match(denied, /REDIS_TLS_CA_FILE names \/x\/ca.crt, which cannot be read \(permission denied\)/, 'an unreadable file')
})

t.test('REDIS_CLUSTER_NODES: seed nodes as host:port, instead of REDIS_URL', async t => {
  const c = loadConfig({ REDIS_CLUSTER_NODES: ' 10.0.0.1:7000, redis-b.example:7001 ,[::1]:7002' })
  t.same(c.redisClusterNodes, ['10.0.0.1:7000', 'redis-b.example:7001', '[::1]:7002'])
  t.equal(c.demoEnabled, false, 'a cluster is Redis: no demo by default')
  t.same(loadConfig({}).redisClusterNodes, [], 'unset: none')
  for (const bad of ['10.0.0.1', 'http://h:7000', 'h:0', 'h:65536', 'h:7000/0', ':7000', 'rediss://h']) {
    rejects(t, { REDIS_CLUSTER_NODES: bad }, 'REDIS_CLUSTER_NODES', /host:port/)
  }
  t.same(loadConfig({ REDIS_CLUSTER_NODES: 'redis://h:7000,h2:7001' }).redisAccess, {}, 'redis:// seeds are plain, as bare host:port')
  rejects(t, { REDIS_CLUSTER_NODES: 'h:7000', REDIS_URL: 'redis://h:6379' }, 'REDIS_CLUSTER_NODES', /not both/)
  const access = loadConfig({ REDIS_CLUSTER_NODES: 'h:7000', REDIS_USERNAME: 'gw', REDIS_PASSWORD: 'pw' }).redisAccess
  t.same([access.username, access.password, access.tls], ['gw', 'pw', undefined], 'the nodes take REDIS_USERNAME and REDIS_PASSWORD')
  rejects(t, { REDIS_CLUSTER_NODES: 'h:7000', REDIS_TLS_CA_FILE: '/x/ca.crt' }, 'REDIS_TLS_CA_FILE', /REDIS_CLUSTER_NODES are not rediss:\/\/ nodes: .*rediss:\/\/host:port/)
})

t.test('REDIS_CLUSTER_NODES as rediss://host:port: TLS to every node, with the TLS files; all seeds or none', async t => {
  const ca = makeTestCa()
  t.teardown(() => { ca.remove() })
  const c = loadConfig({ REDIS_CLUSTER_NODES: 'rediss://h1:7000, rediss://[::1]:7001', REDIS_TLS_CA_FILE: ca.caCert, REDIS_TLS_CERT_FILE: ca.clientCert, REDIS_TLS_KEY_FILE: ca.clientKey, REDIS_TLS_SERVERNAME: 'redis.example.com', REDIS_USERNAME: 'gw', REDIS_PASSWORD: 'pw' })
  t.match(c.redisAccess.tls?.ca, /BEGIN CERTIFICATE/, 'the CA')
  t.match(c.redisAccess.tls?.cert, /BEGIN CERTIFICATE/, 'the client certificate')
  t.equal(c.redisAccess.tls?.servername, 'redis.example.com', 'the server name')
  t.same([c.redisAccess.username, c.redisAccess.password], ['gw', 'pw'])
  t.same(loadConfig({ REDIS_CLUSTER_NODES: 'rediss://h1:7000' }).redisAccess, { tls: {} }, 'rediss:// alone: TLS with the system\'s CAs')
  rejects(t, { REDIS_CLUSTER_NODES: 'rediss://h1:7000,h2:7001' }, 'REDIS_CLUSTER_NODES', /rediss:\/\/ and plain entries: TLS is for all of them or none/)
  rejects(t, { REDIS_CLUSTER_NODES: 'rediss://h1:7000,redis://h2:7001' }, 'REDIS_CLUSTER_NODES', /all of them or none/)
  const withPassword = (() => {
    try { loadConfig({ REDIS_CLUSTER_NODES: 'rediss://gw:hunter2-secret@h1:7000' }) } catch (err) { return (err as Error).message }
    return ''
  })()
  t.match(withPassword, /REDIS_CLUSTER_NODES has an entry with a user or password in it/, 'credentials in a seed are refused')
  t.notMatch(withPassword, /hunter2/, 'without quoting them')
})

t.test('REDIS_TLS_SERVERNAME: a host name, with TLS only', async t => {
  t.equal(loadConfig({ REDIS_URL: 'rediss://10.0.0.5:6380', REDIS_TLS_SERVERNAME: 'redis.internal' }).redisAccess.tls?.servername, 'redis.internal', 'one Redis by IP, its certificate by name')
  t.equal(loadConfig({ REDIS_URL: 'rediss://h:6380', REDIS_TLS_SERVERNAME: '*.cache.example.com' }).redisAccess.tls?.servername, '*.cache.example.com')
  for (const bad of ['10.0.0.5', '::1', 'a b', 'https://x', 'x_y!']) {
    rejects(t, { REDIS_URL: 'rediss://h:6380', REDIS_TLS_SERVERNAME: bad }, 'REDIS_TLS_SERVERNAME', /not a host name/)
  }
  rejects(t, { REDIS_URL: 'redis://h:6379', REDIS_TLS_SERVERNAME: 'redis.internal' }, 'REDIS_TLS_SERVERNAME', /not a rediss:\/\/ URL/)
  rejects(t, { REDIS_CLUSTER_NODES: 'h:7000', REDIS_TLS_SERVERNAME: 'redis.internal' }, 'REDIS_TLS_SERVERNAME', /REDIS_CLUSTER_NODES are not rediss:\/\//)
})
