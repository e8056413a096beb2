import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import { RECONNECT_BASE_MS, RECONNECT_MAX_MS, accessOptions, reconnectDelayMs, standaloneConnection } from '../../src/source/redis-connection.js'

t.test('reconnect delays back off exponentially to a ceiling, with at most 100 ms of jitter', async t => {
  for (let times = 0; times < 30; times++) {
    const floor = Math.min(RECONNECT_BASE_MS * 2 ** Math.min(times, 10), RECONNECT_MAX_MS)
    const delays = Array.from({ length: 50 }, () => reconnectDelayMs(times))
    t.ok(delays.every(d => Number.isInteger(d) && d >= floor && d < floor + 100), `attempt ${times}: ${Math.min(...delays)}..${Math.max(...delays)} ms`)
  }
})

t.test('a unix:// URL connects to the socket path; redis:// to host, port and db', async t => {
  const unix = standaloneConnection('unix:///tmp/x/redis.sock').connect({ lazyConnect: true })
  t.equal(unix.options.path, '/tmp/x/redis.sock')
  t.equal(unix.options.protocol, 2, 'RESP2 by default')
  const tcp = standaloneConnection('redis://:pw@example.invalid:6380/3').connect({ lazyConnect: true, connectionName: 'n' })
  t.equal(tcp.options.host, 'example.invalid')
  t.equal(tcp.options.port, 6380)
  t.equal(tcp.options.db, 3)
  t.equal(tcp.options.password, 'pw')
  t.equal(tcp.options.connectionName, 'n', 'the caller\'s options are kept')
  t.equal(tcp.options.retryStrategy, reconnectDelayMs, 'the shared reconnect strategy unless the caller gives one')
  const own = (): null => null
  t.equal(standaloneConnection('redis://x').connect({ lazyConnect: true, retryStrategy: own }).options.retryStrategy, own, 'a caller\'s own strategy wins')
  unix.disconnect()
  tcp.disconnect()
})

t.test('the access (credentials, TLS) reaches every connection a factory opens, unix sockets too', async t => {
  const access = { username: 'gw', password: 'pw', tls: { ca: 'CA PEM', cert: 'CERT PEM', key: 'KEY PEM' } }
  t.same(accessOptions(access), { username: 'gw', password: 'pw', tls: { ca: 'CA PEM', cert: 'CERT PEM', key: 'KEY PEM' } })
  t.same(accessOptions({}), {}, 'nothing set: nothing added')
  const factory = standaloneConnection('rediss://example.invalid:6380', access)
  const a = factory.connect({ lazyConnect: true, connectionName: 'a' })
  const b = factory.connect({ lazyConnect: true, connectionName: 'b', maxRetriesPerRequest: null })
  for (const c of [a, b]) {
    t.equal(c.options.username, 'gw')
    t.equal(c.options.password, 'pw')
    t.same(c.options.tls, { ca: 'CA PEM', cert: 'CERT PEM', key: 'KEY PEM' }, 'our CA and client certificate, not just the scheme\'s TLS')
  }
  const unix = standaloneConnection('unix:///tmp/x/redis.sock', { password: 'pw' }).connect({ lazyConnect: true })
  t.equal(unix.options.password, 'pw', 'a socket gets the password too')
  for (const c of [a, b, unix]) c.disconnect()
})

t.test('a socket that errors twice (a refused TLS certificate, then the server\'s alert) does not crash the process', async t => {
  // ioredis listens for one error per socket; the second one had no listener and threw from the event loop.
  const server = createServer(socket => { socket.on('error', () => {}) })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.close() })
  const { port } = server.address() as AddressInfo
  const client = standaloneConnection(`redis://127.0.0.1:${port}`).connect({ lazyConnect: true, retryStrategy: () => null, enableReadyCheck: false })
  t.teardown(() => { client.disconnect() })
  client.connect().catch(() => {})
  await new Promise<void>(resolve => { client.once('connect', resolve) })
  const stream = (client as unknown as { stream: NodeJS.EventEmitter }).stream
  t.doesNotThrow(() => {
    stream.emit('error', new Error('certificate refused'))
    stream.emit('error', new Error('tlsv1 alert decode error'))
  }, 'both errors are taken')
})
