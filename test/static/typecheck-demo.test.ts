/**
 * The demo page's browser code (src/demo/, with the client helper it
 * imports) type-checks against the DOM (tsconfig.demo.json). The tree's own
 * check (typecheck.test.ts, tsconfig.json) leaves src/demo/demo.ts out: it
 * has no DOM types, on purpose, so that server code cannot use browser
 * globals by mistake.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))

t.test('tsc --noEmit -p tsconfig.demo.json reports no error', async t => {
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '-p', 'tsconfig.demo.json'], { cwd: root, encoding: 'utf8', timeout: 240000 })
  t.equal(r.status, 0, `tsc exited ${String(r.status)}${r.status === 0 ? '' : `:\n${r.stdout}${r.stderr}`}`)
})
