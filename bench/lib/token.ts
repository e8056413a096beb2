/** HS256 tokens for the load generator, with node:crypto only. */
import { createHmac } from 'node:crypto'

/** The secret every bench gateway (and the verifying ceiling) is started with. */
export const BENCH_SECRET = 'bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz'

export interface BenchClaims {
  readonly sub?: string
  readonly topics?: readonly string[]
  /** Seconds since epoch; default an hour from now. */
  readonly exp?: number
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')

export function mintToken (claims: BenchClaims, secret = BENCH_SECRET): string {
  const body: Record<string, unknown> = { exp: claims.exp ?? Math.floor(Date.now() / 1000) + 3600 }
  if (claims.sub !== undefined) body.sub = claims.sub
  if (claims.topics !== undefined) body.topics = claims.topics
  const head = `${HEADER}.${Buffer.from(JSON.stringify(body)).toString('base64url')}`
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
}
