#!/usr/bin/env node
/**
 * `sse-gateway token`: mints a development token from JWT_SECRET.
 *
 *     sse-gateway token --sub 42 --topics 'news,orders.*' --ttl 3600
 */
import { createHmac } from 'node:crypto'
import { parseArgs } from 'node:util'

const USAGE = `usage:
  sse-gateway token [--sub ID] [--topics 'a,b.*'] [--ttl SECONDS] [--aud A] [--iss I]
      Prints an HS256 token signed with JWT_SECRET (development use).`

function b64 (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

export function mintToken (secret: string, claims: Record<string, unknown>, ttlSeconds: number, nowMs = Date.now()): string {
  const iat = Math.floor(nowMs / 1000)
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ ...claims, iat, exp: iat + ttlSeconds })}`
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
}

function fail (message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`)
  process.exit(2)
}

function tokenCommand (args: string[]): void {
  const { values } = parseArgs({
    args,
    options: {
      sub: { type: 'string' },
      topics: { type: 'string' },
      ttl: { type: 'string', default: '3600' },
      aud: { type: 'string' },
      iss: { type: 'string' },
      claim: { type: 'string', default: process.env.JWT_TOPICS_CLAIM ?? 'topics' },
    },
  })
  const secret = process.env.JWT_SECRET
  if (secret === undefined || secret.length < 32) fail('JWT_SECRET must be set (at least 32 characters), as for the gateway.')
  const ttl = Number(values.ttl)
  if (!Number.isInteger(ttl) || ttl <= 0) fail('--ttl must be a positive whole number of seconds.')
  const claims: Record<string, unknown> = {}
  if (values.sub !== undefined) claims.sub = values.sub
  if (values.topics !== undefined) claims[values.claim] = values.topics.split(',').map(s => s.trim()).filter(Boolean)
  if (values.aud !== undefined) claims.aud = values.aud
  if (values.iss !== undefined) claims.iss = values.iss
  process.stdout.write(mintToken(secret, claims, ttl) + '\n')
}

const [command, ...rest] = process.argv.slice(2)
try {
  if (command === 'token') tokenCommand(rest)
  else fail(command === undefined ? 'missing command' : `unknown command: ${command}`)
} catch (err) {
  fail((err as Error).message)
}
