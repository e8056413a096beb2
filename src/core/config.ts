/**
 * The gateway's settings: one schema over environment variables, validated
 * once at start-up and frozen. Each field's description is its documentation
 * (the README settings table is generated from it and checked by a test).
 */
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { ConfigError } from './errors.js'
import { isValidTopicName } from './channels.js'
import { readListenerTls, type ListenerTls } from './listener-tls.js'
import { ALL_ALGORITHMS, ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, jwkMaterial, keyTypeName, publicKeyAlgorithms, type KeyMaterial } from './jwk.js'

/**
 * How a setting's text is read, and so the type of its Config field: `int`
 * number, `bool` boolean, `list` readonly string[] (comma-separated),
 * `enum` one of its `values`, `string` and `secret` string (a secret is the
 * same, but no message ever holds its value), `proxies` TRUST_PROXY's false,
 * true or addresses (see parseTrustProxy).
 */
type Kind = 'string' | 'int' | 'bool' | 'list' | 'secret' | 'enum' | 'proxies'

interface SettingSpec {
  readonly env: string
  readonly kind: Kind
  /** Used when the variable is unset or blank; without one the field may be undefined (a list is empty). */
  readonly default?: string
  readonly min?: number
  readonly max?: number
  readonly values?: readonly string[]
  readonly description: string
  /** The Config field, when it is not the variable's name in camelCase. */
  readonly field?: string
  /** Not a Config field of its own: one input of that composite field (see {@link CompositeFields}). */
  readonly partOf?: keyof CompositeFields
  /**
   * Not a Config field: a file (the Docker and Kubernetes secret convention)
   * whose text is that secret setting's value, read before any setting is
   * parsed (see {@link withSecretFiles}).
   */
  readonly fileOf?: string
}

/**
 * The schema, in the order the README lists it. Each setting is written once,
 * here: its Config field (`READER_BLOCK_MS` is `readerBlockMs`, unless `field`
 * names another) and that field's type are derived from its entry, and
 * loadConfig fills it. To add a setting, add its entry; only a rule that
 * looks at more than its own kind and bounds (a pattern, another setting) is
 * written in loadConfig, and a value that is more than the parsed text goes
 * in {@link DerivedFields}.
 */
export const SETTINGS = [
  { env: 'PORT', kind: 'int', default: '8080', min: 0, max: 65535, description: 'Port of the public HTTP listener (`/events`).' },
  { env: 'HOST', kind: 'string', default: '0.0.0.0', description: 'Address the public listener binds to (`::` for IPv6).' },
  { env: 'INTERNAL_PORT', kind: 'int', default: '9090', min: 0, max: 65535, description: 'Port of the internal listener (`/metrics`, `/livez`, `/readyz`); keep it off the load balancer.' },
  { env: 'INTERNAL_HOST', kind: 'string', default: '0.0.0.0', description: 'Address the internal listener binds to.' },
  { env: 'TLS_CERT_FILE', kind: 'string', partOf: 'listenerTls', description: 'PEM certificate of the public listener, then its intermediates (cert-manager\'s `tls.crt`). With `TLS_KEY_FILE`, the public listener speaks HTTPS, HTTP/2 and HTTP/1.1 chosen by ALPN; both files are watched and a new pair is taken without a restart (a pair that does not match keeps the old one serving). The internal listener stays plain HTTP.' },
  { env: 'TLS_KEY_FILE', kind: 'string', partOf: 'listenerTls', description: 'PEM private key (not encrypted) of `TLS_CERT_FILE`.' },
  { env: 'HTTP2_CLEARTEXT', kind: 'bool', default: 'false', description: 'The public listener speaks cleartext HTTP/2 with prior knowledge (h2c), for a service mesh or proxy that speaks HTTP/2 upstream; HTTP/1.1 clients cannot connect to it then. Not with `TLS_CERT_FILE` (over TLS, HTTP/2 is negotiated by ALPN).' },
  { env: 'REDIS_URL', kind: 'secret', description: 'Redis to read streams from: `redis://[user:password@]host:port[/db]`, `rediss://` for TLS, or `unix:///path/redis.sock`. Unset: the in-memory engine (one replica only, history lost on restart), for a first run.' },
  { env: 'REDIS_URL_FILE', kind: 'string', fileOf: 'REDIS_URL', description: 'File holding `REDIS_URL` (a mounted Secret, when the URL carries a password), read at start-up; one trailing newline is stripped. Instead of `REDIS_URL`.' },
  { env: 'REDIS_CLUSTER_NODES', kind: 'list', description: 'Redis Cluster seed nodes, `host:port,host:port,...` (any few nodes of the cluster; the rest are discovered), or `rediss://host:port,...` for TLS to every node (all or none; the `REDIS_TLS_*` files apply). Instead of `REDIS_URL`: the gateway then routes every command by hash slot and keeps one live feed per master, following resharding and failover. No server setting needed: each master is fed by client tracking (keyspace notifications with `READER_MODE=notify`, or on a node that refuses `CLIENT`). Producers write plain keys (`sse:user:42`), no hash tags. Nodes take `REDIS_USERNAME` and `REDIS_PASSWORD`.' },
  { env: 'REDIS_SENTINELS', kind: 'list', description: 'Sentinel-managed Redis: the Sentinels as `host:port,host:port,...` (any of them answers; three or more for a quorum). Every connection asks them for the current master of `REDIS_SENTINEL_MASTER` and follows it through a failover. With it, `REDIS_URL` is optional and only says how to talk to the data nodes (`redis://[user:password@]<master name>[/db]`, `rediss://` for TLS): its host must be the master name, since the Sentinels say where the master is. TLS: one `rediss://` (here as `rediss://host:port,...`, or in `REDIS_URL`) means TLS to the Sentinels and the data nodes alike; `redis://` on the other side keeps that side plain.' },
  { env: 'REDIS_SENTINEL_MASTER', kind: 'string', description: 'The master name the Sentinels monitor (`sentinel monitor <name> ...`); required with `REDIS_SENTINELS`.' },
  { env: 'REDIS_SENTINEL_USERNAME', kind: 'string', description: 'ACL user the gateway logs in to the Sentinels themselves as (a `user <name> on >password ...` line in sentinel.conf), when they require one; the data nodes\' user goes in `REDIS_URL` or `REDIS_USERNAME`.' },
  { env: 'REDIS_SENTINEL_PASSWORD', kind: 'secret', description: 'Password of the Sentinels themselves (`requirepass` in sentinel.conf, or that user\'s), when they require one; the data nodes\' password goes in `REDIS_URL` or `REDIS_PASSWORD`.' },
  { env: 'REDIS_SENTINEL_PASSWORD_FILE', kind: 'string', fileOf: 'REDIS_SENTINEL_PASSWORD', description: 'File holding `REDIS_SENTINEL_PASSWORD`, read at start-up; one trailing newline is stripped. Instead of `REDIS_SENTINEL_PASSWORD`.' },
  { env: 'REDIS_USERNAME', kind: 'string', partOf: 'redisAccess', description: 'ACL user the gateway authenticates as (Redis 6+), when it is not in `REDIS_URL` (give it in one place, not both). Needs a password. Unset: the `default` user. The rights each reader mode needs: README, "TLS and ACL".' },
  { env: 'REDIS_PASSWORD', kind: 'secret', partOf: 'redisAccess', description: 'Password of that user (or the server\'s `requirepass`), when it is not in `REDIS_URL`. Set this, `REDIS_PASSWORD_FILE` or a password in the URL: one of them.' },
  { env: 'REDIS_PASSWORD_FILE', kind: 'string', partOf: 'redisAccess', description: 'File holding the password (a mounted Secret), read at start-up; one trailing newline is stripped. Instead of `REDIS_PASSWORD`.' },
  { env: 'REDIS_TLS_CA_FILE', kind: 'string', partOf: 'redisAccess', description: 'PEM file of the CA certificate(s) that signed the Redis servers\' certificates, for `rediss://` to a server with a private CA (one Redis, every node of a cluster, the Sentinels and their data nodes); it replaces the system\'s CAs for Redis. Unset: the system\'s public CAs. A server\'s certificate must name the host connected to, or `REDIS_TLS_SERVERNAME`.' },
  { env: 'REDIS_TLS_CERT_FILE', kind: 'string', partOf: 'redisAccess', description: 'PEM client certificate, for a Redis that requires one (`tls-auth-clients yes`: mutual TLS). Set with `REDIS_TLS_KEY_FILE`; needs `rediss://`.' },
  { env: 'REDIS_TLS_KEY_FILE', kind: 'string', partOf: 'redisAccess', description: 'PEM private key (not encrypted) of `REDIS_TLS_CERT_FILE`.' },
  { env: 'REDIS_TLS_SERVERNAME', kind: 'string', partOf: 'redisAccess', description: 'The host name every Redis server\'s TLS certificate is checked against (and sent as SNI), when it is not the host connected to: a Redis Cluster that announces its nodes by IP address while their certificate names a host (Azure Cache for Redis, ElastiCache with IP discovery), Sentinels that name the master by IP, or a `rediss://` URL by IP. Unset: each connection checks the host it connects to (a cluster\'s seed nodes by the name given, the others by the address the cluster announces). Needs TLS.' },
  { env: 'KEY_PREFIX', kind: 'string', default: 'sse:', description: 'Prefix of every stream key: a user channel is `<prefix>user:<sub>`, a topic `<prefix>topic:<name>`.' },
  { env: 'JWT_SECRET', kind: 'secret', partOf: 'jwt', description: 'HMAC secret for HS256/384/512 tokens, at least 32 characters. Several, one per line, are tried in order (rotation: add the new secret, sign with it, remove the old one later). Can be combined with `JWT_PUBLIC_KEY` and `JWT_JWKS_FILE`: each key verifies only the algorithms of its type.' },
  { env: 'JWT_SECRET_FILE', kind: 'string', fileOf: 'JWT_SECRET', description: 'File holding `JWT_SECRET` (a mounted Secret), read at start-up; one trailing newline is stripped. Instead of `JWT_SECRET`.' },
  { env: 'JWT_PUBLIC_KEY', kind: 'secret', partOf: 'jwt', description: 'PEM public key (RSA, EC or Ed25519) for RS*/PS*/ES*/EdDSA tokens; several PEM blocks one after the other (a bundle) are each a key, tried in order.' },
  { env: 'JWT_PUBLIC_KEY_FILE', kind: 'string', fileOf: 'JWT_PUBLIC_KEY', description: 'File holding `JWT_PUBLIC_KEY` (one PEM key or a bundle), read at start-up. Instead of `JWT_PUBLIC_KEY`.' },
  { env: 'JWT_JWKS_FILE', kind: 'string', partOf: 'jwt', description: 'Local JWKS file (`{"keys":[...]}`: RSA, EC, OKP Ed25519 and `oct` HMAC keys), read at start-up. A token with a `kid` is verified by the key of that `kid` (or by keys without one); keys without a `kid` are tried in order.' },
  { env: 'JWT_JWKS_URL', kind: 'list', partOf: 'jwt', description: 'Identity provider key set (JWKS) fetched over HTTPS and cached: one URL, the keys of every issuer in `JWT_ISSUER` (required with it), or `issuer=url` pairs, comma-separated, each issuer\'s own set. A token\'s `iss` is checked against `JWT_ISSUER` before any key is fetched; keys are chosen by `kid` and never taken from the token (`jku`, `x5u`, `jwk`, `x5c` are refused). README, "Identity providers".' },
  { env: 'JWT_JWKS_MIN_TTL_MS', kind: 'int', default: '60000', min: 1000, max: 86400000, partOf: 'jwt', description: 'Shortest time a fetched key set is used before it is fetched again (a `Cache-Control: max-age` below it, or none, gives this).' },
  { env: 'JWT_JWKS_MAX_TTL_MS', kind: 'int', default: '3600000', min: 1000, max: 604800000, partOf: 'jwt', description: 'Longest time a fetched key set is used before it is fetched again (a longer `max-age` is cut to this). While the endpoint fails, the last good set keeps serving.' },
  { env: 'JWT_JWKS_COOLDOWN_MS', kind: 'int', default: '30000', min: 100, max: 3600000, partOf: 'jwt', description: 'Least time between two fetches of one issuer\'s key set: a token with an unknown `kid` fetches again at most this often (a flood of made-up kids costs one fetch per cooldown), and a failed fetch is retried after it.' },
  { env: 'JWT_JWKS_TIMEOUT_MS', kind: 'int', default: '5000', min: 100, max: 60000, partOf: 'jwt', description: 'How long one key-set fetch may take.' },
  { env: 'JWT_JWKS_MAX_BYTES', kind: 'int', default: '262144', min: 1024, max: 16777216, partOf: 'jwt', description: 'Largest key-set response read; a larger one is a failed fetch.' },
  { env: 'JWT_ALGORITHMS', kind: 'list', partOf: 'jwt', description: 'Allowed `alg` values. Default: those of the configured keys\' types (HS256,HS384,HS512 for a secret); with `JWT_JWKS_URL`, RS*, PS*, ES* and EdDSA.' },
  { env: 'JWT_AUDIENCE', kind: 'list', partOf: 'jwt', description: 'When set, a token\'s `aud` must contain one of these values.' },
  { env: 'JWT_ISSUER', kind: 'list', partOf: 'jwt', description: 'When set, a token\'s `iss` must be one of these values (exactly). Required with `JWT_JWKS_URL`.' },
  { env: 'JWT_USER_CLAIM', kind: 'string', field: 'userClaim', default: 'sub', description: 'Claim naming the user (its channel is `user:<value>`), for providers whose user id is not in `sub`.' },
  { env: 'JWT_TOPICS_CLAIM', kind: 'string', field: 'topicsClaim', default: 'topics', description: 'Claim listing the topics a token may read: an array or a space/comma-separated string of names and `*` patterns.' },
  { env: 'JWT_PUBLISH_CLAIM', kind: 'string', field: 'publishClaim', default: 'publish', description: 'Claim listing the channels a token may publish to with `POST /publish`: an array or a space/comma-separated string of channel names and `*` patterns (`topic:*`, `user:*`, `topic:orders.*`). A token without it cannot publish.' },
  { env: 'JWT_CLOCK_TOLERANCE_MS', kind: 'int', default: '0', min: 0, max: 300000, partOf: 'jwt', description: 'Clock skew allowed when checking `exp` and `nbf`, in milliseconds.' },
  { env: 'TOKEN_COOKIE', kind: 'string', default: 'sse_token', description: 'Name of the cookie a token may come in (for same-site browsers; refresh it and EventSource reconnects by itself).' },
  { env: 'PUBLIC_TOPICS', kind: 'list', description: 'Topics (names or `*` patterns) anyone may read without a token.' },
  { env: 'MAX_TOPICS_PER_CONNECTION', kind: 'int', default: '16', min: 1, max: 256, description: 'Most `topic` parameters one connection may ask for.' },
  { env: 'MAX_CONNECTIONS', kind: 'int', default: '20000', min: 1, max: 10000000, description: 'Most open streams on this replica; beyond it new streams are told to retry (EventSource) or get 503.' },
  { env: 'MAX_CONNECTIONS_PER_USER', kind: 'int', default: '32', min: 1, max: 100000, description: 'Most open streams per token `sub`, counted across every replica when Redis is the engine (one lease per stream, README "Control"), on this replica with the in-memory engine; beyond it: 429 `SSEGW_ERR_TOO_MANY_CONNECTIONS`.' },
  { env: 'CONNECT_RATE_PER_IP', kind: 'int', default: '0', min: 0, max: 1000000, description: 'Most new streams per client IP per second (0: no limit); beyond it: 429 `SSEGW_ERR_RATE_LIMITED` with `Retry-After`. Behind a proxy set `TRUST_PROXY`.' },
  { env: 'TRUST_PROXY', kind: 'proxies', default: 'false', description: 'Which proxies in front may tell the client address in `X-Forwarded-For` (what `CONNECT_RATE_PER_IP` counts and logs show): `false` (none: the peer address), or the proxies\' addresses and CIDRs, comma-separated (`127.0.0.1`, `10.0.0.0/8`, and the names `loopback`, `linklocal`, `uniquelocal` for those ranges). The client is the nearest address that is not a trusted proxy. `true` trusts every hop, so any client can choose its address: avoid it.' },
  { env: 'HEADERS_TIMEOUT_MS', kind: 'int', default: '10000', min: 1000, max: 300000, description: 'How long a client may take to send its request line and headers; a slower one gets 408 and is disconnected (a client that drips its headers holds a connection for free otherwise).' },
  { env: 'HEARTBEAT_INTERVAL_MS', kind: 'int', default: '15000', min: 1000, max: 300000, description: 'Interval of the heartbeat comment that keeps proxies from closing idle streams.' },
  { env: 'RETRY_MS', kind: 'int', default: '2000', min: 0, max: 600000, description: 'Base reconnect delay sent as `retry:`.' },
  { env: 'RETRY_JITTER_MS', kind: 'int', default: '1000', min: 0, max: 600000, description: 'Random extra delay added to `retry:` per connection, so reconnects spread out.' },
  { env: 'CORS_ORIGINS', kind: 'list', description: 'Origins allowed to connect cross-site: exact origins (credentials, so cookies, allowed) or `*` (any origin, no credentials). Empty: no CORS headers.' },
  { env: 'READER_MODE', kind: 'enum', default: 'auto', values: ['auto', 'block', 'notify', 'track'], description: 'How streams are read live: `track` (client tracking: Redis >= 6 tells the gateway which keys it read have changed, and only those are read; no server setting; an ACL user needs CLIENT ID, CLIENT TRACKING and SUBSCRIBE to `__redis__:invalidate`), `notify` (keyspace notifications: reads only keys that changed; needs `notify-keyspace-events` with K and t), `block` (sharded blocking XREAD, works everywhere, best for few busy keys), `auto` (track where the server gives CLIENT TRACKING, else notify when the server has notifications on, read from its setting or, where CONFIG is refused, seen to arrive, else block).' },
  { env: 'READER_SHARDS', kind: 'int', default: '4', min: 1, max: 64, description: 'Blocking Redis connections that share the stream keys read by this replica.' },
  { env: 'READER_BLOCK_MS', kind: 'int', default: '5000', min: 100, max: 60000, description: 'BLOCK timeout of each shard\'s XREAD; also bounds how long a released key is still read.' },
  { env: 'READER_BLOCK_MAX_KEYS_PER_SECOND', kind: 'int', default: '75000', min: 0, max: 100000000, description: 'Blocking reader only: most stream keys this replica lists to Redis per second, over all shards. Each XREAD lists every key of its shard and Redis spends about 2 µs per key listed, so with thousands of keys a shard waits between reads (up to keys × shards / this value: 133 ms at 10,000 keys) instead of taking a Redis core. Per replica: replicas add up. 0 never waits. The notify reader has no such cost.' },
  { env: 'READER_PROBE_INTERVAL_MS', kind: 'int', default: '5000', min: 0, max: 600000, description: 'Every this many ms the replica writes a probe entry under `<prefix>__gateway:` and checks that its live reader sees it: a replica whose live reads stop (Redis frozen, reads failing, keyspace notifications switched off) is not ready until they flow again, and a notify reader whose notifications stopped falls back to blocking reads. 0 turns the probe off (readiness then follows read errors only).' },
  { env: 'READER_COUNT', kind: 'int', default: '512', min: 1, max: 100000, description: 'Most entries read per key by one XREAD.' },
  { env: 'CATCHUP_PAGE_SIZE', kind: 'int', default: '500', min: 1, max: 100000, description: 'Entries per XRANGE page when a client resumes or catches up.' },
  { env: 'MAX_CONCURRENT_CATCHUPS', kind: 'int', default: '32', min: 1, max: 10000, description: 'Most catch-up reads in flight at once on this replica, so a reconnect storm cannot starve live delivery.' },
  { env: 'HISTORY_MAX_ENTRIES', kind: 'int', default: '1000', min: 0, max: 100000, description: 'Most entries per channel a first connect may ask for with `history=N` (0 disables `history` and `since`).' },
  { env: 'SLOW_CLIENT_BUFFER_BYTES', kind: 'int', default: '262144', min: 65536, max: 67108864, description: 'Bytes a client may leave unread in its socket buffer before it stops taking live events (it catches up from Redis once it drains).' },
  { env: 'SLOW_CLIENT_TIMEOUT_MS', kind: 'int', default: '30000', min: 1000, max: 3600000, description: 'How long a client may stay over that buffer before it is disconnected (it resumes when it reconnects).' },
  { env: 'MAX_EVENT_BYTES', kind: 'int', default: '262144', min: 1, max: 67108864, description: 'Largest `data` (in UTF-8 bytes) relayed; larger entries are skipped and counted.' },
  { env: 'PUBLISH_ENABLED', kind: 'bool', default: 'true', description: 'Serve `POST /publish`, for services that cannot write to Redis themselves (tokens still need the `JWT_PUBLISH_CLAIM` claim).' },
  { env: 'PUBLISH_TOPIC_MAX_ENTRIES', kind: 'int', default: '10000', min: 1, max: 100000000, description: '`MAXLEN ~` of a topic stream written through `POST /publish`: about this many newest entries are kept.' },
  { env: 'PUBLISH_USER_MAX_ENTRIES', kind: 'int', default: '1000', min: 1, max: 100000000, description: '`MAXLEN ~` of a per-user stream written through `POST /publish`.' },
  { env: 'PUBLISH_USER_TTL_SECONDS', kind: 'int', default: '86400', min: 0, max: 31536000, description: '`EXPIRE` set on a per-user stream at each `POST /publish` to it, so streams of users who left go away (0: none).' },
  { env: 'DRAIN_WINDOW_MS', kind: 'int', default: '10000', min: 0, max: 600000, description: 'On SIGTERM, open streams are ended (with a jittered `retry:`) at random moments spread over this window, so other replicas are not stampeded.' },
  { env: 'CONTROL_TOKEN', kind: 'secret', description: 'Bearer secret of the control endpoints on the internal listener (`POST /control/disconnect`, `POST /control/revoke`, `GET /control/presence`), at least 32 characters. Unset (and no `CONTROL_TOKEN_FILE`): those endpoints answer 403 `SSEGW_ERR_CONTROL_NOT_CONFIGURED`; the CLI and services can still write to Redis directly.' },
  { env: 'CONTROL_TOKEN_FILE', kind: 'string', fileOf: 'CONTROL_TOKEN', description: 'File holding `CONTROL_TOKEN` (a mounted Secret), read at start-up; one trailing newline is stripped. Instead of `CONTROL_TOKEN`.' },
  { env: 'CONTROL_LEASE_MS', kind: 'int', default: '6000', min: 1000, max: 600000, description: 'Redis engine: how long a stream\'s lease (what the cluster-wide `MAX_CONNECTIONS_PER_USER` and presence count) lasts unrenewed; each replica renews its streams\' leases every third of it. A replica that dies (SIGKILL, lost network) frees its streams\' count within this time.' },
  { env: 'CONTROL_MAX_TOKEN_LIFETIME_MS', kind: 'int', default: '86400000', min: 60000, max: 31536000000, description: 'Longest lifetime (`exp` - `iat`) of the tokens you issue: a user\'s cut-off ("tokens issued before T are refused") is kept this long after T, and a `jti` revocation given without the token\'s `exp` this long from now. A token living longer than this could be accepted again once its cut-off expires.' },
  { env: 'PRESENCE_ENABLED', kind: 'bool', default: 'true', description: 'Redis engine: lease each topic a stream reads too (one sorted-set member per topic per stream, renewed with the stream\'s lease), so `GET /control/presence?channel=topic:...` can answer. Off: presence answers for users and user channels only, and each connect and renewal writes one key per stream instead of one per channel.' },
  { env: 'LOG_LEVEL', kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'pino log level.' },
  { env: 'DEMO_ENABLED', kind: 'bool', description: 'Serve the demo page (`/demo`, and `/` redirects to it) and the browser client (`/client/sse-client.js`); with no JWT key set, also development tokens (`/demo/token`) signed with a random per-process secret. Default: on when `REDIS_URL` is unset, off otherwise.' },
] as const satisfies readonly SettingSpec[]

export type SettingName = (typeof SETTINGS)[number]['env']

/** One configured key, in the order keys are tried. */
export interface StaticKey extends KeyMaterial {
  /** Where it was configured ("JWT_PUBLIC_KEY key 2 of 3"), for messages: never its value. */
  readonly from: string
}

/** One issuer whose keys are fetched from its JWKS URL. */
export interface JwksBinding {
  readonly issuer: string
  readonly url: string
}

/** How fetched key sets are cached and fetched (JWT_JWKS_*). */
export interface JwksFetchSettings {
  readonly minTtlMs: number
  readonly maxTtlMs: number
  readonly cooldownMs: number
  readonly timeoutMs: number
  readonly maxBytes: number
}

export interface JwtSettings {
  /**
   * The keys from JWT_SECRET, JWT_PUBLIC_KEY and JWT_JWKS_FILE, in that
   * order, each with the algorithms it may verify (its type's, narrowed by
   * its JWK `alg` and by JWT_ALGORITHMS). Empty when only JWKS URLs are set.
   */
  readonly keys: readonly StaticKey[]
  /** Issuers whose keys come from a JWKS URL (JWT_JWKS_URL); an issuer not here is verified with `keys`. */
  readonly jwks: readonly JwksBinding[]
  readonly jwksFetch: JwksFetchSettings
  /** Every `alg` any key may verify: a token's `alg` must be one of these. */
  readonly algorithms: readonly string[]
  readonly audience: readonly string[]
  readonly issuer: readonly string[]
  readonly clockToleranceMs: number
  /** The claim naming the user (JWT_USER_CLAIM). */
  readonly userClaim: string
}

/**
 * How every connection to Redis authenticates and encrypts, whatever the
 * deployment (standalone, Sentinel, Cluster): files already read, checked,
 * and never logged. Built from the settings in one place ({@link redisAccessFrom});
 * connection factories turn it into client options.
 */
export interface RedisAccess {
  /** ACL user; undefined: the `default` user (or the one in REDIS_URL). */
  readonly username?: string
  /** Password (a secret); undefined: none, or the one in REDIS_URL. */
  readonly password?: string
  /** Set for `rediss://`: what the TLS handshake needs beyond the system's CAs. */
  readonly tls?: RedisTls
}

/** PEM texts for the TLS handshake with Redis. */
export interface RedisTls {
  /** CA certificate(s) the server's certificate must chain to; undefined: the system's CAs. */
  readonly ca?: string
  /** Client certificate and its key, for mutual TLS (both or neither). */
  readonly cert?: string
  readonly key?: string
  /** The host name the servers' certificates are checked against (and SNI); undefined: the host connected to. */
  readonly servername?: string
}

/** Fields made from several settings (each such setting names its field in `partOf`). */
interface CompositeFields {
  /** Undefined when neither a secret nor a public key is set: only public topics can be read. */
  readonly jwt: JwtSettings | undefined
  /** Credentials and TLS for Redis (empty when none are set). */
  readonly redisAccess: RedisAccess
  /** The public listener's certificate and key, read and checked; undefined: plain HTTP. */
  readonly listenerTls: ListenerTls | undefined
}

/** Fields whose value is more than their setting's parsed text; loadConfig computes each. */
interface DerivedFields extends CompositeFields {
  /** Fastify's `trustProxy`: false, true (every hop), or the proxies' addresses and CIDRs. */
  readonly trustProxy: boolean | readonly string[]
  /** Serve `/demo`, `/demo/token` (when no JWT key is set) and `/client/sse-client.js`; by default on when REDIS_URL is unset. */
  readonly demoEnabled: boolean
}

type Setting = (typeof SETTINGS)[number]

/** `READER_BLOCK_MS` -> `readerBlockMs` (what {@link camelCase} does at run time). */
type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Lowercase<Head>}${Capitalize<CamelCase<Tail>>}` : Lowercase<S>

type FieldName<S extends Setting> = S extends { readonly field: infer F extends string } ? F : CamelCase<S['env']>

/** The parsed value of a setting; `proxies` is still text here (DerivedFields has its Config type). */
type KindValue<S extends Setting> =
  S extends { readonly kind: 'int' } ? number
    : S extends { readonly kind: 'bool' } ? boolean
      : S extends { readonly kind: 'list' } ? readonly string[]
        : S extends { readonly kind: 'enum', readonly values: ReadonlyArray<infer V> } ? V
          : string

/** Undefined when the variable is unset and the schema gives no default (a list is empty instead). */
type SettingValue<S extends Setting> = S extends { readonly kind: 'list' } | { readonly default: string } ? KindValue<S> : KindValue<S> | undefined

/** Every parsed setting, by variable name. */
type ParsedSettings = { readonly [S in Setting as S['env']]: SettingValue<S> }

/** One field per setting that is not part of a composite field. */
type SettingFields = { readonly [S in Exclude<Setting, { readonly partOf: string } | { readonly fileOf: string }> as FieldName<S>]: SettingValue<S> }

/**
 * The validated, frozen settings: one field per entry of {@link SETTINGS}
 * (its description is the field's documentation), with the composite and
 * derived fields in their computed types.
 */
export interface Config extends Omit<SettingFields, keyof DerivedFields>, DerivedFields {}

type Raw = Record<string, string | undefined>

/** What loadConfig reads besides `env`: the files some settings name. */
export interface ConfigIo {
  /** Reads a file as UTF-8; default readFileSync. */
  readonly readFile?: (path: string) => string
}

/** `READER_BLOCK_MS` -> `readerBlockMs` (what {@link CamelCase} does to types). */
function camelCase (env: string): string {
  return env.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

function parseField (spec: SettingSpec, raw: string | undefined): string | number | boolean | string[] | undefined {
  const value = raw === undefined || raw.trim() === '' ? spec.default : raw.trim()
  if (value === undefined) return spec.kind === 'list' ? [] : undefined
  switch (spec.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(value)) throw new ConfigError(`${spec.env} must be a whole number, got "${value}"`)
      const n = Number(value)
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        throw new ConfigError(`${spec.env} must be between ${spec.min ?? '-inf'} and ${spec.max ?? 'inf'}, got ${n}`)
      }
      return n
    }
    case 'bool':
      if (/^(1|true|yes|on)$/i.test(value)) return true
      if (/^(0|false|no|off)$/i.test(value)) return false
      throw new ConfigError(`${spec.env} must be true or false, got "${value}"`)
    case 'list':
      return value.split(',').map(s => s.trim()).filter(s => s.length > 0)
    case 'enum':
      if (spec.values?.includes(value) !== true) throw new ConfigError(`${spec.env} must be one of ${spec.values?.join(', ')}, got "${value}"`)
      return value
    default:
      return value
  }
}

/**
 * Reads and validates the settings. Throws {@link ConfigError} naming the first
 * bad variable. `env` is the only input: no module reads `process.env` but the
 * entry point.
 */
export function loadConfig (env: Raw, io: ConfigIo = {}): Config {
  env = withSecretFiles(env, io)
  // Every setting is parsed (kind, bounds, choices) before any rule below runs,
  // in schema order, so the first bad variable is the one named.
  const parsed: Record<string, unknown> = {}
  for (const spec of SETTINGS as readonly SettingSpec[]) parsed[spec.env] = parseField(spec, env[spec.env])
  const v = parsed as ParsedSettings

  // Rules beyond a setting's kind, one message each.
  for (const p of v.PUBLIC_TOPICS) {
    if (p !== '*' && !isValidTopicName(p.replaceAll('*', 'x'))) {
      throw new ConfigError(`PUBLIC_TOPICS has "${p}", which is not a topic name or pattern (letters, digits, . _ - : @ / and *)`)
    }
  }
  const cors = v.CORS_ORIGINS
  if (cors.includes('*') && cors.length > 1) throw new ConfigError('CORS_ORIGINS is either * alone or a list of exact origins, not both')
  for (const o of cors) {
    if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o)) throw new ConfigError(`CORS_ORIGINS has "${o}": give origins as scheme://host[:port], with no path`)
  }
  if (/[\s]/.test(v.KEY_PREFIX)) throw new ConfigError('KEY_PREFIX must not contain white space')
  if (v.CONTROL_TOKEN !== undefined && v.CONTROL_TOKEN.length < 32) throw new ConfigError(`${sourceName(env, 'CONTROL_TOKEN')} must hold at least 32 characters (generate one with \`openssl rand -hex 32\`)`)
  // Identity providers often namespace custom claims as URLs (https://example.com/topics).
  if (!/^[\x21-\x7e]{1,256}$/.test(v.JWT_TOPICS_CLAIM)) throw new ConfigError(`JWT_TOPICS_CLAIM must be a claim name (printable ASCII, no spaces), got "${v.JWT_TOPICS_CLAIM}"`)
  if (!/^[\x21-\x7e]{1,256}$/.test(v.JWT_PUBLISH_CLAIM)) throw new ConfigError(`JWT_PUBLISH_CLAIM must be a claim name (printable ASCII, no spaces), got "${v.JWT_PUBLISH_CLAIM}"`)
  if (v.JWT_PUBLISH_CLAIM === v.JWT_TOPICS_CLAIM) throw new ConfigError('JWT_PUBLISH_CLAIM and JWT_TOPICS_CLAIM must name different claims: reading and publishing are granted separately')
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v.TOKEN_COOKIE)) throw new ConfigError(`TOKEN_COOKIE must be a cookie name, got "${v.TOKEN_COOKIE}"`)
  if (v.REDIS_URL !== undefined) checkRedisUrl(v.REDIS_URL)
  if (v.REDIS_CLUSTER_NODES.length > 0) {
    if (v.REDIS_URL !== undefined) throw new ConfigError('set REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster), not both')
    nodesScheme('REDIS_CLUSTER_NODES', v.REDIS_CLUSTER_NODES)
  }
  if (v.REDIS_SENTINELS.length > 0 && v.REDIS_CLUSTER_NODES.length > 0) throw new ConfigError('set REDIS_CLUSTER_NODES (a Redis Cluster) or REDIS_SENTINELS (a Sentinel-managed Redis), not both')
  checkSentinel(v.REDIS_SENTINELS, v.REDIS_SENTINEL_MASTER, v.REDIS_SENTINEL_USERNAME, v.REDIS_SENTINEL_PASSWORD, v.REDIS_URL)

  // The derived fields, in this order (it decides which error comes first).
  const derived: DerivedFields = {
    // The key settings are read raw from env (jwtSettings trims them; a PEM keeps its newlines).
    jwt: jwtSettings(env, v, io),
    // A cluster's nodes take the same user and password as one Redis (no
    // URL to carry them), and TLS when the seeds are rediss://. Sentinel's
    // data nodes take REDIS_URL's credentials (its host is the master name)
    // or, without it, the variables'; TLS as sentinelTls says.
    redisAccess: redisAccessFrom(env, v.REDIS_CLUSTER_NODES.length > 0
      ? clusterAccessTarget(v.REDIS_CLUSTER_NODES)
      : v.REDIS_SENTINELS.length > 0 ? sentinelAccessTarget(v.REDIS_SENTINELS, v.REDIS_URL) : v.REDIS_URL, io),
    trustProxy: parseTrustProxy(v.TRUST_PROXY),
    listenerTls: listenerTlsFrom(env, v.HTTP2_CLEARTEXT, io),
    demoEnabled: v.DEMO_ENABLED ?? (v.REDIS_URL === undefined && v.REDIS_CLUSTER_NODES.length === 0 && v.REDIS_SENTINELS.length === 0),
  }

  const fields: Record<string, unknown> = {}
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    if (spec.partOf !== undefined || spec.fileOf !== undefined) continue
    const value = parsed[spec.env]
    fields[spec.field ?? camelCase(spec.env)] = Array.isArray(value) ? Object.freeze(value) : value
  }
  return Object.freeze({ ...fields, ...derived }) as unknown as Config
}

/**
 * TLS_CERT_FILE and TLS_KEY_FILE go together, and not with HTTP2_CLEARTEXT
 * (cleartext HTTP/2 beside a certificate would leave a reader guessing
 * which one the listener speaks). The files are read and checked here so a
 * wrong path stops the start; the listener watches them afterwards.
 */
function listenerTlsFrom (env: Raw, cleartext: boolean, io: ConfigIo): ListenerTls | undefined {
  const certFile = env.TLS_CERT_FILE?.trim() ?? ''
  const keyFile = env.TLS_KEY_FILE?.trim() ?? ''
  if (certFile === '' && keyFile === '') return undefined
  if (certFile === '' || keyFile === '') {
    const [set, unset] = certFile === '' ? ['TLS_KEY_FILE', 'TLS_CERT_FILE'] : ['TLS_CERT_FILE', 'TLS_KEY_FILE']
    throw new ConfigError(`${set} is set without ${unset}: the listener's certificate needs its key (set both, or neither for plain HTTP)`)
  }
  if (cleartext) {
    throw new ConfigError('HTTP2_CLEARTEXT=true is set with TLS_CERT_FILE and TLS_KEY_FILE: over TLS the listener already speaks HTTP/2 (and HTTP/1.1) by ALPN; unset HTTP2_CLEARTEXT, or the TLS files for cleartext HTTP/2 behind a mesh')
  }
  return readListenerTls(certFile, keyFile, io.readFile ?? ((path: string) => readFileSync(path, 'utf8')))
}

const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/**
 * TRUST_PROXY: false | true | addresses and CIDRs (see SETTINGS). No hop
 * count: it cannot tell a proxy from a client that connects directly and
 * writes its own X-Forwarded-For (Fastify treats one as trusting nothing).
 */
function parseTrustProxy (text: string): boolean | readonly string[] {
  if (/^(false|no|off|0)$/i.test(text)) return false
  if (/^(true|yes|on)$/i.test(text)) return true
  if (/^\d+$/.test(text)) {
    throw new ConfigError(`TRUST_PROXY=${text} looks like a hop count; give the proxies' addresses or CIDRs instead (127.0.0.1, 10.0.0.0/8, loopback): a hop count cannot tell a proxy from a client that connects directly`)
  }
  const entries = text.split(',').map(e => e.trim()).filter(e => e.length > 0)
  for (const e of entries) {
    if (PROXY_RANGES.has(e)) continue
    const [address, bits, extra] = e.split('/')
    const family = isIP(address ?? '')
    const maxBits = family === 4 ? 32 : 128
    if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= maxBits))) {
      throw new ConfigError(`TRUST_PROXY has "${e}", which is not an address, a CIDR (10.0.0.0/8) or loopback, linklocal, uniquelocal: give false, or the addresses of the proxies in front`)
    }
  }
  return Object.freeze(entries)
}

const REDIS_SCHEMES = ['redis:', 'rediss:', 'unix:']

/**
 * REDIS_URL is one standalone Redis. The value is a secret (it may hold a
 * password): messages name its scheme at most, never the value.
 */
function checkRedisUrl (text: string): void {
  const forms = 'redis://[user:password@]host:port[/db], rediss://... for TLS, or unix:///path/to/redis.sock'
  if (/[,\s]/.test(text)) throw new ConfigError(`REDIS_URL takes one URL, not a list: give one standalone Redis as ${forms} (for a Redis Cluster list its seed nodes in REDIS_CLUSTER_NODES; for Sentinel, the Sentinels in REDIS_SENTINELS)`)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError(`REDIS_URL is not a URL: give it as ${forms}`)
  }
  if (!REDIS_SCHEMES.includes(url.protocol)) {
    const scheme = /^[a-z][a-z0-9+.-]{0,30}:$/i.test(url.protocol) ? `"${url.protocol}//"` : 'an unknown scheme'
    throw new ConfigError(`REDIS_URL has the scheme ${scheme}; use ${forms} (a Redis Cluster goes in REDIS_CLUSTER_NODES, Sentinels in REDIS_SENTINELS)`)
  }
  if (url.protocol === 'unix:') {
    if (url.host !== '' || url.pathname.length <= 1) throw new ConfigError('REDIS_URL with unix:// needs an absolute socket path after it: unix:///path/to/redis.sock')
    return
  }
  if (url.hostname === '') throw new ConfigError(`REDIS_URL names no host: give it as ${forms}`)
  if (!/^\/?\d*$/.test(url.pathname)) throw new ConfigError('REDIS_URL has a path that is not a database number: end it with /0 to /15, or nothing')
}

const ACCESS_SETTINGS = ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_PASSWORD_FILE', 'REDIS_TLS_CA_FILE', 'REDIS_TLS_CERT_FILE', 'REDIS_TLS_KEY_FILE', 'REDIS_TLS_SERVERNAME'] as const
const TLS_SETTINGS = ['REDIS_TLS_CA_FILE', 'REDIS_TLS_CERT_FILE', 'REDIS_TLS_KEY_FILE', 'REDIS_TLS_SERVERNAME'] as const

/**
 * A list of node addresses (REDIS_CLUSTER_NODES, REDIS_SENTINELS): each
 * `host:port`, `redis://host:port` or `rediss://host:port`, all of one kind
 * as to TLS. Returns the scheme the entries give (`redis:` for bare
 * `host:port` beside `redis://` ones), or undefined when none does. An
 * entry with a user or password is refused without quoting it: credentials
 * have their own settings, which keep them out of messages and logs.
 */
export function nodesScheme (name: string, entries: readonly string[]): 'redis:' | 'rediss:' | undefined {
  let tls = 0
  let plain = 0
  for (const entry of entries) {
    const m = /^(?:(rediss?):\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:[\]/@]+):(\d{1,5})\/?$/.exec(entry)
    if (m === null || Number(m[3]) < 1 || Number(m[3]) > 65535) {
      if (entry.includes('@')) throw new ConfigError(`${name} has an entry with a user or password in it: give the addresses only, and the credentials in their own settings (README, "TLS and ACL")`)
      throw new ConfigError(`${name} has "${entry}", which is not host:port: give the addresses as host:port,host:port, or rediss://host:port,... for TLS (IPv6 as [::1]:6379)`)
    }
    if (m[1] === 'rediss') tls++
    else if (m[1] === 'redis') plain++
  }
  if (tls > 0 && tls < entries.length) throw new ConfigError(`${name} has rediss:// and plain entries: TLS is for all of them or none (write every one as rediss://host:port, or none)`)
  return tls > 0 ? 'rediss:' : plain > 0 ? 'redis:' : undefined
}

/**
 * Which connections of a Sentinel deployment speak TLS. A scheme given once
 * applies to both sides (`rediss://` on the Sentinels or in REDIS_URL: TLS
 * to the Sentinels and to the data nodes, as deployments run them); given
 * on both sides, each side follows its own (plain Sentinels in front of TLS
 * data nodes: `redis://host:port` Sentinels and a `rediss://` REDIS_URL).
 */
export function sentinelTls (sentinels: readonly string[], url: string | undefined): { readonly sentinels: boolean, readonly dataNodes: boolean } {
  const own = nodesScheme('REDIS_SENTINELS', sentinels)
  const data = url === undefined ? undefined : new URL(url).protocol === 'rediss:' ? 'rediss:' : 'redis:'
  return { sentinels: (own ?? data) === 'rediss:', dataNodes: (data ?? own) === 'rediss:' }
}

/**
 * What redisAccessFrom checks the access settings against: the URL whose
 * credentials count too (REDIS_URL), whether any connection speaks TLS (the
 * TLS files are read then only) and, for the message when TLS settings come
 * without TLS, what is not rediss:// and how to make it so.
 */
export interface AccessTarget {
  readonly url?: string
  readonly tls: boolean
  readonly notTls: string
}

/** The access target of a Redis Cluster's seed nodes (REDIS_CLUSTER_NODES, or the command line's --cluster). */
export function clusterAccessTarget (nodes: readonly string[]): AccessTarget {
  return {
    tls: nodesScheme('REDIS_CLUSTER_NODES', nodes) === 'rediss:',
    notTls: 'REDIS_CLUSTER_NODES are not rediss:// nodes: TLS to a Redis Cluster needs its seed nodes as rediss://host:port,rediss://host:port',
  }
}

/** The access target of a Sentinel deployment (REDIS_SENTINELS, with REDIS_URL or not); see {@link sentinelTls}. */
export function sentinelAccessTarget (sentinels: readonly string[], url: string | undefined): AccessTarget {
  const tls = sentinelTls(sentinels, url)
  return {
    ...(url !== undefined ? { url } : {}),
    tls: tls.sentinels || tls.dataNodes,
    notTls: 'neither REDIS_SENTINELS nor REDIS_URL is rediss://: TLS needs the Sentinels as rediss://host:port or REDIS_URL as rediss://<master name> (either one means TLS to both)',
  }
}

/** The access target of one Redis at `url` (REDIS_URL, or the command line's --redis). */
function urlAccessTarget (url: string): AccessTarget {
  return {
    url,
    tls: url.startsWith('rediss:'),
    notTls: 'REDIS_URL is not a rediss:// URL: TLS to Redis needs rediss://host:port',
  }
}

const SERVERNAME = /^(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/

/**
 * The credentials and TLS material for Redis at `where` (a URL: REDIS_URL
 * or the command line's --redis; or the target of a cluster or of
 * Sentinels, see {@link AccessTarget}), from the REDIS_USERNAME,
 * REDIS_PASSWORD(_FILE) and REDIS_TLS_* variables of `env`. The same
 * material serves every connection that speaks TLS (each node of a cluster,
 * the Sentinels and their data nodes). The files are read and checked here,
 * so a wrong path or a file that is not PEM stops the start with the
 * variable's name. A credential is given in one place: in the URL or in the
 * variables, never both (which would win is a guess a reader of the
 * deployment should not have to make). Messages never hold a password or a
 * key, only variable names and file paths.
 */
export function redisAccessFrom (env: Raw, where: string | AccessTarget | undefined, io: ConfigIo = {}): RedisAccess {
  const value = (name: typeof ACCESS_SETTINGS[number]): string | undefined => {
    const text = env[name]?.trim()
    return text === undefined || text === '' ? undefined : text
  }
  const target = typeof where === 'string' ? urlAccessTarget(where) : where
  const url = target?.url
  const set = ACCESS_SETTINGS.filter(name => value(name) !== undefined)
  if (set.length === 0 && target?.tls !== true) return Object.freeze({})
  if (target === undefined) throw new ConfigError(`${set.join(', ')} ${set.length > 1 ? 'are' : 'is'} set but none of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS is: they are for the connection to Redis`)
  const read = io.readFile ?? ((path: string) => readFileSync(path, 'utf8'))
  const readSetting = (name: string, path: string, what: string): string => {
    let text: string
    try {
      text = read(path)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? 'error'})`
      throw new ConfigError(`${name} names ${path}, which ${why}: give the path of ${what}`)
    }
    return text
  }
  let parsed: URL | undefined
  try { parsed = url === undefined ? undefined : new URL(url) } catch { parsed = undefined }
  const tlsSet = TLS_SETTINGS.filter(name => value(name) !== undefined)
  if (tlsSet.length > 0 && !target.tls) throw new ConfigError(`${tlsSet.join(', ')} ${tlsSet.length > 1 ? 'are' : 'is'} set but ${target.notTls}`)
  const inUrlUser = parsed !== undefined && parsed.username !== ''
  const inUrlPassword = parsed !== undefined && parsed.password !== ''
  const username = value('REDIS_USERNAME')
  const password = value('REDIS_PASSWORD')
  const passwordFile = value('REDIS_PASSWORD_FILE')
  if (username !== undefined && inUrlUser) throw new ConfigError('REDIS_USERNAME is set and REDIS_URL names a user too: give the user in one place')
  if (password !== undefined && passwordFile !== undefined) throw new ConfigError('REDIS_PASSWORD and REDIS_PASSWORD_FILE are both set: give one')
  if ((password !== undefined || passwordFile !== undefined) && inUrlPassword) {
    throw new ConfigError(`${password !== undefined ? 'REDIS_PASSWORD' : 'REDIS_PASSWORD_FILE'} is set and REDIS_URL holds a password too: give the password in one place`)
  }
  let secret = password
  if (passwordFile !== undefined) {
    // A mounted Secret often ends with a newline that is not part of the password.
    secret = readSetting('REDIS_PASSWORD_FILE', passwordFile, 'a file holding the password').replace(/\r?\n$/, '')
    if (secret === '') throw new ConfigError(`REDIS_PASSWORD_FILE names ${passwordFile}, which is empty: it must hold the password`)
  }
  if (username !== undefined && secret === undefined && !inUrlPassword) {
    throw new ConfigError('REDIS_USERNAME is set but no password is (REDIS_PASSWORD, REDIS_PASSWORD_FILE or in REDIS_URL): Redis authenticates a user with its password')
  }
  let tls: RedisTls | undefined
  if (target.tls) {
    const servername = value('REDIS_TLS_SERVERNAME')
    if (servername !== undefined && (isIP(servername.replace(/^\[|\]$/g, '')) !== 0 || !SERVERNAME.test(servername))) {
      throw new ConfigError(`REDIS_TLS_SERVERNAME is "${servername}", which is not a host name: give the DNS name the Redis servers' certificates hold (an IP address is what connecting by that address checks already)`)
    }
    const caFile = value('REDIS_TLS_CA_FILE')
    const certFile = value('REDIS_TLS_CERT_FILE')
    const keyFile = value('REDIS_TLS_KEY_FILE')
    if ((certFile === undefined) !== (keyFile === undefined)) {
      throw new ConfigError(`${certFile === undefined ? 'REDIS_TLS_KEY_FILE' : 'REDIS_TLS_CERT_FILE'} is set without ${certFile === undefined ? 'REDIS_TLS_CERT_FILE' : 'REDIS_TLS_KEY_FILE'}: a client certificate needs its key (set both, or neither)`)
    }
    const certificates = (name: string, path: string): string => {
      const pem = readSetting(name, path, 'a PEM certificate file')
      if (!/-----BEGIN CERTIFICATE-----/.test(pem)) throw new ConfigError(`${name} names ${path}, which holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`)
      try {
        // eslint-disable-next-line no-new
        new X509Certificate(pem)
      } catch {
        throw new ConfigError(`${name} names ${path}, whose certificate cannot be read: give a PEM certificate file`)
      }
      return pem
    }
    const ca = caFile === undefined ? undefined : certificates('REDIS_TLS_CA_FILE', caFile)
    let cert: string | undefined
    let key: string | undefined
    if (certFile !== undefined && keyFile !== undefined) {
      cert = certificates('REDIS_TLS_CERT_FILE', certFile)
      key = readSetting('REDIS_TLS_KEY_FILE', keyFile, 'the PEM private key of REDIS_TLS_CERT_FILE')
      let keyObject: KeyObject
      try {
        keyObject = createPrivateKey(key)
      } catch {
        throw new ConfigError(`REDIS_TLS_KEY_FILE names ${keyFile}, which holds no readable PEM private key (an encrypted key is not supported: decrypt it with \`openssl pkey\`)`)
      }
      if (!new X509Certificate(cert).checkPrivateKey(keyObject)) {
        throw new ConfigError(`REDIS_TLS_KEY_FILE names ${keyFile}, which is not the key of the certificate in REDIS_TLS_CERT_FILE (${certFile})`)
      }
    }
    tls = Object.freeze({ ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert, key } : {}), ...(servername !== undefined ? { servername } : {}) })
  }
  return Object.freeze({
    ...(username !== undefined ? { username } : {}),
    ...(secret !== undefined ? { password: secret } : {}),
    ...(tls !== undefined ? { tls } : {}),
  })
}

/**
 * The Sentinel settings go together: Sentinels need the master's name and
 * the name needs Sentinels. REDIS_URL beside them gives the data nodes'
 * credentials, db and TLS only, so its host must be the master name (a
 * host:port there would look used and be ignored). Secrets are never quoted.
 */
function checkSentinel (sentinels: readonly string[], master: string | undefined, username: string | undefined, password: string | undefined, redisUrl: string | undefined): void {
  if (sentinels.length === 0) {
    if (master !== undefined) throw new ConfigError('REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not: list the Sentinels as host:port,host:port')
    if (username !== undefined || password !== undefined) throw new ConfigError(`${username !== undefined ? 'REDIS_SENTINEL_USERNAME' : 'REDIS_SENTINEL_PASSWORD'} is set but REDIS_SENTINELS is not: list the Sentinels as host:port,host:port`)
    return
  }
  nodesScheme('REDIS_SENTINELS', sentinels)
  if (master === undefined) throw new ConfigError('REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: give the master name the Sentinels monitor (sentinel monitor <name> ...)')
  if (/[\s,]/.test(master)) throw new ConfigError('REDIS_SENTINEL_MASTER must be one master name, with no spaces or commas')
  if (redisUrl === undefined) return
  const url = new URL(redisUrl)
  if (url.protocol === 'unix:') throw new ConfigError('REDIS_URL is a unix socket, which Sentinel cannot hand out: with REDIS_SENTINELS, give REDIS_URL as redis://[user:password@]<master name>[/db] (or rediss://), or leave it unset')
  if (url.hostname.toLowerCase() !== master.toLowerCase() || url.port !== '') {
    throw new ConfigError(`with REDIS_SENTINELS, REDIS_URL only carries the data nodes' credentials, db and TLS: give its host as the master name and no port (redis://[user:password@]${master}[/db]); the Sentinels say where the master is`)
  }
}

/** A file a setting names, as text; a path that cannot be read stops the start with the setting's name. */
function readNamedFile (io: ConfigIo, name: string, path: string, what: string): string {
  const read = io.readFile ?? ((p: string) => readFileSync(p, 'utf8'))
  try {
    return read(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? 'error'})`
    throw new ConfigError(`${name} names ${path}, which ${why}: give the path of ${what}`)
  }
}

/**
 * `env` with each `<NAME>_FILE` setting (see `fileOf`) read into `<NAME>`:
 * a mounted Secret often ends with a newline that is not part of the value,
 * so one is stripped. Giving both is refused (which would win is a guess a
 * reader of the deployment should not have to make). Messages name the
 * variable and the path, never the file's text.
 */
function withSecretFiles (env: Raw, io: ConfigIo): Raw {
  let out = env
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    if (spec.fileOf === undefined) continue
    const path = env[spec.env]?.trim()
    if (path === undefined || path === '') continue
    const direct = env[spec.fileOf]?.trim()
    if (direct !== undefined && direct !== '') throw new ConfigError(`${spec.fileOf} and ${spec.env} are both set: give one`)
    const text = readNamedFile(io, spec.env, path, `a file holding ${spec.fileOf}`).replace(/\r?\n$/, '')
    if (text.trim() === '') throw new ConfigError(`${spec.env} names ${path}, which is empty: it must hold ${spec.fileOf}`)
    out = { ...out, [spec.fileOf]: text }
  }
  return out
}

/** How a message names a secret setting: by the file it came from, when it did. */
function sourceName (env: Raw, name: string): string {
  const file = env[`${name}_FILE`]?.trim()
  return file === undefined || file === '' ? name : `${name} (from ${name}_FILE ${file})`
}

/** JWT_SECRET: one secret, or several one per line. Messages never hold a secret. */
function secretKeys (env: Raw): StaticKey[] {
  const lines = (env.JWT_SECRET ?? '').split(/\r?\n/).map(l => l.trim()).filter(l => l.length > 0)
  const name = sourceName(env, 'JWT_SECRET')
  return lines.map((secret, i) => {
    const which = lines.length > 1 ? `${name} line ${i + 1}` : name
    if (secret.length < 32) throw new ConfigError(`${which} must be at least 32 characters (HS256 needs a 256-bit key); generate one with \`openssl rand -hex 32\``)
    return { key: secret, kind: 'secret', algorithms: HMAC_ALGORITHMS, from: which }
  })
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g

/**
 * JWT_PUBLIC_KEY: one PEM public key or several one after the other (a
 * bundle). Each block is a key of its own: a bundle read as one key would
 * silently use its first key only.
 */
function publicKeys (env: Raw): StaticKey[] {
  const text = env.JWT_PUBLIC_KEY?.trim()
  if (text === undefined || text === '') return []
  const name = sourceName(env, 'JWT_PUBLIC_KEY')
  const pem = text.replace(/\\n/g, '\n')
  const blocks = [...pem.matchAll(PEM_BLOCK)]
  if (blocks.length === 0) throw new ConfigError(`${name} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)`)
  if (pem.replace(PEM_BLOCK, '').trim() !== '') throw new ConfigError(`${name} has text outside its PEM blocks: give PEM public keys only, one after the other`)
  return blocks.map((m, i) => {
    const which = blocks.length > 1 ? `${name} key ${i + 1} of ${blocks.length}` : name
    const block = m[0]
    // createPublicKey derives the public half of a private key; the verifier refuses one.
    if (/PRIVATE KEY/.test(m[1] ?? '')) throw new ConfigError(`${which} holds a private key: give its public key (\`openssl pkey -pubout\`)`)
    let key: KeyObject
    try {
      key = createPublicKey(block)
    } catch {
      throw new ConfigError(`${which} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)`)
    }
    const algorithms = publicKeyAlgorithms(key)
    if (algorithms.length === 0) throw new ConfigError(`${which} is a ${keyTypeName(key)} key; use RSA, EC (P-256/384/521) or Ed25519`)
    return { key: block, kind: 'public-key', algorithms, from: which, type: keyTypeName(key) }
  })
}

/** JWT_JWKS_FILE: a local key set, checked key by key (a local file has no excuse for a key the gateway cannot use). */
function jwksFileKeys (path: string | undefined, io: ConfigIo): StaticKey[] {
  if (path === undefined) return []
  const text = readNamedFile(io, 'JWT_JWKS_FILE', path, 'a JWKS file ({"keys":[...]})')
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ConfigError(`JWT_JWKS_FILE names ${path}, which is not JSON: give a JWKS file ({"keys":[...]})`)
  }
  const list = (parsed as { keys?: unknown } | null)?.keys
  if (!Array.isArray(list) || list.length === 0) throw new ConfigError(`JWT_JWKS_FILE names ${path}, which has no "keys" array of keys: give a JWKS file ({"keys":[...]})`)
  const kids = new Set<string>()
  return list.map((jwk, i) => {
    const kid = (jwk as { kid?: unknown } | null)?.kid
    const label = typeof kid === 'string' ? `"${kid.slice(0, 64)}"` : `${i + 1}`
    const material = jwkMaterial(jwk, true)
    if (typeof material === 'string') throw new ConfigError(`JWT_JWKS_FILE (${path}) key ${label} ${material}`)
    if (material.kid !== undefined) {
      if (kids.has(material.kid)) throw new ConfigError(`JWT_JWKS_FILE (${path}) has two keys with kid ${label}: each kid names one key`)
      kids.add(material.kid)
    }
    return { ...material, from: `JWT_JWKS_FILE key ${label}` }
  })
}

/**
 * JWT_JWKS_URL against JWT_ISSUER: every issuer is bound to one key
 * source, checked here so that a token's issuer decides, before anything
 * is fetched, which keys may verify it. One URL serves every issuer of
 * JWT_ISSUER (providers with several issuer forms share one set); several
 * are `issuer=url` pairs. An issuer with no URL is verified with the
 * static keys, and must have some.
 */
function jwksBindings (urls: readonly string[], issuers: readonly string[], hasStatic: boolean): JwksBinding[] {
  if (urls.length === 0) return []
  if (issuers.length === 0) throw new ConfigError('JWT_JWKS_URL needs JWT_ISSUER: the issuers whose tokens its keys verify (a token\'s `iss` is checked against it before any key is fetched)')
  const checkUrl = (url: string): string => {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new ConfigError(`JWT_JWKS_URL has "${url}", which is not a URL: give https://host/path/to/jwks.json`)
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new ConfigError(`JWT_JWKS_URL has "${url}": key sets are fetched over https:// (or http:// inside a trusted network)`)
    // A key set is public; a URL with a password would be logged with every outage.
    if (parsed.username !== '' || parsed.password !== '') throw new ConfigError('JWT_JWKS_URL has a URL with user:password@ in it: key sets are public, give the URL without credentials')
    return url
  }
  const pairs = urls.map(entry => /^(\S+?)=(https?:\/\/\S+)$/.exec(entry))
  if (pairs.every(p => p === null)) {
    if (urls.length > 1) throw new ConfigError('JWT_JWKS_URL has several URLs: give each as issuer=url, so that each issuer\'s tokens are checked with its own keys only')
    if (hasStatic) throw new ConfigError('JWT_JWKS_URL is one URL for every issuer of JWT_ISSUER, so the static keys (JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_FILE) would verify no token: bind the URL to its issuer (issuer=url), and the static keys verify the other issuers\' tokens')
    const url = checkUrl(urls[0] as string)
    return issuers.map(issuer => ({ issuer, url }))
  }
  if (pairs.some(p => p === null)) throw new ConfigError('JWT_JWKS_URL mixes plain URLs and issuer=url pairs: give every URL as issuer=url')
  const bound = new Map<string, string>()
  for (const p of pairs) {
    const issuer = (p as RegExpExecArray)[1] as string
    const url = (p as RegExpExecArray)[2] as string
    if (!issuers.includes(issuer)) throw new ConfigError(`JWT_JWKS_URL binds the issuer "${issuer}", which is not in JWT_ISSUER: add it there (issuers are matched exactly)`)
    if (bound.has(issuer)) throw new ConfigError(`JWT_JWKS_URL binds the issuer "${issuer}" twice: give one URL per issuer`)
    bound.set(issuer, checkUrl(url))
  }
  const unbound = issuers.filter(i => !bound.has(i))
  if (unbound.length > 0 && !hasStatic) throw new ConfigError(`JWT_ISSUER has "${unbound[0] ?? ''}", but no key verifies its tokens: bind it in JWT_JWKS_URL (issuer=url), or set a static key (JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_FILE)`)
  return [...bound].map(([issuer, url]) => ({ issuer, url }))
}

/**
 * The token keys, from every JWT_* setting: the static keys in the order
 * they are tried, the issuers bound to JWKS URLs, and what each key may
 * verify. Undefined when no key is set (only public topics can be read).
 */
function jwtSettings (env: Raw, v: ParsedSettings, io: ConfigIo): JwtSettings | undefined {
  const algorithms = v.JWT_ALGORITHMS
  for (const a of algorithms) {
    if (!ALL_ALGORITHMS.has(a)) throw new ConfigError(`JWT_ALGORITHMS has "${a}"; allowed: ${[...ALL_ALGORITHMS].join(', ')} ("none" never is)`)
  }
  const found: Array<StaticKey & { type?: string }> = [...secretKeys(env), ...publicKeys(env), ...jwksFileKeys(v.JWT_JWKS_FILE, io)]
  const jwks = jwksBindings(v.JWT_JWKS_URL, v.JWT_ISSUER, found.length > 0)
  if (found.length === 0 && jwks.length === 0) {
    if (algorithms.length > 0) throw new ConfigError('JWT_ALGORITHMS is set but no key is (JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_FILE or JWT_JWKS_URL)')
    return undefined
  }
  // What the keys can verify: a remote set's keys are public keys, never HMAC secrets.
  const offered = new Set([...found.flatMap(k => k.algorithms), ...(jwks.length > 0 ? ASYMMETRIC_ALGORITHMS : [])])
  const algs = algorithms.length > 0 ? algorithms : [...ALL_ALGORITHMS].filter(a => offered.has(a))
  const bad = algs.filter(a => !offered.has(a))
  if (bad.length > 0) {
    const only = found.length === 1 && jwks.length === 0 ? found[0] : undefined
    const what = found.every(k => k.kind === 'secret') && jwks.length === 0
      ? 'a JWT_SECRET'
      : only?.type !== undefined ? `a ${only.type} key` : 'the configured keys'
    throw new ConfigError(`JWT_ALGORITHMS has ${bad.join(', ')}, which ${what} cannot verify; use ${[...offered].join(', ')}${jwks.length > 0 && bad.some(a => HMAC_ALGORITHMS.includes(a)) ? ' (HMAC needs JWT_SECRET: a JWKS URL serves public keys only)' : ''}`)
  }
  const keys = found.map(({ type: _type, ...k }) => {
    const allowed = k.algorithms.filter(a => algs.includes(a))
    if (allowed.length === 0) throw new ConfigError(`${k.from} verifies ${k.algorithms.join(', ')}, none of which JWT_ALGORITHMS allows: allow one, or remove the key`)
    return Object.freeze({ ...k, algorithms: Object.freeze(allowed) })
  })
  return Object.freeze({
    keys: Object.freeze(keys),
    jwks: Object.freeze(jwks.map(b => Object.freeze(b))),
    jwksFetch: Object.freeze({ minTtlMs: v.JWT_JWKS_MIN_TTL_MS, maxTtlMs: Math.max(v.JWT_JWKS_MIN_TTL_MS, v.JWT_JWKS_MAX_TTL_MS), cooldownMs: v.JWT_JWKS_COOLDOWN_MS, timeoutMs: v.JWT_JWKS_TIMEOUT_MS, maxBytes: v.JWT_JWKS_MAX_BYTES }),
    algorithms: Object.freeze(algs),
    audience: v.JWT_AUDIENCE,
    issuer: v.JWT_ISSUER,
    clockToleranceMs: v.JWT_CLOCK_TOLERANCE_MS,
    userClaim: v.JWT_USER_CLAIM,
  })
}

/** The README table of settings, generated from {@link SETTINGS}. */
export function settingsTable (): string {
  const rows = (SETTINGS as readonly SettingSpec[]).map(s => {
    const def = s.default === undefined ? '' : `\`${s.default}\``
    return `| \`${s.env}\` | ${def} | ${s.description} |`
  })
  return ['| Variable | Default | Meaning |', '|---|---|---|', ...rows].join('\n')
}
