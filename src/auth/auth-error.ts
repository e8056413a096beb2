/**
 * The one error of authentication: a catalogue error (stable code and
 * status) with the reason that is also the `sse_gateway_auth_failures_total`
 * label. Its message says what to fix and never echoes the token.
 */
import { GatewayError, type ErrorSpec } from '../core/errors.js'
import type { AuthFailure } from '../core/protocol.js'

export class AuthError extends GatewayError {
  constructor (readonly reason: AuthFailure, spec: ErrorSpec, message: string) {
    super(spec, message)
  }
}
