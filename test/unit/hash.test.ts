import t from 'tap'
import { fnv1a } from '../../src/core/hash.js'

t.test('FNV-1a 32-bit matches the published test vectors', async t => {
  // From the FNV reference (draft-eastlake-fnv): ASCII text hashes as its bytes.
  t.equal(fnv1a(''), 0x811c9dc5)
  t.equal(fnv1a('a'), 0xe40c292c)
  t.equal(fnv1a('foobar'), 0xbf9cf968)
})

t.test('always an unsigned 32-bit integer', async t => {
  for (const text of ['sse:user:42', 'sse:topic:orders', 'é€😀', 'x'.repeat(1000)]) {
    const h = fnv1a(text)
    t.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32, text.slice(0, 20))
  }
})
