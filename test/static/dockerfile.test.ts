/**
 * Static checks of the Dockerfile and .dockerignore (no Docker engine here):
 * multi-stage, production dependencies only at run time, a pinned Node LTS
 * base, a numeric non-root user, exec-form start so signals reach node, both
 * listeners exposed.
 */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { SETTINGS } from '../../src/core/config.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const dockerfile = readFileSync(`${root}Dockerfile`, 'utf8')
const dockerignore = readFileSync(`${root}.dockerignore`, 'utf8')
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> }

interface Instruction { op: string, args: string, line: number }
interface Stage { from: string, name: string | undefined, body: Instruction[] }

/** Instructions in order: comments dropped, continuation lines joined. */
function parseDockerfile (text: string): Instruction[] {
  const out: Instruction[] = []
  let pending = ''
  let start = 0
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd()
    if (/^\s*#/.test(line)) return // comments, also inside a continuation
    if (pending === '') start = i + 1
    if (line.endsWith('\\')) { pending += line.slice(0, -1) + ' '; return }
    const full = (pending + line).trim()
    pending = ''
    if (full === '') return
    const m = /^(\S+)\s*(.*)$/s.exec(full) as RegExpExecArray
    out.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start })
  })
  return out
}

function stagesOf (instructions: Instruction[]): { args: Map<string, string>, stages: Stage[] } {
  const args = new Map<string, string>()
  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.op === 'ARG' && stages.length === 0) {
      const [k, v] = ins.args.split('=') as [string, string | undefined]
      if (v !== undefined) args.set(k.trim(), v.trim())
    } else if (ins.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args) as RegExpExecArray
      const from = (m[1] as string).replace(/\$\{?(\w+)\}?/g, (_s, k: string) => args.get(k) ?? '')
      stages.push({ from, name: m[2], body: [] })
    } else if (stages.length > 0) {
      (stages[stages.length - 1] as Stage).body.push(ins)
    }
  }
  return { args, stages }
}

function execForm (args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined
  const v = JSON.parse(args) as unknown
  return Array.isArray(v) && v.every(x => typeof x === 'string') ? v : undefined
}

const { stages } = stagesOf(parseDockerfile(dockerfile))
const runtime = stages[stages.length - 1] as Stage
const runsOf = (s: Stage): string[] => s.body.filter(i => i.op === 'RUN').map(i => i.args)
const settingDefault = (name: string): string => (SETTINGS as ReadonlyArray<{ env: string, default?: string }>).find(s => s.env === name)?.default as string

t.test('multi-stage: the build stage compiles, the runtime stage gets production deps and dist/', async t => {
  t.ok(stages.length >= 2, `${stages.length} stages`)
  const build = stages[0] as Stage
  t.ok(build.name, 'the build stage is named')
  t.ok(runsOf(build).some(r => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)), 'build stage: npm ci with dev dependencies')
  t.ok(runsOf(build).some(r => /\bnpm run build\b/.test(r)), 'build stage: npm run build')
  t.ok(pkg.scripts.build, 'package.json has a build script')

  t.ok(runsOf(runtime).some(r => /\bnpm ci\b[^&|;]*--omit=dev/.test(r)), 'runtime stage: npm ci --omit=dev')
  t.notOk(runsOf(runtime).some(r => /\bnpm (run build|install)\b/.test(r)), 'runtime stage neither builds nor installs ad hoc')
  const copies = runtime.body.filter(i => i.op === 'COPY')
  t.ok(copies.some(c => new RegExp(`--from=${build.name ?? '0'}\\b.*\\bdist\\b`).test(c.args)), 'runtime stage copies dist/ from the build stage')
  t.notOk(copies.some(c => /^(--\S+\s+)*(\.|src\/?|\.\/src\/?)\s/.test(c.args) && !c.args.includes('--from=')), 'runtime stage copies no sources from the context')
  t.notOk(runtime.body.some(i => i.op === 'ADD'), 'no ADD (COPY only)')
  const env = runtime.body.filter(i => i.op === 'ENV').map(i => i.args).join(' ')
  t.match(env, /NODE_ENV=production/, 'NODE_ENV=production')
})

t.test('base image: a current Node LTS, pinned by version tag, slim', async t => {
  for (const s of stages) {
    const m = /^(?:docker\.io\/)?(?:library\/)?node:(\d+)(\.\d+\.\d+)?-([a-z]+-slim|slim|alpine[\d.]*)(@sha256:[a-f0-9]{64})?$/.exec(s.from)
    t.ok(m, `stage ${s.name ?? '?'}: ${s.from} is a slim or alpine node image`)
    if (m === null) continue
    t.ok(['20', '22', '24'].includes(m[1] as string), `Node ${m[1] as string} is an LTS line`)
    t.ok(m[2] !== undefined || m[4] !== undefined, 'pinned to a full version (or a digest), not a floating major')
  }
  t.equal(new Set(stages.map(s => s.from)).size, 1, 'build and runtime use the same Node')
  t.notMatch(dockerfile, /:latest\b/, 'no :latest')
})

t.test('runs as a numeric non-root user', async t => {
  const users = runtime.body.filter(i => i.op === 'USER')
  t.ok(users.length > 0, 'USER is set in the runtime stage')
  const user = users[users.length - 1]?.args ?? ''
  const m = /^(\d+)(?::(\d+))?$/.exec(user)
  t.ok(m, `USER ${user} is numeric (Kubernetes runAsNonRoot can check it)`)
  t.ok(m !== null && Number(m[1]) > 0, 'and not root')
})

t.test('signals reach node: exec-form start, no npm or shell in between', async t => {
  const cmd = [...runtime.body].reverse().find(i => i.op === 'CMD')
  const entry = [...runtime.body].reverse().find(i => i.op === 'ENTRYPOINT')
  t.ok(cmd !== undefined || entry !== undefined, 'CMD or ENTRYPOINT')
  const argv = [...(entry !== undefined ? execForm(entry.args) ?? ['<shell form>'] : []), ...(cmd !== undefined ? execForm(cmd.args) ?? ['<shell form>'] : [])]
  t.notOk(argv.includes('<shell form>'), `exec form (JSON array): ${JSON.stringify(argv)}`)
  const start = argv.filter(a => !/(^|\/)(tini|dumb-init)$/.test(a) && a !== '--' && a !== '-g')
  t.equal(start[0], 'node', 'node runs directly (or under tini / dumb-init)')
  t.notOk(argv.some(a => a === 'npm' || a === 'sh' || a === '/bin/sh'), 'not through npm or a shell, which would swallow SIGTERM')
  const entryFile = start[start.length - 1] as string
  t.match(pkg.scripts.start, entryFile, `package.json start runs the same file (${entryFile})`)
  t.ok(entryFile.startsWith('dist/'), 'the compiled entry point')
  const stop = runtime.body.find(i => i.op === 'STOPSIGNAL')
  if (stop !== undefined) t.ok(['SIGTERM', 'SIGINT'].includes(stop.args), 'STOPSIGNAL is one the gateway drains on')
})

t.test('EXPOSE both listeners at their default ports; HEALTHCHECK on /livez', async t => {
  const exposed = runtime.body.filter(i => i.op === 'EXPOSE').flatMap(i => i.args.split(/\s+/)).map(p => p.replace(/\/tcp$/, ''))
  t.ok(exposed.includes(settingDefault('PORT')), `EXPOSE ${settingDefault('PORT')} (public)`)
  t.ok(exposed.includes(settingDefault('INTERNAL_PORT')), `EXPOSE ${settingDefault('INTERNAL_PORT')} (internal)`)
  const hc = runtime.body.find(i => i.op === 'HEALTHCHECK')
  if (hc !== undefined) {
    t.match(hc.args, /CMD \[/, 'exec form')
    t.match(hc.args, /\/livez/, 'liveness, never readiness: a Redis outage must not mark the container unhealthy')
  }
})

t.test('.dockerignore keeps the context small and keeps what the build needs', async t => {
  const patterns = dockerignore.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
  const ignored = (path: string): boolean => {
    let out = false
    for (const p of patterns) {
      const neg = p.startsWith('!')
      const glob = (neg ? p.slice(1) : p).replace(/^\/+|\/+$/g, '')
      const body = glob.split('**/').map(part => part.split('**').map(p2 => p2.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*')).join('(.*/)?')
      const re = new RegExp(`^${body}(/.*)?$`)
      if (re.test(path)) out = !neg
    }
    return out
  }
  for (const p of ['node_modules', 'dist', '.git', 'test', '.env']) t.ok(ignored(p), `${p} is left out`)
  const needed = stages.flatMap(s => s.body.filter(i => i.op === 'COPY' && !i.args.includes('--from=')))
    .flatMap(i => i.args.split(/\s+/).filter(a => !a.startsWith('--')).slice(0, -1))
  t.ok(needed.length > 0, 'the build copies files from the context')
  for (const src of needed) {
    t.ok(existsSync(`${root}${src}`), `${src} exists`)
    t.notOk(ignored(src.replace(/^\.\/|\/$/g, '')), `${src} is in the build context`)
  }
})
