/**
 * The README states what the gateway promises and what it answers. Regression
 * for "say what cannot be promised": the guarantees table names the loss that
 * asynchronous replication can cause and what producers do about it; every
 * code of the error catalogue and every gap reason is documented.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { Errors } from '../../src/core/errors.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

function section (title: string): string {
  const start = readme.indexOf(`\n### ${title}\n`)
  if (start === -1) throw new Error(`README has no section "${title}"`)
  const end = readme.indexOf('\n#', start + title.length + 6)
  return readme.slice(start, end === -1 ? undefined : end)
}

t.test('say what cannot be promised: the guarantees table names the failover loss and the producer remedies', async t => {
  const table = section('Delivery guarantees')
  const row = table.split('\n').find(l => /failover/i.test(l) && /replica/i.test(l))
  t.ok(row !== undefined, 'a row for a failover to a replica that was behind')
  t.match(row, /not promised/i, 'says it is not promised')
  t.match(row, /asynchronous/i, 'says why')
  t.match(row, /`WAIT/, 'names WAIT')
  t.match(row, /min-replicas-to-write/, 'names min-replicas-to-write')
  t.match(table, /restarts empty[^\n]*reset/i, 'a Redis that lost its data is told (reason reset)')
})

t.test('every error code of the catalogue is documented', async t => {
  for (const { code } of Object.values(Errors)) t.match(readme, new RegExp(`\`${code}\``), code)
})

t.test('every gap reason is in the gap reasons table', async t => {
  const table = section('Control events')
  for (const reason of ['trimmed', 'missing', 'ahead', 'invalid-cursor', 'reset']) t.match(table, new RegExp(`^\\| \`${reason}\` \\|`, 'm'), reason)
})
