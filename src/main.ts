/**
 * The process entry point: the only module that reads the environment,
 * handles signals and listens.
 */
import type { Logger } from 'pino'
import { buildGateway } from './app.js'
import { loadConfig } from './core/config.js'
import { ConfigError } from './core/errors.js'
import { createLogger } from './log.js'

/** Before the config is read, and if it cannot be: the normal log shape at the default level. */
let logger: Logger = createLogger('info')

async function main (): Promise<void> {
  const config = loadConfig(process.env)
  const gateway = await buildGateway(config)
  logger = gateway.logger
  if (gateway.config.jwt === undefined) {
    gateway.logger.warn('no token key is set (JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_FILE or JWT_JWKS_URL): only PUBLIC_TOPICS can be read')
  }
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) {
      gateway.logger.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    gateway.logger.info({ signal }, 'shutting down')
    gateway.shutdown().then(() => process.exit(0), (err: unknown) => {
      gateway.logger.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { stop('SIGTERM') })
  process.on('SIGINT', () => { stop('SIGINT') })
  await gateway.listen()
}

main().catch((err: unknown) => {
  // One line, in the shape of every other, that says what to set.
  if (err instanceof ConfigError) logger.fatal({ error: err.code }, err.message)
  else logger.fatal({ err }, `cannot start: ${(err as Error).message}`)
  process.exit(1)
})
