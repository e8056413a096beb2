/**
 * The HTTP/1.1 stream writer on a real node HTTP server and a raw TCP
 * client, without the gateway: what is queued in one tick leaves as one
 * chunk; a batch alone in its tick goes out as its chunk framed once for
 * every stream; a client that stops reading is reported backed up and its
 * drain reported; the stream ends with its last frame and the chunked
 * body's end; the connection's close reaches the owner, and the writer stops
 * listening once it has ended.
 */
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { formatEventText } from '../../src/core/frame.js'
import { Batch, DeliveryEvent } from '../../src/delivery/hub.js'
import { httpChunkOfText } from '../../src/http/http1-chunk.js'
import { Http1StreamWriter } from '../../src/http/http1-writer.js'
import type { StreamWriterOwner } from '../../src/http/stream-writer.js'
import { RawExchange, dechunk, responseHead } from '../helpers/wire.js'

class Owner implements StreamWriterOwner {
  backedUp = 0
  drained = 0
  closed = 0
  onBackedUp (): void { this.backedUp++ }
  onDrain (): void { this.drained++ }
  onClosed (): void { this.closed++ }
}

interface Stream { writer: Http1StreamWriter, owner: Owner, res: ServerResponse, socket: Socket, socketWrites: Buffer[] }

/** A server whose every request becomes an open stream, handed to the test. */
async function serve (t: Test, maxBufferedBytes = 1 << 20): Promise<{ url: string, next: () => Promise<Stream> }> {
  const waiting: Array<(s: Stream) => void> = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const owner = new Owner()
    const writer = new Http1StreamWriter(res, req.socket, maxBufferedBytes)
    writer.bind(owner)
    writer.open({ 'content-type': 'text/event-stream' })
    const socketWrites: Buffer[] = []
    const write = req.socket.write.bind(req.socket) as (b: Buffer) => boolean
    req.socket.write = ((b: Buffer, ...rest: unknown[]) => {
      if (Buffer.isBuffer(b)) socketWrites.push(b)
      return (write as (...args: unknown[]) => boolean)(b, ...rest)
    }) as typeof req.socket.write
    waiting.shift()?.({ writer, owner, res, socket: req.socket, socketWrites })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
  return { url, next: async () => await new Promise<Stream>(resolve => waiting.push(resolve)) }
}

const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'

async function until (what: string, test: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

function body (wire: Buffer): { chunks: string[], ended: boolean } {
  const head = responseHead(wire)
  if (head === undefined) return { chunks: [], ended: false }
  const { chunks } = dechunk(wire.subarray(head.bodyAt))
  const texts = chunks.map(c => c.toString('utf8'))
  const ended = texts.at(-1) === ''
  return { chunks: ended ? texts.slice(0, -1) : texts, ended }
}

function batchOf (...ids: string[]): Batch {
  return new Batch(ids.map(id => new DeliveryEvent(id, formatEventText(`data ${id}`))), ids.at(-1) as string)
}

t.test('what is queued in one tick leaves as one chunk; the next tick is the next chunk', async t => {
  const { url, next } = await serve(t)
  const client = new RawExchange(url, REQUEST)
  t.teardown(() => { client.close() })
  const { writer } = await next()
  writer.write('retry: 1000\n\n')
  writer.writeBatch(batchOf('1-0', '1-1'))
  writer.write(Buffer.from(':\n\n'))
  await until('first chunk', () => body(client.bytes).chunks.length === 1)
  t.same(body(client.bytes).chunks, ['retry: 1000\n\ndata: data 1-0\nid: 1-0\n\ndata: data 1-1\nid: 1-1\n\n:\n\n'], 'in the order queued, in one chunk')
  writer.write('data: x\n\n')
  await until('second chunk', () => body(client.bytes).chunks.length === 2)
  t.equal(body(client.bytes).chunks[1], 'data: x\n\n')
  t.ok(writer.lastWriteAt > 0, 'the write time is kept (heartbeats)')
})

t.test('a batch alone in its tick goes to every stream as the one chunk framed for it', async t => {
  const { url, next } = await serve(t)
  const a = new RawExchange(url, REQUEST)
  const sa = await next()
  const b = new RawExchange(url, REQUEST)
  const sb = await next()
  t.teardown(() => { a.close(); b.close() })
  // The first write goes through the response (it carries the headers).
  sa.writer.write('retry: 1\n\n')
  sb.writer.write('retry: 1\n\n')
  await until('headers', () => body(a.bytes).chunks.length === 1 && body(b.bytes).chunks.length === 1)
  const batch = batchOf('2-0', '2-1', '2-2')
  sa.writer.writeBatch(batch)
  sb.writer.writeBatch(batch)
  await until('the batch', () => body(a.bytes).chunks.length === 2 && body(b.bytes).chunks.length === 2)
  const chunk = batch.encoded(httpChunkOfText)
  t.equal(sa.socketWrites.at(-1), chunk, 'stream a was written the batch\'s cached chunk')
  t.equal(sb.socketWrites.at(-1), chunk, 'stream b the very same Buffer: framed once')
  t.equal(body(a.bytes).chunks[1], batch.framed().toString('utf8'))
})

t.test('a client that stops reading: backed up past the limit, then drained', async t => {
  const { url, next } = await serve(t, 64 * 1024)
  const { port } = new URL(url)
  const socket = connect({ host: '127.0.0.1', port: Number(port) })
  t.teardown(() => { socket.destroy() })
  socket.write(REQUEST)
  let received = 0
  socket.on('data', (b: Buffer) => { received += b.length })
  const { writer, owner } = await next()
  socket.pause()
  writer.write('retry: 1\n\n')
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(owner.backedUp, 0, 'a small write is not backed up')
  const big = Buffer.alloc(8 << 20, 'a')
  writer.write(big)
  await until('backed up', () => owner.backedUp === 1)
  t.ok(writer.bufferedBytes >= 64 * 1024, 'the buffered bytes are past the limit')
  writer.awaitDrain()
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(owner.drained, 0, 'not drained while the client does not read')
  socket.resume()
  await until('drained', () => owner.drained === 1)
  t.ok(writer.bufferedBytes < 64 * 1024, 'nothing much left buffered')
  await until('the client got the bytes', () => received > 8 << 20)
})

t.test('end: what is queued, the last frame, then the end of the body; the connection is no longer watched', async t => {
  const { url, next } = await serve(t)
  const client = new RawExchange(url, REQUEST)
  t.teardown(() => { client.close() })
  const { writer, owner, socket } = await next()
  const watching = (): boolean => socket.listeners('close').some(f => f.name === 'closeWriterOfSocket')
  t.ok(watching(), 'the connection is watched')
  writer.write('retry: 1\n\n')
  await until('first chunk', () => body(client.bytes).chunks.length === 1)
  writer.write('data: queued\n\n')
  writer.end('retry: 5000\n\n')
  writer.write('data: after the end\n\n')
  writer.end('retry: 1\n\n')
  await until('the end', () => body(client.bytes).ended)
  t.same(body(client.bytes).chunks.join(''), 'retry: 1\n\ndata: queued\n\nretry: 5000\n\n', 'nothing after the end, and it ends once')
  t.notOk(watching(), 'the close listener is gone')
  client.close()
  await new Promise(resolve => setTimeout(resolve, 30))
  t.equal(owner.closed, 0, 'an ended stream is not told of the close')
})

t.test('the connection closing reaches the owner; a connection already gone does so when bound', async t => {
  const { url, next } = await serve(t)
  const client = new RawExchange(url, REQUEST)
  const { owner, res, socket } = await next()
  client.close()
  await until('closed', () => owner.closed === 1)
  t.equal(owner.closed, 1)
  const late = new Owner()
  const writer = new Http1StreamWriter(res, socket, 1024)
  writer.bind(late)
  t.equal(late.closed, 1, 'told at once')
})

t.test('nothing is written before open', async t => {
  const { url, next } = await serve(t)
  const client = new RawExchange(url, REQUEST)
  t.teardown(() => { client.close() })
  const { res, socket } = await next()
  const idle = new Http1StreamWriter(res, socket, 1024)
  idle.write('data: early\n\n')
  idle.writeBatch(batchOf('3-0'))
  await new Promise(resolve => setTimeout(resolve, 30))
  t.equal(client.bytes.length, 0, 'no bytes went out')
})
