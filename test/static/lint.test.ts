/**
 * The whole tree passes the linter (`npm run lint`: neostandard with its
 * TypeScript rules, eslint.config.js), so CI runs it with the suite.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))

t.test('eslint . reports no problem', async t => {
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'eslint', 'bin', 'eslint.js'), '--max-warnings', '0', '.'], { cwd: root, encoding: 'utf8', timeout: 240000 })
  t.equal(r.status, 0, `eslint exited ${String(r.status)}${r.status === 0 ? '' : `:\n${r.stdout}${r.stderr}`}`)
})
