/**
 * The process entry point: the only module that reads the environment,
 * handles signals and listens.
 */
import { buildGateway } from './app.js'
import { loadConfig } from './core/config.js'
import { ConfigError } from './core/errors.js'

async function main (): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(JSON.stringify({ level: 'fatal', error: err.code, message: err.message }) + '\n')
      process.exit(1)
    }
    throw err
  }
  const gateway = await buildGateway(config)
  if (gateway.config.jwt === undefined) {
    gateway.logger.warn('neither JWT_SECRET nor JWT_PUBLIC_KEY is set: only PUBLIC_TOPICS can be read')
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
  process.stderr.write(JSON.stringify({ level: 'fatal', message: (err as Error).message }) + '\n')
  process.exit(1)
})
