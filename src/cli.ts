#!/usr/bin/env node
/**
 * The command line: `token` mints a development token from JWT_SECRET;
 * `publish` writes one event, to Redis with the producer helper or through a
 * gateway's `POST /publish`. Exit codes: 0 done, 1 failed, 2 usage error.
 *
 *     sse-gateway token --sub 42 --topics 'news,orders.*' --ttl 3600
 *     sse-gateway publish --channel topic:news --event price --data '{"p":1}' --redis redis://127.0.0.1:6379
 *     sse-gateway publish --channel user:42 --data hello --url http://gateway:8080 --token "$JWT"
 *     sse-gateway disconnect --user 42 --redis redis://127.0.0.1:6379
 *     sse-gateway revoke --jti 3f6c... --exp 1767225600
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { Cluster, Redis } from 'ioredis'
import { clusterAccessTarget, redisAccessFrom, sentinelAccessTarget, type RedisAccess } from './core/config.js'
import { ConfigError, GatewayError } from './core/errors.js'
import { DEFAULT_MAX_DATA_BYTES, validateAppendOptions, validateEntry } from './core/publish.js'
import { ControlRequestError, parseControlCommand, type ControlCommand } from './core/control.js'
import { publish } from './producer.js'
import { writeControl } from './source/redis-control.js'
import { mintToken } from './core/token.js'
import { connectionFor, type RedisConnectionFactory } from './source/redis-connection.js'
import { clusterConnection, isClusterFactory, parseClusterNode } from './source/cluster-connection.js'
import { sentinelConnection } from './source/sentinel-connection.js'

const USAGE = `usage:
  sse-gateway token [--sub ID] [--topics 'a,b.*'] [--publish 'topic:*,user:*'] [--ttl SECONDS] [--aud A] [--iss I] [--kid KID]
      Prints an HS256 token signed with JWT_SECRET or JWT_SECRET_FILE (development
      use; with several secrets, one per line, the first signs). --sub fills the
      JWT_USER_CLAIM claim (default "sub"), --topics the JWT_TOPICS_CLAIM claim
      (default "topics"), --publish the JWT_PUBLISH_CLAIM claim (default "publish");
      --kid sets the header's kid (the key id an "oct" key of a JWT_JWKS_FILE has).
  sse-gateway publish --channel topic:NAME|user:SUB --data TEXT|- [--event NAME]
                      [--redis URL | --cluster HOST:PORT,...] [--prefix P] [--maxlen N | --minid ID] [--expire SECONDS]
                      [--sentinels host:port,... --sentinel-master NAME]
  sse-gateway publish --channel topic:NAME|user:SUB --data TEXT|- [--event NAME]
                      --url http://gateway:8080 [--token JWT]
      Publishes one event and prints its entry id. To Redis (--redis, default
      REDIS_URL or REDIS_URL_FILE; or a Redis Cluster: --cluster seed nodes, default
      REDIS_CLUSTER_NODES; key prefix --prefix, default KEY_PREFIX or "sse:"; MAXLEN ~ 10000
      for topics and 1000 with a 24 h EXPIRE for user channels unless told), or to
      a gateway's POST /publish (--url, token from --token or SSE_GATEWAY_TOKEN,
      with a publish claim). --data - reads the data from standard input.
      Sentinel: --sentinels (default REDIS_SENTINELS) and --sentinel-master
      (default REDIS_SENTINEL_MASTER) write to the master the Sentinels name;
      --redis (or REDIS_URL) then gives only the data nodes' credentials and db,
      and REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD the Sentinels' own.
      TLS and credentials come from the gateway's variables (REDIS_USERNAME,
      REDIS_PASSWORD(_FILE), REDIS_TLS_*): TLS with a rediss:// URL, rediss://
      cluster seeds (rediss://host:port,...) or rediss:// Sentinels.
  sse-gateway disconnect --user SUB [--allow-reconnect] | --session ID
  sse-gateway revoke --jti JTI [--exp SECONDS] | --user SUB [--before TIME]
                      [--redis URL | --cluster HOST:PORT,... | --sentinels host:port,... --sentinel-master NAME] [--prefix P]
      Tell every replica through Redis (README "Control"); prints the control
      stream entry id. disconnect --user ends every stream of the user and
      refuses its tokens issued before now (401 SSEGW_ERR_AUTH_REVOKED_TOKEN
      until they expire; a token issued after is accepted); with
      --allow-reconnect it only ends them. disconnect --session ends one
      stream (its id as the logs' "session" and presence show it). revoke
      --jti refuses that token until --exp (its exp claim, seconds; default
      CONTROL_MAX_TOKEN_LIFETIME_MS from now); revoke --user refuses the
      user's tokens issued before --before (now, Unix ms or ISO 8601;
      default now). Both end the streams they refuse.
exit codes: 0 done, 1 failed, 2 usage error`

class UsageError extends Error {}

function list (value: string): string[] {
  return value.split(',').map(s => s.trim()).filter(Boolean)
}

function tokenCommand (args: string[]): void {
  const { values } = parseArgs({
    args,
    options: {
      sub: { type: 'string' },
      topics: { type: 'string' },
      publish: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
      aud: { type: 'string' },
      iss: { type: 'string' },
      kid: { type: 'string' },
      claim: { type: 'string', default: process.env.JWT_TOPICS_CLAIM ?? 'topics' },
    },
  })
  const secret = signingSecret()
  if (secret === undefined || secret.length < 32) throw new UsageError('JWT_SECRET (or JWT_SECRET_FILE) must be set (at least 32 characters), as for the gateway.')
  if (values.kid !== undefined && !/^[\x21-\x7e]{1,256}$/.test(values.kid)) throw new UsageError('--kid must be 1 to 256 printable characters, no spaces.')
  const ttl = Number(values.ttl)
  if (!Number.isInteger(ttl) || ttl <= 0) throw new UsageError('--ttl must be a positive whole number of seconds.')
  const claims: Record<string, unknown> = {}
  if (values.sub !== undefined) claims[nonEmpty(process.env.JWT_USER_CLAIM) ?? 'sub'] = values.sub
  if (values.topics !== undefined) claims[values.claim] = list(values.topics)
  if (values.publish !== undefined) claims[process.env.JWT_PUBLISH_CLAIM ?? 'publish'] = list(values.publish)
  if (values.aud !== undefined) claims.aud = values.aud
  if (values.iss !== undefined) claims.iss = values.iss
  process.stdout.write(mintToken(secret, claims, ttl, Date.now(), values.kid) + '\n')
}

/** The secret tokens are signed with: JWT_SECRET's (or JWT_SECRET_FILE's) first line, as the gateway reads them. */
function signingSecret (): string | undefined {
  return fromEnvOrFile('JWT_SECRET')?.split(/\r?\n/).map(l => l.trim()).find(l => l.length > 0)
}

/** A secret variable, or the text of the file its `_FILE` twin names (one trailing newline stripped), as the gateway reads them. */
function fromEnvOrFile (name: string): string | undefined {
  const file = nonEmpty(process.env[`${name}_FILE`])
  const text = nonEmpty(process.env[name])
  if (file === undefined) return text
  if (text !== undefined) throw new UsageError(`${name} and ${name}_FILE are both set: give one.`)
  try {
    return nonEmpty(readFileSync(file, 'utf8').replace(/\r?\n$/, ''))
  } catch (err) {
    throw new UsageError(`${name}_FILE names ${file}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}).`)
  }
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function wholeNumber (name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d{1,15}$/.test(value)) throw new UsageError(`${name} must be a whole number, got "${value}".`)
  return Number(value)
}

/** The URL without its password, for messages. */
function safeUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.href
  } catch {
    return '(unparsable URL)'
  }
}

/**
 * Credentials and TLS from the gateway's own variables (REDIS_PASSWORD,
 * REDIS_TLS_CA_FILE...), for `url` (`cluster:<seeds>` for a Redis Cluster;
 * with `sentinels`, the data nodes: REDIS_URL or none).
 */
function redisAccess (url: string | undefined, sentinels?: readonly string[]): RedisAccess {
  try {
    return redisAccessFrom(process.env, sentinels !== undefined
      ? sentinelAccessTarget(sentinels, url)
      : url?.startsWith('cluster:') === true ? clusterAccessTarget(list(url.slice('cluster:'.length))) : url)
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message.replace('REDIS_URL', 'the Redis URL (--redis or REDIS_URL)'))
    throw err
  }
}

/** A client from `connection`: one Redis, the Sentinels' master, or a Redis Cluster. */
function redisClient (connection: RedisConnectionFactory): { client: Redis | Cluster, lastError: () => Error | undefined } {
  const options = {
    connectionName: 'sse-gateway:cli',
    connectTimeout: 5000,
    commandTimeout: 10000,
    maxRetriesPerRequest: 1,
    // A command line tool reports an unreachable server instead of waiting for it.
    retryStrategy: (times: number) => times > 2 ? null : 200,
    sentinelRetryStrategy: (times: number) => times > 2 ? null : 200,
  }
  const client = isClusterFactory(connection)
    ? connection.cluster(options, { clusterRetryStrategy: (times: number) => times > 2 ? null : 200 })
    : connection.connect(options)
  let last: Error | undefined
  client.on('error', (err: Error) => { last = err })
  return { client, lastError: () => last }
}

async function publishCommand (args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      channel: { type: 'string' },
      event: { type: 'string' },
      data: { type: 'string' },
      redis: { type: 'string' },
      cluster: { type: 'string' },
      prefix: { type: 'string' },
      maxlen: { type: 'string' },
      minid: { type: 'string' },
      expire: { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
      sentinels: { type: 'string' },
      'sentinel-master': { type: 'string' },
    },
  })
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0] ?? ''}"`)
  if (values.channel === undefined) throw new UsageError('--channel is required (topic:<name> or user:<sub>).')
  if (values.data === undefined) throw new UsageError('--data is required (the event data, or - to read it from standard input).')
  if ([values.url, values.redis, values.cluster].filter(v => v !== undefined).length > 1) throw new UsageError('give one of --redis, --cluster or --url.')
  const viaHttp = values.url !== undefined
  if (values.cluster !== undefined) {
    for (const n of list(values.cluster)) if (!/^(rediss?:\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:/[\]@]+):\d{1,5}$/.test(n)) throw new UsageError(`--cluster has "${n.includes('@') ? '(an entry with a user or password)' : n}", which is not host:port (give seed nodes as host:port,host:port, or rediss://host:port,... for TLS).`)
  }
  const envCluster = nonEmpty(process.env.REDIS_CLUSTER_NODES)
  const redisUrl = values.redis ??
    (values.cluster !== undefined ? `cluster:${values.cluster}` : undefined) ??
    (viaHttp ? undefined : fromEnvOrFile('REDIS_URL') ?? (envCluster !== undefined ? `cluster:${envCluster}` : undefined))
  const sentinels = list(values.sentinels ?? (viaHttp || values.cluster !== undefined ? '' : process.env.REDIS_SENTINELS ?? ''))
  const sentinelMaster = values['sentinel-master'] ?? (viaHttp || values.cluster !== undefined ? undefined : nonEmpty(process.env.REDIS_SENTINEL_MASTER))
  if (viaHttp && (sentinels.length > 0 || sentinelMaster !== undefined)) throw new UsageError('--sentinels and --sentinel-master apply to Redis only, not to --url.')
  if (redisUrl?.startsWith('cluster:') === true && (sentinels.length > 0 || sentinelMaster !== undefined)) throw new UsageError('give --cluster (a Redis Cluster, or REDIS_CLUSTER_NODES) or --sentinels (a Sentinel-managed Redis, or REDIS_SENTINELS), not both.')
  if (sentinels.length > 0 && sentinelMaster === undefined) throw new UsageError('--sentinels needs --sentinel-master NAME (or REDIS_SENTINEL_MASTER): the master name the Sentinels monitor.')
  if (sentinels.length === 0 && sentinelMaster !== undefined) throw new UsageError('--sentinel-master needs --sentinels host:port,... (or REDIS_SENTINELS).')
  for (const s of sentinels) if (!/^(rediss?:\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:[\]/@]+):\d{1,5}$/.test(s)) throw new UsageError(`--sentinels has "${s.includes('@') ? '(an entry with a user or password)' : s}", which is not host:port (or rediss://host:port for TLS).`)
  if (!viaHttp && redisUrl === undefined && sentinels.length === 0) throw new UsageError('nowhere to publish: give --redis URL (or set REDIS_URL), --cluster HOST:PORT,... (or set REDIS_CLUSTER_NODES), --sentinels with --sentinel-master, or --url of a gateway.')
  if (viaHttp && (values.maxlen !== undefined || values.minid !== undefined || values.expire !== undefined || values.prefix !== undefined)) {
    throw new UsageError('--maxlen, --minid, --expire and --prefix apply to --redis and --cluster only: through --url the gateway applies its own PUBLISH_* settings.')
  }
  const data = values.data === '-' ? await readStdin() : values.data
  const maxDataBytes = wholeNumber('MAX_EVENT_BYTES', nonEmpty(process.env.MAX_EVENT_BYTES)) ?? DEFAULT_MAX_DATA_BYTES
  const entry = { channel: values.channel, event: values.event, data }

  if (viaHttp) {
    const token = values.token ?? nonEmpty(process.env.SSE_GATEWAY_TOKEN)
    if (token === undefined) throw new UsageError('--url needs a token with a publish claim: --token JWT or SSE_GATEWAY_TOKEN.')
    // Refuse locally what the gateway would refuse, with the same message.
    validateEntry('', entry, { maxDataBytes, limitName: 'MAX_EVENT_BYTES' })
    let base: URL
    try {
      base = new URL(values.url as string)
    } catch {
      throw new UsageError(`--url must be the gateway's base URL (http://host:port), got "${values.url ?? ''}".`)
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new UsageError(`--url must be http:// or https://, got "${base.protocol}".`)
    const endpoint = new URL('publish', base.href.endsWith('/') ? base.href : `${base.href}/`)
    let res: Response
    let text: string
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ channel: values.channel, ...(values.event !== undefined ? { event: values.event } : {}), data }),
        signal: AbortSignal.timeout(15000),
      })
      text = await res.text()
    } catch (err) {
      // fetch says "fetch failed"; the reason (ECONNREFUSED, a timeout) is its cause.
      const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message
      throw new Error(`cannot reach the gateway at ${endpoint.origin}: ${cause}`)
    }
    let body: { id?: unknown, error?: unknown, message?: unknown } = {}
    try { body = JSON.parse(text) as typeof body } catch {}
    if (res.status !== 200 || typeof body.id !== 'string') {
      const what = typeof body.error === 'string' ? `${body.error}: ${String(body.message)}` : text.slice(0, 200)
      throw new Error(`the gateway answered ${res.status}: ${what}`)
    }
    process.stdout.write(body.id + '\n')
    return
  }

  const append = {
    maxLen: wholeNumber('--maxlen', values.maxlen),
    minId: values.minid,
    expireSeconds: wholeNumber('--expire', values.expire),
  }
  const prefix = values.prefix ?? nonEmpty(process.env.KEY_PREFIX) ?? 'sse:'
  // Arguments are checked before a connection is opened.
  validateEntry(prefix, entry, { maxDataBytes, limitName: 'MAX_EVENT_BYTES' })
  validateAppendOptions(append)
  const connection = sentinelMaster !== undefined
    ? sentinelConnection({
      sentinels,
      master: sentinelMaster,
      sentinelUsername: nonEmpty(process.env.REDIS_SENTINEL_USERNAME),
      sentinelPassword: fromEnvOrFile('REDIS_SENTINEL_PASSWORD'),
      url: redisUrl,
    }, redisAccess(redisUrl, sentinels))
    : redisUrl?.startsWith('cluster:') === true
      ? clusterConnection(list(redisUrl.slice('cluster:'.length)).map(parseClusterNode), redisAccess(redisUrl))
      : connectionFor(redisUrl as string, redisAccess(redisUrl))
  const where = sentinelMaster !== undefined ? `the master "${sentinelMaster}" of the Sentinels ${sentinels.join(',')}` : `Redis at ${safeUrl(redisUrl as string)}`
  const { client, lastError } = redisClient(connection)
  try {
    const id = await publish(client, { prefix, ...entry, ...append, maxDataBytes })
    process.stdout.write(id + '\n')
    await client.quit().catch(() => {})
  } catch (err) {
    // A reply error (WRONGTYPE, NOPERM...) is the server's answer; anything else is the connection.
    if (err instanceof GatewayError || (err as Error).name === 'ReplyError') throw err
    let cause = lastError()?.message ?? (err as Error).message
    // A cluster's slot refresh and a Sentinel lookup drop the error underneath (a certificate, a login): ask once more, plainly.
    if (/Connection is closed|Failed to refresh slots cache|All sentinels are unreachable/.test(cause) && connection.explain !== undefined) {
      const why = await connection.explain().catch(() => undefined)
      if (why !== undefined) cause = `${cause} (${why.message})`
    }
    throw new Error(`cannot reach ${where}: ${cause}`)
  } finally {
    client.disconnect()
  }
}

const REDIS_OPTIONS = {
  redis: { type: 'string' },
  cluster: { type: 'string' },
  sentinels: { type: 'string' },
  'sentinel-master': { type: 'string' },
  prefix: { type: 'string' },
} as const

/** Redis from --redis, --cluster or --sentinels (or REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS), for the control commands. */
function controlTarget (values: { redis?: string, cluster?: string, sentinels?: string, 'sentinel-master'?: string }): { connection: RedisConnectionFactory, where: string } {
  const given = [values.redis, values.cluster, values.sentinels].filter(v => v !== undefined).length
  if (given > 1) throw new UsageError('give one of --redis, --cluster or --sentinels.')
  const fromEnv = given === 0
  const cluster = values.cluster ?? (fromEnv ? nonEmpty(process.env.REDIS_CLUSTER_NODES) : undefined)
  const sentinels = list(values.sentinels ?? (fromEnv ? process.env.REDIS_SENTINELS ?? '' : ''))
  const url = values.redis ?? (fromEnv || sentinels.length > 0 ? fromEnvOrFile('REDIS_URL') : undefined)
  if (sentinels.length > 0) {
    const master = values['sentinel-master'] ?? nonEmpty(process.env.REDIS_SENTINEL_MASTER)
    if (master === undefined) throw new UsageError('--sentinels needs --sentinel-master NAME (or REDIS_SENTINEL_MASTER): the master name the Sentinels monitor.')
    for (const n of sentinels) if (!/^(rediss?:\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:[\]/@]+):\d{1,5}$/.test(n)) throw new UsageError(`--sentinels has "${n.includes('@') ? '(an entry with a user or password)' : n}", which is not host:port (or rediss://host:port for TLS).`)
    return {
      connection: sentinelConnection({ sentinels, master, sentinelUsername: nonEmpty(process.env.REDIS_SENTINEL_USERNAME), sentinelPassword: fromEnvOrFile('REDIS_SENTINEL_PASSWORD'), url }, redisAccess(url, sentinels)),
      where: `the master "${master}" of the Sentinels ${sentinels.join(',')}`,
    }
  }
  if (cluster !== undefined && url === undefined) {
    for (const n of list(cluster)) if (!/^(rediss?:\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:/[\]@]+):\d{1,5}$/.test(n)) throw new UsageError(`--cluster has "${n.includes('@') ? '(an entry with a user or password)' : n}", which is not host:port (give seed nodes as host:port,host:port, or rediss://host:port,... for TLS).`)
    return { connection: clusterConnection(list(cluster).map(parseClusterNode), redisAccess(`cluster:${cluster}`)), where: `the Redis Cluster at ${cluster}` }
  }
  if (url === undefined) throw new UsageError('no Redis to write to: give --redis URL (or set REDIS_URL), --cluster HOST:PORT,... (or REDIS_CLUSTER_NODES), or --sentinels with --sentinel-master.')
  try {
    return { connection: connectionFor(url, redisAccess(url)), where: `Redis at ${safeUrl(url)}` }
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw new UsageError(`--redis (or REDIS_URL) is not a Redis URL: ${(err as Error).message}`)
  }
}

/** `disconnect` and `revoke`: one control command, written as every replica reads it. */
async function controlCommand (name: 'disconnect' | 'revoke', args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...REDIS_OPTIONS,
      user: { type: 'string' },
      session: { type: 'string' },
      jti: { type: 'string' },
      exp: { type: 'string' },
      before: { type: 'string' },
      'allow-reconnect': { type: 'boolean' },
    },
  })
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0] ?? ''}"`)
  const maxTokenLifetimeMs = wholeNumber('CONTROL_MAX_TOKEN_LIFETIME_MS', nonEmpty(process.env.CONTROL_MAX_TOKEN_LIFETIME_MS)) ?? 86400000
  const body: Record<string, unknown> = {}
  if (name === 'disconnect') {
    if (values.jti !== undefined || values.exp !== undefined || values.before !== undefined) throw new UsageError('disconnect takes --user or --session; --jti, --exp and --before go with revoke.')
    if (values['allow-reconnect'] === true && values.user === undefined) throw new UsageError('--allow-reconnect goes with --user.')
    if (values.user !== undefined) body.user = values.user
    if (values.session !== undefined) body.session = values.session
    // A user is disconnected for good: the tokens it holds are refused too, unless told otherwise.
    if (values.user !== undefined && values['allow-reconnect'] !== true && values.session === undefined) {
      body.before = 'now'
      name = 'revoke'
    }
  } else {
    if (values.session !== undefined || values['allow-reconnect'] !== undefined) throw new UsageError('revoke takes --jti [--exp] or --user [--before]; --session and --allow-reconnect go with disconnect.')
    if (values.user !== undefined) body.user = values.user
    if (values.jti !== undefined) body.jti = values.jti
    if (values.exp !== undefined) body.exp = wholeNumber('--exp', values.exp)
    if (values.before !== undefined) body.before = values.before
  }
  let command: ControlCommand
  try {
    command = parseControlCommand({ ...body, kind: name }, { nowMs: Date.now(), maxTokenLifetimeMs })
  } catch (err) {
    if (err instanceof ControlRequestError) throw new UsageError(err.message.replace(/`(\w+)`/g, (_, option: string) => option === 'kind' ? name : `--${option}`))
    throw err
  }
  const prefix = values.prefix ?? nonEmpty(process.env.KEY_PREFIX) ?? 'sse:'
  const { connection, where } = controlTarget(values)
  const { client, lastError } = redisClient(connection)
  try {
    const id = await writeControl(client, prefix, command, maxTokenLifetimeMs)
    process.stdout.write(id + '\n')
    await client.quit().catch(() => {})
  } catch (err) {
    if ((err as Error).name === 'ReplyError') throw err
    const cause = lastError()?.message ?? (err as Error).message
    throw new Error(`cannot reach ${where}: ${cause}`)
  } finally {
    client.disconnect()
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim()
}

async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    if (command === 'token') tokenCommand(rest)
    else if (command === 'publish') await publishCommand(rest)
    else if (command === 'disconnect' || command === 'revoke') await controlCommand(command, rest)
    else if (command === '--help' || command === '-h' || command === 'help') process.stdout.write(USAGE + '\n')
    else throw new UsageError(command === undefined ? 'missing command' : `unknown command: ${command}`)
    return 0
  } catch (err) {
    // parseArgs refuses unknown or malformed options with a TypeError that has a code.
    const usage = err instanceof UsageError || err instanceof GatewayError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true
    const message = err instanceof GatewayError ? `${err.code}: ${err.message}` : (err as Error).message
    if (usage) {
      process.stderr.write(`${message}\n${USAGE}\n`)
      return 2
    }
    process.stderr.write(`sse-gateway ${command ?? ''}: ${message}\n`)
    return 1
  }
}

process.exitCode = await main(process.argv.slice(2))
