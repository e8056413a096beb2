/**
 * The verifier of configured keys only (JWT_SECRET, JWT_PUBLIC_KEY,
 * JWT_JWKS_FILE): a {@link KeyVerifier} with no key set to fetch, so it
 * answers at once. Kept as its own name for embedders that build one.
 */
import type { JwtSettings } from '../core/config.js'
import { KeyVerifier } from './key-verifier.js'

export class StaticKeyVerifier extends KeyVerifier {
  constructor (jwt: JwtSettings) {
    if (jwt.jwks.length > 0) throw new Error('StaticKeyVerifier takes static keys only: JWT_JWKS_URL needs a KeyVerifier (verifierFromConfig)')
    super(jwt)
  }
}
