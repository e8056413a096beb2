/**
 * The layering the layout section of the README promises, checked on the
 * import graph of src/: which folder may import which, which packages each
 * side may see, and no import cycle between modules. A change that runs an
 * import back up (the hub importing a route, an engine importing Fastify)
 * fails here, not in a review.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const src = join(root, 'src')

function files (dir: string): string[] {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : name.endsWith('.ts') ? [path] : []
  })
}

interface Import { readonly spec: string, readonly typeOnly: boolean }

/** Static and dynamic imports and re-exports of one module. */
function importsOf (text: string): Import[] {
  const found: Import[] = []
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm)) {
    found.push({ spec: m[3] as string, typeOnly: m[2] !== undefined })
  }
  for (const m of text.matchAll(/^\s*import\s+'([^']+)'/gm)) found.push({ spec: m[1] as string, typeOnly: false })
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) found.push({ spec: m[1] as string, typeOnly: false })
  return found
}

/** `src/<area>/...` -> area; a top-level module is its own area (app, main, cli, ...). */
function areaOf (file: string): string {
  const rel = relative(src, file).split('/')
  return rel.length > 1 ? rel[0] as string : (rel[0] as string).replace(/\.ts$/, '')
}

/** Which src areas each area may import (itself always). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: [],
  source: ['core'],
  auth: ['core'],
  delivery: ['core', 'source'],
  http: ['core', 'source', 'auth', 'delivery', 'metrics'],
  client: [],
  demo: ['client'],
  metrics: ['core'],
  log: [],
  producer: ['core', 'source'],
  app: ['core', 'source', 'auth', 'delivery', 'http', 'metrics', 'log'],
  main: ['core', 'app', 'log'],
  cli: ['core', 'source', 'producer'],
  index: ['core', 'source', 'auth', 'app', 'producer'],
}

/** Packages only one side may see. */
const REDIS_PACKAGES = ['ioredis']
const HTTP_PACKAGES = ['fastify', '@fastify/']
const MAY_NOT_SEE: Record<string, readonly string[]> = {
  core: [...REDIS_PACKAGES, ...HTTP_PACKAGES, 'pino', 'prom-client'],
  source: HTTP_PACKAGES,
  auth: [...REDIS_PACKAGES, ...HTTP_PACKAGES],
  delivery: [...REDIS_PACKAGES, ...HTTP_PACKAGES],
  http: REDIS_PACKAGES,
  client: [...REDIS_PACKAGES, ...HTTP_PACKAGES],
  demo: [...REDIS_PACKAGES, ...HTTP_PACKAGES],
}

const modules = files(src)
const graph = new Map<string, string[]>()

for (const file of modules) {
  const area = areaOf(file)
  const text = readFileSync(file, 'utf8')
  const local: string[] = []
  for (const { spec, typeOnly } of importsOf(text)) {
    if (spec.startsWith('.')) {
      const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts')
      const to = areaOf(target)
      const allowed = MAY_IMPORT[area]
      t.ok(allowed !== undefined, `${relative(root, file)}: its area "${area}" has a rule in this test`)
      if (to !== area && allowed !== undefined) {
        t.ok(allowed.includes(to), `${relative(root, file)} may not import ${relative(root, target)} (${area} -> ${to})`)
      }
      if (!typeOnly) local.push(target)
    } else if (!spec.startsWith('node:')) {
      const banned = (MAY_NOT_SEE[area] ?? []).find(p => spec === p || (p.endsWith('/') && spec.startsWith(p)))
      t.equal(banned, undefined, `${relative(root, file)} may not import ${spec}`)
    }
  }
  graph.set(file, local)
}

t.test('no import cycle between modules (type-only imports aside)', async t => {
  const state = new Map<string, 'open' | 'done'>()
  const cycles: string[] = []
  const visit = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'open') {
      cycles.push([...path.slice(path.indexOf(file)), file].map(f => relative(src, f)).join(' -> '))
      return
    }
    state.set(file, 'open')
    for (const next of graph.get(file) ?? []) visit(next, [...path, file])
    state.set(file, 'done')
  }
  for (const file of modules) visit(file, [])
  t.same(cycles, [], 'no cycles')
})

t.test('the checks see the tree', async t => {
  t.ok(modules.length > 40, `${modules.length} modules read`)
  t.ok([...graph.values()].some(list => list.length > 0), 'relative imports found')
})
