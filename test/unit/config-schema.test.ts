/**
 * Each setting is written once, as its SETTINGS entry: the Config type is
 * derived from the schema and loadConfig fills the fields from it. These
 * tests pin that the derivation gives the types the code relies on (at
 * compile time: `npm run typecheck`, run by test/static/typecheck.test.ts)
 * and that every entry reaches its field at run time.
 */
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import t from 'tap'
import { SETTINGS, loadConfig, type Config, type JwtSettings, type RedisAccess } from '../../src/core/config.js'
import { ConfigError } from '../../src/core/errors.js'
import { makeTestCa } from '../helpers/tls.js'

interface Spec { env: string, kind: string, default?: string, min?: number, max?: number, values?: readonly string[], field?: string, partOf?: string, fileOf?: string }
const specs = SETTINGS as readonly Spec[]
const SECRET = 'k'.repeat(32)
const RSA = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()

// Compile-time checks: each element is `true` only when the derived type is
// exactly the one named, so a wrong derivation fails the type check.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
const derivedTypes: [
  Equal<Config['port'], number>, // int
  Equal<Config['keyPrefix'], string>, // string with a default
  Equal<Config['redisUrl'], string | undefined>, // no default: undefined when unset
  Equal<Config['publicTopics'], readonly string[]>, // list: empty when unset, never undefined
  Equal<Config['corsOrigins'], readonly string[]>,
  Equal<Config['publishEnabled'], boolean>, // bool
  Equal<Config['readerMode'], 'auto' | 'block' | 'notify' | 'track'>, // enum: the union of its values
  Equal<Config['logLevel'], 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'>,
  Equal<Config['readerBlockMaxKeysPerSecond'], number>, // camelCase of a long name
  Equal<Config['topicsClaim'], string>, // named by `field`
  Equal<Config['publishClaim'], string>,
  Equal<Config['jwt'], JwtSettings | undefined>, // composite: JWT_* settings
  Equal<Config['trustProxy'], boolean | readonly string[]>, // derived: parsed TRUST_PROXY
  Equal<Config['demoEnabled'], boolean>, // derived: its default follows REDIS_URL
  Equal<Extract<keyof Config, `jwt${string}`>, 'jwt'>, // no field per JWT_* input (no copy of the secret)
  Equal<Config['redisAccess'], RedisAccess>, // composite: REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_TLS_*
  Equal<Extract<keyof Config, `redis${'Username' | 'Password' | 'PasswordFile' | 'TlsCaFile' | 'TlsCertFile' | 'TlsKeyFile'}`>, never>,
  Equal<Extract<keyof Config, `${string}_${string}` | Uppercase<string>>, never> // field names, not variable names
] = [true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true]
void derivedTypes

/** The field a setting lands in: `partOf`'s composite field, `field`, or the camelCase of its name. */
function fieldOf (s: Spec): string {
  // A `_FILE` setting is read into its secret setting, so it lands in that one's field.
  const target = s.fileOf === undefined ? s : specs.find(x => x.env === s.fileOf) ?? s
  return target.partOf ?? target.field ?? target.env.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

// The Redis access settings name files: real ones, made here.
const ca = makeTestCa()
t.teardown(() => { ca.remove() })
const passwordFile = join(ca.dir, 'password')
writeFileSync(passwordFile, 'pw\n')
const inDir = (name: string, text: string): string => {
  const path = join(ca.dir, name)
  writeFileSync(path, text)
  return path
}
const FILES: Record<string, string> = {
  REDIS_PASSWORD_FILE: passwordFile,
  REDIS_TLS_CA_FILE: ca.caCert,
  REDIS_TLS_CERT_FILE: ca.clientCert,
  REDIS_TLS_KEY_FILE: ca.clientKey,
  REDIS_URL_FILE: inDir('redis-url', 'redis://redis.example:6380\n'),
  REDIS_SENTINEL_PASSWORD_FILE: inDir('sentinel-password', 'pw\n'),
  JWT_SECRET_FILE: inDir('jwt-secret', 'x'.repeat(40) + '\n'),
  JWT_PUBLIC_KEY_FILE: inDir('jwt-public-key', RSA),
  TLS_CERT_FILE: ca.serverCert,
  TLS_KEY_FILE: ca.serverKey,
  CONTROL_TOKEN_FILE: inDir('control-token', 'c'.repeat(40) + '\n'),
  JWT_JWKS_FILE: inDir('jwks.json', JSON.stringify({ keys: [{ kid: 'a', kty: 'oct', k: Buffer.from('y'.repeat(32)).toString('base64url') }] })),
}
/** What a Redis access setting needs set with it (a user needs a password; a client certificate its key). */
const ALONGSIDE: Record<string, Record<string, string>> = {
  REDIS_TLS_CERT_FILE: { REDIS_TLS_KEY_FILE: ca.clientKey },
  REDIS_TLS_KEY_FILE: { REDIS_TLS_CERT_FILE: ca.clientCert },
  REDIS_USERNAME: { REDIS_PASSWORD: 'pw' },
  // The listener's certificate and its key go together.
  TLS_CERT_FILE: { TLS_KEY_FILE: ca.serverKey },
  TLS_KEY_FILE: { TLS_CERT_FILE: ca.serverCert },
}

/** Values to try for a setting, from its kind and bounds; those its own rules refuse are skipped. */
function candidates (s: Spec): string[] {
  if (FILES[s.env] !== undefined) return [FILES[s.env] as string]
  switch (s.kind) {
    case 'int': return [s.min, s.max].filter(n => n !== undefined).map(String)
    case 'bool': return ['true', 'false']
    case 'enum': return [...(s.values ?? [])]
    case 'list': return ['news', 'https://app.example.com', 'HS512', 'redis-a.example:6379,10.0.0.2:6379', 'sentinel-0:26379', 'https://issuer.example/=https://issuer.example/jwks']
    case 'secret': return ['redis://redis.example:6380', 'x'.repeat(40), RSA]
    case 'proxies': return ['true', '127.0.0.1']
    default: return ['x-1']
  }
}

// A field that another setting decides as well: DEMO_ENABLED's default is on
// exactly when REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS are unset.
const ALSO_CHANGES: Record<string, string[]> = {
  REDIS_URL: ['demoEnabled'],
  REDIS_CLUSTER_NODES: ['demoEnabled'],
  REDIS_SENTINELS: ['demoEnabled', 'redisSentinelMaster'],
  REDIS_SENTINEL_MASTER: ['demoEnabled', 'redisSentinels'],
  REDIS_SENTINEL_USERNAME: ['demoEnabled', 'redisSentinels', 'redisSentinelMaster'],
  REDIS_SENTINEL_PASSWORD: ['demoEnabled', 'redisSentinels', 'redisSentinelMaster'],
  REDIS_SENTINEL_PASSWORD_FILE: ['demoEnabled', 'redisSentinels', 'redisSentinelMaster'],
  REDIS_URL_FILE: ['demoEnabled'],
}

// Settings valid only beside others (the Sentinel ones go together): set
// with them, whose fields ALSO_CHANGES then allows.
const SENTINEL = { REDIS_SENTINELS: 'sentinel-0:26379', REDIS_SENTINEL_MASTER: 'mymaster' }
const COMPANIONS: Record<string, Record<string, string>> = {
  REDIS_SENTINELS: { REDIS_SENTINEL_MASTER: 'mymaster' },
  REDIS_SENTINEL_MASTER: { REDIS_SENTINELS: 'sentinel-0:26379' },
  REDIS_SENTINEL_USERNAME: SENTINEL,
  REDIS_SENTINEL_PASSWORD: SENTINEL,
  REDIS_SENTINEL_PASSWORD_FILE: SENTINEL,
  JWT_JWKS_URL: { JWT_ISSUER: 'https://issuer.example/' },
}

t.test('env names are words joined by single underscores (the camelCase of the type and of loadConfig agree on those)', async t => {
  for (const s of specs) t.match(s.env, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/, s.env)
})

t.test('the config has exactly one field per setting (composite settings share theirs), frozen', async t => {
  const config = loadConfig({ JWT_SECRET: SECRET })
  t.ok(Object.isFrozen(config))
  const want = [...new Set(specs.map(fieldOf))].sort()
  t.same(Object.keys(config).sort(), want)
  const own = specs.filter(s => s.partOf === undefined && s.fileOf === undefined)
  t.equal(new Set(own.map(fieldOf)).size, own.length, 'no two settings share a field unless composite (or a `_FILE` of a secret)')
})

t.test('every schema entry maps to a Config field that loadConfig sets from it, and only that field', async t => {
  for (const s of specs) {
    // A JWT input shows in `jwt` once there is a key; the keys themselves start from none.
    const base = s.partOf === 'jwt' && s.env !== 'JWT_SECRET' && s.env !== 'JWT_PUBLIC_KEY'
      ? { JWT_SECRET: SECRET }
      : s.partOf === 'redisAccess' ? { REDIS_URL: 'rediss://redis.example:6380' } : {}
    const before = loadConfig(base) as unknown as Record<string, unknown>
    const field = fieldOf(s)
    t.ok(field in before, `${s.env} has the field ${field}`)
    let changedIt = false
    for (const value of candidates(s)) {
      let after: Record<string, unknown>
      try {
        after = loadConfig({ ...base, ...ALONGSIDE[s.env], ...COMPANIONS[s.env], [s.env]: value }) as unknown as Record<string, unknown>
      } catch (err) {
        if (err instanceof ConfigError) continue
        throw err
      }
      const changed = Object.keys(before).filter(k => !isDeepStrictEqual(before[k], after[k]))
      const allowed = [field, ...(ALSO_CHANGES[s.env] ?? [])]
      t.same(changed.filter(k => !allowed.includes(k)), [], `${s.env}=${value.slice(0, 30)} changes no other field`)
      if (changed.includes(field)) changedIt = true
    }
    t.ok(changedIt, `some value of ${s.env} reaches config.${field} (if none of candidates() is valid for it, add one)`)
  }
})
