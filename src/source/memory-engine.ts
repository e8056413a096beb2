/**
 * The in-memory engine, for a first run: one process, nothing persisted.
 * `POST /publish` appends to the same streams it reads.
 */
import type { Config } from '../core/config.js'
import type { Engine, EngineDeps } from './engine.js'
import { MemoryControlStore } from './memory-control.js'
import { MemoryPublisher } from './memory-publisher.js'
import { MemorySource } from './memory-source.js'

/** Made when REDIS_URL is unset; says once, at start-up, that it is no deployment. */
export function memoryEngine (config: Config, deps: EngineDeps): Engine {
  const source = new MemorySource({ count: config.readerCount })
  deps.logger.warn({ engine: 'memory', maxEntriesPerStream: source.defaultMaxLen },
    'REDIS_URL is not set: running on the in-memory stream engine. Single replica only and not persistent: history is lost on restart, and several replicas would not share events. Set REDIS_URL to run in production or with more than one replica.')
  return {
    source,
    control: new MemoryControlStore({ maxTokenLifetimeMs: config.controlMaxTokenLifetimeMs }),
    createPublisher: () => new MemoryPublisher(source),
    readiness: () => ({ engine: 'memory' }),
  }
}
