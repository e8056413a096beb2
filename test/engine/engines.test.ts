/**
 * The engine made from config: the in-memory one without REDIS_URL, Redis
 * with it. Each hands over a source, a publisher that writes where that
 * source reads, and its part of /readyz; an engine around a source of the
 * caller's own reports that source's state.
 */
import t from 'tap'
import { loadConfig } from '../../src/core/config.js'
import { createEngine, engineKind, engineOf } from '../../src/source/engines.js'
import { MemorySource } from '../../src/source/memory-source.js'
import { silent, until } from '../helpers/reader-host.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'

t.setTimeout(60000)

t.test('without REDIS_URL: the in-memory engine, its publisher writing where it reads', async t => {
  const config = loadConfig({})
  t.equal(engineKind(config), 'memory')
  const warnings: string[] = []
  const logger = Object.assign(Object.create(silent) as typeof silent, { warn: (_o: unknown, msg: string) => { warnings.push(msg) } })
  const engine = createEngine(config, { logger })
  t.teardown(() => engine.source.close())
  t.equal(warnings.length, 1, 'one warning: a first-run engine, not a deployment')
  t.match(warnings[0], /REDIS_URL is not set/)
  t.same(engine.readiness(), { engine: 'memory' })
  const id = await engine.createPublisher()?.publish('sse:topic:x', ['data', 'hi'], {})
  t.equal(await engine.source.tail('sse:topic:x'), id, 'published into the engine it reads')
})

t.test('with REDIS_URL: the Redis engine, readiness naming its reader, its publisher on the same Redis', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const prefix = uniquePrefix('eng')
  const config = loadConfig({ REDIS_URL: redis.url, KEY_PREFIX: prefix, READER_MODE: 'block' })
  t.equal(engineKind(config), 'redis')
  const modes: string[] = []
  const engine = createEngine(config, { logger: silent, hooks: { onModeChange: mode => { modes.push(mode) } } })
  const publisher = engine.createPublisher()
  t.teardown(async () => { await publisher?.close?.(); await engine.source.close() })
  await engine.source.start?.()
  await until(() => engine.source.state === 'ready', 'connected')
  t.same(engine.readiness(), { redis: 'ready', live: 'flowing', reader: 'block' })
  t.same(modes, ['block'], 'the hooks hear the engine')
  const id = await publisher?.publish(`${prefix}topic:x`, ['data', 'hi'], {})
  t.equal(await engine.source.tail(`${prefix}topic:x`), id, 'published into the Redis it reads')
})

t.test('around a source of the caller\'s own: its state and live reason', async t => {
  const source = new MemorySource()
  t.teardown(() => source.close())
  const engine = engineOf(source, loadConfig({}))
  t.same(engine.readiness(), { redis: 'ready', live: 'flowing' })
  t.equal(engine.createPublisher(), undefined, 'nowhere to publish without REDIS_URL')
})
