/**
 * Minting HS256 development tokens (the `token` CLI command and the demo's
 * token endpoint). Production tokens come from the application's own issuer.
 */
import { createHmac } from 'node:crypto'

function b64 (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** HS256 JWT with `iat` and `exp` (`ttlSeconds` from `nowMs`), and a `kid` header when given. */
export function mintToken (secret: string, claims: Record<string, unknown>, ttlSeconds: number, nowMs = Date.now(), kid?: string): string {
  const iat = Math.floor(nowMs / 1000)
  const head = `${b64({ alg: 'HS256', typ: 'JWT', ...(kid !== undefined ? { kid } : {}) })}.${b64({ ...claims, iat, exp: iat + ttlSeconds })}`
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
}
