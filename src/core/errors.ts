/**
 * Every error the gateway answers before a stream opens, with a stable code.
 * Codes are part of the public contract: clients and dashboards match on them.
 */
export interface ErrorSpec {
  readonly code: string
  readonly statusCode: number
}

export const Errors = {
  AUTH_MISSING_TOKEN: { code: 'SSEGW_ERR_AUTH_MISSING_TOKEN', statusCode: 401 },
  AUTH_INVALID_TOKEN: { code: 'SSEGW_ERR_AUTH_INVALID_TOKEN', statusCode: 401 },
  AUTH_EXPIRED_TOKEN: { code: 'SSEGW_ERR_AUTH_EXPIRED_TOKEN', statusCode: 401 },
  AUTH_NOT_CONFIGURED: { code: 'SSEGW_ERR_AUTH_NOT_CONFIGURED', statusCode: 401 },
  /** The token's `jti` was revoked, or it was issued before its user's cut-off (README "Control"). */
  AUTH_REVOKED_TOKEN: { code: 'SSEGW_ERR_AUTH_REVOKED_TOKEN', statusCode: 401 },
  /** With JWKS URLs: the token's `iss` is none of JWT_ISSUER (checked before any key is fetched). */
  AUTH_UNKNOWN_ISSUER: { code: 'SSEGW_ERR_AUTH_UNKNOWN_ISSUER', statusCode: 401 },
  /** The token's `kid` names no key of its issuer (after the one refetch a cooldown allows). */
  AUTH_UNKNOWN_KEY: { code: 'SSEGW_ERR_AUTH_UNKNOWN_KEY', statusCode: 401 },
  /** The issuer's key set has never been fetched and cannot be now: not the token's fault, so not a 401. */
  AUTH_KEYS_UNAVAILABLE: { code: 'SSEGW_ERR_AUTH_KEYS_UNAVAILABLE', statusCode: 503 },
  TOPIC_FORBIDDEN: { code: 'SSEGW_ERR_TOPIC_FORBIDDEN', statusCode: 403 },
  TOPIC_INVALID: { code: 'SSEGW_ERR_TOPIC_INVALID', statusCode: 400 },
  TOPIC_TOO_MANY: { code: 'SSEGW_ERR_TOPIC_TOO_MANY', statusCode: 400 },
  NO_CHANNELS: { code: 'SSEGW_ERR_NO_CHANNELS', statusCode: 400 },
  HISTORY_INVALID: { code: 'SSEGW_ERR_HISTORY_INVALID', statusCode: 400 },
  CHANNEL_OPTION_INVALID: { code: 'SSEGW_ERR_CHANNEL_OPTION_INVALID', statusCode: 400 },
  TOO_MANY_CONNECTIONS: { code: 'SSEGW_ERR_TOO_MANY_CONNECTIONS', statusCode: 429 },
  RATE_LIMITED: { code: 'SSEGW_ERR_RATE_LIMITED', statusCode: 429 },
  UNAVAILABLE: { code: 'SSEGW_ERR_UNAVAILABLE', statusCode: 503 },
  NOT_FOUND: { code: 'SSEGW_ERR_NOT_FOUND', statusCode: 404 },
  /** A request Node or Fastify could not take: malformed URL or request line, bad preflight, unreadable body. */
  BAD_REQUEST: { code: 'SSEGW_ERR_BAD_REQUEST', statusCode: 400 },
  REQUEST_TIMEOUT: { code: 'SSEGW_ERR_REQUEST_TIMEOUT', statusCode: 408 },
  HEADERS_TOO_LARGE: { code: 'SSEGW_ERR_HEADERS_TOO_LARGE', statusCode: 431 },
  INTERNAL: { code: 'SSEGW_ERR_INTERNAL', statusCode: 500 },
  /**
   * A request pipelined behind an answer that never finished (an open
   * stream) on the same connection, dropped when the connection closed.
   * Never answered: the code is the metric label and log field.
   */
  STREAM_PIPELINED: { code: 'SSEGW_ERR_STREAM_PIPELINED', statusCode: 400 },
  DEMO_REQUEST_INVALID: { code: 'SSEGW_ERR_DEMO_REQUEST_INVALID', statusCode: 400 },
  PUBLISH_FORBIDDEN: { code: 'SSEGW_ERR_PUBLISH_FORBIDDEN', statusCode: 403 },
  PUBLISH_CHANNEL_INVALID: { code: 'SSEGW_ERR_PUBLISH_CHANNEL_INVALID', statusCode: 400 },
  PUBLISH_EVENT_INVALID: { code: 'SSEGW_ERR_PUBLISH_EVENT_INVALID', statusCode: 400 },
  PUBLISH_DATA_INVALID: { code: 'SSEGW_ERR_PUBLISH_DATA_INVALID', statusCode: 400 },
  PUBLISH_BODY_INVALID: { code: 'SSEGW_ERR_PUBLISH_BODY_INVALID', statusCode: 400 },
  PUBLISH_OPTION_INVALID: { code: 'SSEGW_ERR_PUBLISH_OPTION_INVALID', statusCode: 400 },
  PUBLISH_NOT_JSON: { code: 'SSEGW_ERR_PUBLISH_NOT_JSON', statusCode: 415 },
  PUBLISH_TOO_LARGE: { code: 'SSEGW_ERR_PUBLISH_TOO_LARGE', statusCode: 413 },
  /** The control endpoints, without CONTROL_TOKEN set. */
  CONTROL_NOT_CONFIGURED: { code: 'SSEGW_ERR_CONTROL_NOT_CONFIGURED', statusCode: 403 },
  /** A control request without the right `Authorization: Bearer <CONTROL_TOKEN>`. */
  CONTROL_UNAUTHORIZED: { code: 'SSEGW_ERR_CONTROL_UNAUTHORIZED', statusCode: 401 },
  CONTROL_REQUEST_INVALID: { code: 'SSEGW_ERR_CONTROL_REQUEST_INVALID', statusCode: 400 },
  /** The control store (Redis) could not be reached: nothing was applied. */
  CONTROL_UNAVAILABLE: { code: 'SSEGW_ERR_CONTROL_UNAVAILABLE', statusCode: 503 },
} as const satisfies Record<string, ErrorSpec>

export type ErrorName = keyof typeof Errors

/** An HTTP-facing error: `code` and `message` are safe to show to a client. */
export class GatewayError extends Error {
  readonly code: string
  readonly statusCode: number

  constructor (spec: ErrorSpec, message: string) {
    super(message)
    this.name = 'GatewayError'
    this.code = spec.code
    this.statusCode = spec.statusCode
  }

  toJSON (): { error: string, message: string } {
    return { error: this.code, message: this.message }
  }
}

/**
 * Start-up error: the message names the variable and what to set. Bad
 * settings, and a listener that cannot bind (the port is a setting too).
 */
export class ConfigError extends Error {
  readonly code = 'SSEGW_ERR_CONFIG_INVALID'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ConfigError'
  }
}

/**
 * The `grant` field for a log line: the access rule a refused command
 * lacked, where the engine named one on its error (an ACL without XRANGE,
 * say); nothing otherwise.
 */
export function grantOf (err: unknown): { grant?: string } {
  const grant = (err as { grant?: unknown } | undefined)?.grant
  return typeof grant === 'string' ? { grant } : {}
}
