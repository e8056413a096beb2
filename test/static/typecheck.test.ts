/**
 * The whole tree type-checks (`npm run typecheck`: src, test and bench with
 * the strict settings of tsconfig.json). The tests themselves run through a
 * transpiler that does not check types, so without this a type error could
 * pass the suite.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))

t.test('tsc --noEmit -p . reports no error', async t => {
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '-p', '.'], { cwd: root, encoding: 'utf8', timeout: 240000 })
  t.equal(r.status, 0, `tsc exited ${String(r.status)}${r.status === 0 ? '' : `:\n${r.stdout}${r.stderr}`}`)
})
