/**
 * pino settings. Security contract: a token never reaches a log line. The
 * request serializer writes the path only (the query string may hold
 * `?token=`), no headers at all; redaction covers credentials that other code
 * might log by mistake.
 */
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino'

interface RequestLike {
  method?: string
  url?: string
  ip?: string
  id?: string
}

export function pathOnly (url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

/**
 * pino's error serializer copies every enumerable property. Node's HTTP parse
 * errors (logged by Fastify's clientError handler) carry `rawPacket`: the
 * request bytes read so far, query string and headers included, so tokens.
 */
function serializeError (err: Error): Record<string, unknown> {
  const out = pino.stdSerializers.err(err) as unknown as Record<string, unknown>
  delete out.rawPacket
  return out
}

export function loggerOptions (level: string): LoggerOptions {
  return {
    level,
    base: { service: 'sse-gateway' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        'req.headers.authorization', 'req.headers.cookie', 'req.query.token',
        'headers.authorization', 'headers.cookie', 'token', '*.token',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: RequestLike) => ({ method: req.method, path: pathOnly(req.url), remoteAddress: req.ip }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      err: serializeError,
    },
  }
}

export function createLogger (level: string, destination?: DestinationStream): Logger {
  return destination === undefined ? pino(loggerOptions(level)) : pino(loggerOptions(level), destination)
}
