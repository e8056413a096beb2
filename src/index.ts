/**
 * The package entry: the producer helper for services that write events,
 * and the gateway itself for programs that embed it.
 *
 *     import { publish } from 'sse-gateway'
 *     import { buildGateway, loadConfig } from 'sse-gateway'
 */
export {
  publish,
  DEFAULT_MAX_DATA_BYTES,
  DEFAULT_TOPIC_MAX_LEN,
  DEFAULT_USER_EXPIRE_SECONDS,
  DEFAULT_USER_MAX_LEN,
  type PublishOptions,
  type RedisLike,
} from './producer.js'
export { buildGateway, type Gateway, type GatewayDeps } from './app.js'
export { loadConfig, SETTINGS, type Config, type JwtSettings, type SettingName } from './core/config.js'
export { ConfigError, Errors, GatewayError, type ErrorName, type ErrorSpec } from './core/errors.js'
export { CONTROL_EVENT_PREFIX, isValidEventName } from './core/frame.js'
export { isValidSubject, isValidTopicName, type Channel, type ChannelKind } from './core/channels.js'
export { parseChannel, type AppendOptions } from './core/publish.js'
export type { StreamId } from './core/stream-id.js'
export type { EntriesListener, HistoryQueries, LiveFeed, RawEntry, ResetListener, SourceState, StreamSource } from './source/stream-source.js'
export type { Engine, EngineDeps, EngineHooks } from './source/engine.js'
export { createEngine } from './source/engines.js'
export { checkedClaims, type Claims, type TokenVerifier } from './auth/token-verifier.js'
export { AuthError } from './auth/auth-error.js'
export { StaticKeyVerifier } from './auth/static-key-verifier.js'
export { KeyVerifier, type KeyVerifierDeps } from './auth/key-verifier.js'
export type { JwksHooks } from './auth/jwks-key-set.js'
export { PublisherUnavailableError, type Publisher } from './source/publisher.js'
export { RedisPublisher, type RedisPublisherOptions } from './source/redis-publisher.js'
export { MemoryPublisher } from './source/memory-publisher.js'
export { MemorySource, type MemorySourceOptions } from './source/memory-source.js'
