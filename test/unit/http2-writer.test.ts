/**
 * The HTTP/2 stream writer on a real node:http2 server (h2c) and a
 * node:http2 client, without the gateway: a batch alone in its tick is
 * written to every stream as the hub's one shared buffer (the frame-once
 * fan-out, no copy per stream); what is queued in one tick leaves in one
 * write; connection-specific headers never reach the wire; the stream ends
 * with its last frame; a stream that stops reading is reported backed up
 * and its drain reported; the close reaches the owner; destroy() resets
 * only its own stream.
 */
import t, { type Test } from 'tap'
import { connect, createServer, type ClientHttp2Session, type Http2ServerRequest, type Http2ServerResponse, type IncomingHttpHeaders } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { formatEventText } from '../../src/core/frame.js'
import { Batch, DeliveryEvent } from '../../src/delivery/hub.js'
import { Http2StreamWriter } from '../../src/http/http2-writer.js'
import type { StreamWriterOwner } from '../../src/http/stream-writer.js'

class Owner implements StreamWriterOwner {
  backedUp = 0
  drained = 0
  closed = 0
  onBackedUp (): void { this.backedUp++ }
  onDrain (): void { this.drained++ }
  onClosed (): void { this.closed++ }
}

interface Served { writer: Http2StreamWriter, owner: Owner, writes: unknown[] }

async function serve (t: Test, maxBufferedBytes = 1 << 20): Promise<{ client: ClientHttp2Session, next: () => Promise<Served> }> {
  const waiting: Array<(s: Served) => void> = []
  const server = createServer((_req: Http2ServerRequest, res: Http2ServerResponse) => {
    const owner = new Owner()
    const writes: unknown[] = []
    const write = res.stream.write.bind(res.stream) as (b: unknown) => boolean
    res.stream.write = ((b: unknown) => { writes.push(b); return write(b) }) as typeof res.stream.write
    const writer = new Http2StreamWriter(res, maxBufferedBytes)
    writer.bind(owner)
    writer.open({ 'content-type': 'text/event-stream', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked' })
    waiting.shift()?.({ writer, owner, writes })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { settings: { initialWindowSize: 16384 } })
  client.on('error', () => {})
  t.teardown(() => { client.destroy(); server.close() })
  return { client, next: async () => await new Promise<Served>(resolve => { waiting.push(resolve) }) }
}

function batch (...ids: string[]): Batch {
  return new Batch(ids.map(id => new DeliveryEvent(id, formatEventText(`data ${id}`))), ids.at(-1) as string)
}

async function open (client: ClientHttp2Session, next: () => Promise<Served>): Promise<{ served: Served, headers: IncomingHttpHeaders, body: () => string, req: ReturnType<ClientHttp2Session['request']> }> {
  const got = next()
  const req = client.request({ ':path': '/' })
  req.end()
  let text = ''
  req.setEncoding('utf8')
  req.on('data', (c: string) => { text += c })
  const headers = await new Promise<IncomingHttpHeaders>(resolve => req.once('response', resolve))
  return { served: await got, headers, body: () => text, req }
}

const tick = async (): Promise<void> => await new Promise(resolve => setTimeout(resolve, 20))

t.test('a batch alone in its tick is the hub\'s shared buffer on every stream; connection headers are dropped', async t => {
  const { client, next } = await serve(t)
  const a = await open(client, next)
  const b = await open(client, next)
  for (const h of ['connection', 'keep-alive', 'transfer-encoding']) t.notOk(h in a.headers, `no ${h} header`)
  t.equal(a.headers['content-type'], 'text/event-stream')
  const shared = batch('1-1', '1-2')
  a.served.writer.writeBatch(shared)
  b.served.writer.writeBatch(shared)
  await tick()
  t.equal(a.served.writes.length, 1, 'one write')
  t.equal(a.served.writes[0], shared.framed(), 'stream A got the shared buffer itself')
  t.equal(b.served.writes[0], shared.framed(), 'stream B the same buffer: framed once, no copy')
  t.equal(a.body(), shared.framed().toString('utf8'))
})

t.test('what is queued in one tick leaves in one write, in order; end() sends the last frame', async t => {
  const { client, next } = await serve(t)
  const s = await open(client, next)
  s.served.writer.write('retry: 1000\n\n')
  s.served.writer.writeBatch(batch('2-1'))
  s.served.writer.write(': hb\n\n')
  await tick()
  t.equal(s.served.writes.length, 1, 'one write for three pieces')
  s.served.writer.end('retry: 5000\n\n')
  await new Promise(resolve => s.req.once('end', resolve))
  t.equal(s.body(), 'retry: 1000\n\n' + batch('2-1').framed().toString('utf8') + ': hb\n\nretry: 5000\n\n')
  s.served.writer.write('after end')
  t.equal(s.served.owner.closed, 0, 'ending is not a close reported back')
})

t.test('a stream whose client stops reading is backed up, drains when it reads, and destroy() resets only it', async t => {
  const { client, next } = await serve(t, 64 * 1024)
  const slow = await open(client, next)
  const other = await open(client, next)
  slow.req.pause()
  const big = Buffer.alloc(32 * 1024, 'x')
  for (let i = 0; i < 4; i++) {
    slow.served.writer.write(big)
    await tick()
  }
  t.ok(slow.served.owner.backedUp >= 1, `backed up (holding ${slow.served.writer.bufferedBytes} bytes)`)
  other.served.writer.write('still flowing\n\n')
  await tick()
  t.equal(other.body(), 'still flowing\n\n', 'the other stream on the connection is not held up')
  slow.served.writer.awaitDrain()
  slow.req.resume()
  for (let i = 0; i < 100 && slow.served.owner.drained === 0; i++) await tick()
  t.equal(slow.served.owner.drained, 1, 'its drain is reported once')
  slow.served.writer.destroy()
  for (let i = 0; i < 50 && slow.served.owner.closed === 0; i++) await tick()
  t.equal(slow.served.owner.closed, 1, 'destroyed: its close reaches the owner')
  other.served.writer.write('and on\n\n')
  await tick()
  t.match(other.body(), /and on/, 'the other stream goes on')
})
