/**
 * A small renderer for the Helm chart in helm/sse-gateway, for the static
 * tests: there is no helm binary here, so this implements the part of Go
 * text/template and Sprig that the chart's templates use, with Helm's
 * conventions around it (Values, Release, Chart, Template, include, value
 * merging, `<no value>` printed as nothing, NOTES.txt and `_*.tpl` not
 * emitted).
 *
 * The subset (keep the templates to it; anything else is an error here):
 * - actions `{{ }}` with trim markers `{{- ` and ` -}}`, comments `{{/* *\/}}`
 * - `if` / `else if` / `else` / `end`, `with` / `else` / `end`,
 *   `range` (lists and maps, maps in key order; `$v :=` and `$k, $v :=`)
 *   / `else` / `end`, `define` / `end`
 * - pipelines `a | b c`, parenthesised sub-pipelines, variables (`$`,
 *   `$x := ...`, `$x = ...`, `$x.Field`), fields (`.Values.a.b`), string,
 *   number, bool and nil literals
 * - functions: include, default, quote, toYaml, toString, nindent, indent,
 *   printf, print, eq, ne, lt, le, gt, ge, and, or, not, trunc, trimSuffix,
 *   replace, contains, hasKey, kindIs, join, int, int64, add, div,
 *   sha256sum, b64enc, required, fail
 *
 * It is deliberately stricter than Go where Go would print garbage: types
 * follow Helm (numbers from values are float64, numbers written in a template
 * are int), so `printf "%d"` of a value, `nindent` of a number or a value of
 * 1000000 printed as `1e+06` show up here as they would in a real cluster.
 * Field access on nil, comparisons of different kinds and printing a map or a
 * list into the output are errors.
 */
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml'

// ---- values ----------------------------------------------------------------
// Go values as JS: string, number (float64), bigint (int/int64), boolean,
// undefined/null (nil), arrays (slices), plain objects (maps).

type Dict = Record<string, unknown>

function isMap (v: unknown): v is Dict {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isNil (v: unknown): boolean {
  return v === undefined || v === null
}

/** Go template truth: false, 0, "", nil and empty collections are false. */
export function truth (v: unknown): boolean {
  if (isNil(v)) return false
  if (typeof v === 'boolean') return v
  if (typeof v === 'number') return v !== 0
  if (typeof v === 'bigint') return v !== 0n
  if (typeof v === 'string') return v !== ''
  if (Array.isArray(v)) return v.length > 0
  if (isMap(v)) return Object.keys(v).length > 0
  return true
}

/** fmt's %v of a float64: shortest digits, exponent form from 1e+06 up or below 1e-04. */
export function goFloat (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf'
  if (v === 0) return Object.is(v, -0) ? '-0' : '0'
  const [mantissa, expText] = v.toExponential().split('e') as [string, string]
  const exp = Number(expText)
  if (exp < -4 || exp >= 6) {
    const sign = exp < 0 ? '-' : '+'
    return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`
  }
  return String(v)
}

/** Sprig's strval: how a value turns into a string. */
function strval (v: unknown): string {
  if (typeof v === 'string') return v
  if (typeof v === 'number') return goFloat(v)
  if (typeof v === 'bigint' || typeof v === 'boolean') return String(v)
  if (isNil(v)) return '<nil>'
  throw new Error(`cannot turn a ${kindOf(v)} into a string here`)
}

function kindOf (v: unknown): string {
  if (isNil(v)) return 'invalid'
  if (typeof v === 'string') return 'string'
  if (typeof v === 'number') return 'float64'
  if (typeof v === 'bigint') return 'int64'
  if (typeof v === 'boolean') return 'bool'
  if (Array.isArray(v)) return 'slice'
  if (isMap(v)) return 'map'
  return typeof v
}

function toInt64 (v: unknown): bigint {
  if (typeof v === 'bigint') return v
  if (typeof v === 'number') return BigInt(Math.trunc(v))
  if (typeof v === 'boolean') return v ? 1n : 0n
  if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) return BigInt(v.trim())
  return 0n
}

function wantString (fn: string, v: unknown): string {
  if (typeof v !== 'string') throw new Error(`${fn}: expected a string, got ${kindOf(v)}`)
  return v
}

function wantInt (fn: string, v: unknown): number {
  if (typeof v !== 'bigint') throw new Error(`${fn}: expected an int, got ${kindOf(v)} (pipe it through int)`)
  return Number(v)
}

function toYaml (v: unknown): string {
  if (isNil(v)) return 'null'
  // YAML 1.1, as Helm and Kubernetes speak it: "off" and "yes" stay quoted.
  const text = stringifyYaml(v, { version: '1.1', sortMapEntries: true, indentSeq: false, lineWidth: 0 })
  return text.replace(/\n$/, '')
}

function compare (fn: string, a: unknown, b: unknown): number {
  const ka = kindOf(a)
  const kb = kindOf(b)
  if (ka !== kb || !['string', 'float64', 'int64'].includes(ka)) {
    throw new Error(`${fn}: incompatible types for comparison (${ka} and ${kb})`)
  }
  return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0
}

function equal (a: unknown, b: unknown): boolean {
  if (isNil(a) || isNil(b)) return isNil(a) && isNil(b)
  const ka = kindOf(a)
  if (ka !== kindOf(b) || !['string', 'float64', 'int64', 'bool'].includes(ka)) {
    throw new Error(`eq: incompatible types for comparison (${ka} and ${kindOf(b)})`)
  }
  return a === b
}

function sprintf (format: string, args: unknown[]): string {
  let i = 0
  return format.replace(/%([%svdq])/g, (_m, verb: string) => {
    if (verb === '%') return '%'
    if (i >= args.length) throw new Error(`printf: missing argument for %${verb}`)
    const a = args[i++]
    switch (verb) {
      case 's':
        if (typeof a !== 'string') throw new Error(`printf: %s of a ${kindOf(a)}`)
        return a
      case 'd':
        if (typeof a !== 'bigint') throw new Error(`printf: %d of a ${kindOf(a)} (Helm values are float64: pipe through int)`)
        return String(a)
      case 'q':
        return JSON.stringify(strval(a))
      default:
        return strval(a)
    }
  })
}

// ---- parsing ----------------------------------------------------------------

type Term =
  | { t: 'lit', value: unknown }
  | { t: 'field', base: 'dot' | string, path: string[] }
  | { t: 'ident', name: string }
  | { t: 'pipe', pipe: Pipeline }

interface Pipeline { decl?: { names: string[], op: ':=' | '=' }, cmds: Term[][] }

type Node =
  | { k: 'text', text: string }
  | { k: 'out', pipe: Pipeline, where: string }
  | { k: 'if', branches: Array<{ cond: Pipeline, body: Node[] }>, otherwise: Node[], where: string }
  | { k: 'with', pipe: Pipeline, body: Node[], otherwise: Node[], where: string }
  | { k: 'range', pipe: Pipeline, body: Node[], otherwise: Node[], where: string }

type Tok = { k: 'str' | 'num' | 'ident' | 'field' | 'var' | 'punct', v: string }

function tokenize (src: string, where: string): Tok[] {
  const toks: Tok[] = []
  let i = 0
  while (i < src.length) {
    const c = src[i] as string
    if (/\s/.test(c)) { i++; continue }
    if (c === '"') {
      let j = i + 1
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1
      toks.push({ k: 'str', v: JSON.parse(src.slice(i, j + 1)) as string })
      i = j + 1
      continue
    }
    if (c === '`') {
      const j = src.indexOf('`', i + 1)
      toks.push({ k: 'str', v: src.slice(i + 1, j) })
      i = j + 1
      continue
    }
    if (src.startsWith(':=', i)) { toks.push({ k: 'punct', v: ':=' }); i += 2; continue }
    if ('()|=,'.includes(c)) { toks.push({ k: 'punct', v: c }); i++; continue }
    const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?)|^(\$[A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)|^(\.([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?)|^([A-Za-z_][A-Za-z0-9_]*)/.exec(src.slice(i))
    if (m === null) throw new Error(`${where}: cannot read "${src.slice(i, i + 20)}"`)
    if (m[1] !== undefined) toks.push({ k: 'num', v: m[1] })
    else if (m[4] !== undefined) toks.push({ k: 'var', v: m[4] })
    else if (m[6] !== undefined) toks.push({ k: 'field', v: m[6] })
    else toks.push({ k: 'ident', v: m[9] as string })
    i += m[0].length
  }
  return toks
}

function parsePipeline (toks: Tok[], where: string): Pipeline {
  let pos = 0
  const pipe: Pipeline = { cmds: [] }
  // Declarations: $x := ..., $k, $v := ..., $x = ...
  const names: string[] = []
  let p = 0
  while (toks[p]?.k === 'var' && !(toks[p]?.v.includes('.') ?? false)) {
    names.push(toks[p]?.v as string)
    if (toks[p + 1]?.v === ',') { p += 2; continue }
    p++
    break
  }
  const op = toks[p]?.v
  if (names.length > 0 && (op === ':=' || op === '=') && toks[p]?.k === 'punct') {
    pipe.decl = { names, op }
    pos = p + 1
  }
  const term = (): Term => {
    const tok = toks[pos++]
    if (tok === undefined) throw new Error(`${where}: unexpected end of action`)
    switch (tok.k) {
      case 'str': return { t: 'lit', value: tok.v }
      case 'num': return { t: 'lit', value: /^-?\d+$/.test(tok.v) ? BigInt(tok.v) : Number(tok.v) }
      case 'field': return { t: 'field', base: 'dot', path: tok.v === '.' ? [] : tok.v.slice(1).split('.') }
      case 'var': {
        const [base, ...path] = tok.v.split('.')
        return { t: 'field', base: base as string, path }
      }
      case 'ident':
        if (tok.v === 'true' || tok.v === 'false') return { t: 'lit', value: tok.v === 'true' }
        if (tok.v === 'nil') return { t: 'lit', value: null }
        return { t: 'ident', name: tok.v }
      default:
        if (tok.v === '(') {
          const start = pos
          let depth = 1
          while (pos < toks.length && depth > 0) {
            if (toks[pos]?.v === '(' && toks[pos]?.k === 'punct') depth++
            if (toks[pos]?.v === ')' && toks[pos]?.k === 'punct') depth--
            pos++
          }
          if (depth !== 0) throw new Error(`${where}: unbalanced parentheses`)
          return { t: 'pipe', pipe: parsePipeline(toks.slice(start, pos - 1), where) }
        }
        throw new Error(`${where}: unexpected "${tok.v}"`)
    }
  }
  let cmd: Term[] = []
  while (pos < toks.length) {
    const tok = toks[pos] as Tok
    if (tok.k === 'punct' && tok.v === '|') {
      if (cmd.length === 0) throw new Error(`${where}: empty command in pipeline`)
      pipe.cmds.push(cmd)
      cmd = []
      pos++
      continue
    }
    cmd.push(term())
  }
  if (cmd.length === 0) throw new Error(`${where}: empty pipeline`)
  pipe.cmds.push(cmd)
  return pipe
}

interface Action { body: string, line: number }

function lexTemplate (src: string, name: string): Array<string | Action> {
  const parts: Array<string | Action> = []
  let i = 0
  let trimNext = false
  while (i < src.length) {
    const open = src.indexOf('{{', i)
    let text = src.slice(i, open === -1 ? src.length : open)
    if (trimNext) text = text.replace(/^\s+/, '')
    trimNext = false
    if (open === -1) { parts.push(text); break }
    let start = open + 2
    if (/^-\s/.test(src.slice(start, start + 2))) {
      text = text.replace(/\s+$/, '')
      start += 1
    }
    parts.push(text)
    // find the closing braces outside string literals and comments
    let j = start
    let quote: string | null = null
    while (j < src.length) {
      const c = src[j]
      if (quote !== null) {
        if (c === '\\' && quote === '"') { j += 2; continue }
        if (c === quote) quote = null
        j++
        continue
      }
      if (c === '"' || c === '`') { quote = c; j++; continue }
      if (src.startsWith('/*', j)) {
        const end = src.indexOf('*/', j + 2)
        if (end === -1) throw new Error(`${name}: unclosed comment`)
        j = end + 2
        continue
      }
      if (src.startsWith('}}', j)) break
      j++
    }
    if (j >= src.length) throw new Error(`${name}: unclosed action`)
    let body = src.slice(start, j)
    if (/\s-$/.test(body)) { body = body.slice(0, -1); trimNext = true }
    const line = src.slice(0, open).split('\n').length
    body = body.trim()
    if (!(body.startsWith('/*') && body.endsWith('*/'))) parts.push({ body, line })
    i = j + 2
  }
  return parts
}

interface Parsed { nodes: Node[], defines: Map<string, Node[]> }

function parseTemplate (src: string, name: string): Parsed {
  const defines = new Map<string, Node[]>()
  const parts = lexTemplate(src, name)
  let idx = 0
  // Parses nodes until one of the stop keywords; returns the stopping action.
  const parseList = (stops: string[]): { nodes: Node[], stop: { kw: string, rest: string, where: string } | null } => {
    const nodes: Node[] = []
    while (idx < parts.length) {
      const part = parts[idx++] as string | Action
      if (typeof part === 'string') { if (part !== '') nodes.push({ k: 'text', text: part }); continue }
      const where = `${name}:${part.line}`
      const kw = /^([a-z]+)\b\s*(.*)$/s.exec(part.body)
      const word = kw?.[1] ?? ''
      const rest = kw?.[2] ?? ''
      if (stops.includes(word)) return { nodes, stop: { kw: word, rest, where } }
      switch (word) {
        case 'if': {
          const branches = [{ cond: parsePipeline(tokenize(rest, where), where), body: [] as Node[] }]
          let otherwise: Node[] = []
          for (;;) {
            const r = parseList(['else', 'end'])
            ;(branches[branches.length - 1] as { body: Node[] }).body = r.nodes
            if (r.stop === null) throw new Error(`${where}: if without end`)
            if (r.stop.kw === 'end') break
            const elseIf = /^if\s+(.*)$/s.exec(r.stop.rest)
            if (elseIf !== null) { branches.push({ cond: parsePipeline(tokenize(elseIf[1] as string, where), where), body: [] }); continue }
            const e = parseList(['end'])
            if (e.stop === null) throw new Error(`${where}: else without end`)
            otherwise = e.nodes
            break
          }
          nodes.push({ k: 'if', branches, otherwise, where })
          break
        }
        case 'with':
        case 'range': {
          const pipe = parsePipeline(tokenize(rest, where), where)
          const r = parseList(['else', 'end'])
          if (r.stop === null) throw new Error(`${where}: ${word} without end`)
          let otherwise: Node[] = []
          if (r.stop.kw === 'else') {
            if (r.stop.rest !== '') throw new Error(`${where}: "else ${r.stop.rest}" inside ${word} is outside the subset`)
            const e = parseList(['end'])
            if (e.stop === null) throw new Error(`${where}: else without end`)
            otherwise = e.nodes
          }
          nodes.push({ k: word, pipe, body: r.nodes, otherwise, where })
          break
        }
        case 'define': {
          const defName = JSON.parse(rest.trim()) as string
          const r = parseList(['end'])
          if (r.stop === null) throw new Error(`${where}: define without end`)
          defines.set(defName, r.nodes)
          break
        }
        case 'else':
        case 'end':
          throw new Error(`${where}: unexpected ${word}`)
        case 'template':
        case 'block':
        case 'break':
        case 'continue':
          throw new Error(`${where}: "${word}" is outside the subset this renderer supports`)
        default:
          nodes.push({ k: 'out', pipe: parsePipeline(tokenize(part.body, where), where), where })
      }
    }
    return { nodes, stop: null }
  }
  const r = parseList([])
  return { nodes: r.nodes, defines }
}

// ---- execution ----------------------------------------------------------------

export class TemplateFail extends Error {
  override name = 'TemplateFail'
}

interface Scope { vars: Map<string, unknown>, parent: Scope | null }

class Engine {
  readonly defines = new Map<string, Node[]>()
  readonly files = new Map<string, Node[]>()
  depth = 0

  execute (nodes: Node[], dot: unknown): string {
    const scope: Scope = { vars: new Map([['$', dot]]), parent: null }
    return this.run(nodes, dot, scope)
  }

  include (name: string, dot: unknown): string {
    const nodes = this.defines.get(name) ?? this.files.get(name)
    if (nodes === undefined) throw new Error(`include: no template "${name}"`)
    if (++this.depth > 100) throw new Error('include: too deep')
    try {
      return this.execute(nodes, dot)
    } finally {
      this.depth--
    }
  }

  private lookupVar (scope: Scope, name: string): Scope | null {
    for (let s: Scope | null = scope; s !== null; s = s.parent) if (s.vars.has(name)) return s
    return null
  }

  private run (nodes: Node[], dot: unknown, scope: Scope): string {
    let out = ''
    for (const node of nodes) {
      try {
        switch (node.k) {
          case 'text': out += node.text; break
          case 'out': {
            const v = this.pipeline(node.pipe, dot, scope)
            if (node.pipe.decl !== undefined) break
            if (isNil(v)) break // Helm prints <no value> as nothing
            if (Array.isArray(v) || isMap(v)) throw new Error(`printing a ${kindOf(v)} into the output (use toYaml)`)
            out += strval(v)
            break
          }
          case 'if': {
            let done = false
            for (const b of node.branches) {
              if (truth(this.pipeline(b.cond, dot, scope))) {
                out += this.run(b.body, dot, { vars: new Map(), parent: scope })
                done = true
                break
              }
            }
            if (!done) out += this.run(node.otherwise, dot, { vars: new Map(), parent: scope })
            break
          }
          case 'with': {
            const v = this.pipeline({ cmds: node.pipe.cmds }, dot, scope)
            const inner: Scope = { vars: new Map(), parent: scope }
            if (truth(v)) {
              if (node.pipe.decl !== undefined) inner.vars.set(node.pipe.decl.names[0] as string, v)
              out += this.run(node.body, v, inner)
            } else {
              out += this.run(node.otherwise, dot, inner)
            }
            break
          }
          case 'range': {
            const v = this.pipeline({ cmds: node.pipe.cmds }, dot, scope)
            const names = node.pipe.decl?.names ?? []
            const entries: Array<[unknown, unknown]> = []
            if (Array.isArray(v)) v.forEach((e, i) => entries.push([BigInt(i), e]))
            else if (isMap(v)) for (const k of Object.keys(v).sort()) entries.push([k, v[k]])
            else if (!isNil(v)) throw new Error(`range over a ${kindOf(v)}`)
            if (entries.length === 0) {
              out += this.run(node.otherwise, dot, { vars: new Map(), parent: scope })
              break
            }
            for (const [k, e] of entries) {
              const inner: Scope = { vars: new Map(), parent: scope }
              if (names.length === 1) inner.vars.set(names[0] as string, e)
              if (names.length === 2) { inner.vars.set(names[0] as string, k); inner.vars.set(names[1] as string, e) }
              out += this.run(node.body, e, inner)
            }
            break
          }
        }
      } catch (err) {
        if (err instanceof TemplateFail) throw err
        const e = err as Error
        if ('where' in node && !e.message.startsWith('at ')) e.message = `at ${node.where}: ${e.message}`
        throw e
      }
    }
    return out
  }

  private pipeline (pipe: Pipeline, dot: unknown, scope: Scope): unknown {
    let piped: { v: unknown } | undefined
    for (const cmd of pipe.cmds) piped = { v: this.command(cmd, dot, scope, piped) }
    const v = piped?.v
    if (pipe.decl !== undefined) {
      const name = pipe.decl.names[0] as string
      if (pipe.decl.op === ':=') scope.vars.set(name, v)
      else {
        const s = this.lookupVar(scope, name)
        if (s === null) throw new Error(`undefined variable ${name}`)
        s.vars.set(name, v)
      }
    }
    return v
  }

  private term (t: Term, dot: unknown, scope: Scope): unknown {
    switch (t.t) {
      case 'lit': return t.value
      case 'pipe': return this.pipeline(t.pipe, dot, scope)
      case 'ident': return this.call(t.name, [], dot, scope)
      case 'field': {
        let v: unknown
        if (t.base === 'dot') v = dot
        else {
          const s = this.lookupVar(scope, t.base)
          if (s === null) throw new Error(`undefined variable ${t.base}`)
          v = s.vars.get(t.base)
        }
        for (const key of t.path) {
          if (isNil(v)) throw new Error(`nil pointer evaluating .${key}`)
          if (!isMap(v)) throw new Error(`can't evaluate field ${key} in a ${kindOf(v)}`)
          v = v[key]
        }
        return v
      }
    }
  }

  private command (cmd: Term[], dot: unknown, scope: Scope, piped: { v: unknown } | undefined): unknown {
    const [head, ...args] = cmd as [Term, ...Term[]]
    if (head.t !== 'ident') {
      if (args.length > 0 || piped !== undefined) throw new Error('a value cannot take arguments')
      return this.term(head, dot, scope)
    }
    const thunks = args.map(a => () => this.term(a, dot, scope))
    if (piped !== undefined) thunks.push(() => piped.v)
    return this.call(head.name, thunks, dot, scope)
  }

  private call (name: string, thunks: Array<() => unknown>, _dot: unknown, _scope: Scope): unknown {
    if (name === 'and' || name === 'or') {
      if (thunks.length === 0) throw new Error(`${name}: no arguments`)
      let v: unknown
      for (const th of thunks) {
        v = th()
        if (name === 'and' ? !truth(v) : truth(v)) return v
      }
      return v
    }
    const a = thunks.map(th => th())
    const arity = (n: number): void => { if (a.length !== n) throw new Error(`${name}: wants ${n} arguments, got ${a.length}`) }
    switch (name) {
      case 'include': arity(2); return this.include(wantString(name, a[0]), a[1])
      case 'default': arity(2); return truth(a[1]) ? a[1] : a[0]
      case 'quote': return a.filter(x => !isNil(x)).map(x => JSON.stringify(strval(x))).join(' ')
      case 'toYaml': arity(1); return toYaml(a[0])
      case 'toString': arity(1); return strval(a[0])
      case 'nindent':
      case 'indent': {
        arity(2)
        const pad = ' '.repeat(wantInt(name, a[0]))
        const text = pad + wantString(name, a[1]).replaceAll('\n', '\n' + pad)
        return name === 'nindent' ? '\n' + text : text
      }
      case 'printf': return sprintf(wantString(name, a[0]), a.slice(1))
      case 'print': return a.map((x, i) => (i > 0 && typeof x !== 'string' && typeof a[i - 1] !== 'string' ? ' ' : '') + strval(x)).join('')
      case 'eq': if (a.length < 2) throw new Error('eq: wants 2 or more arguments'); return a.slice(1).some(b => equal(a[0], b))
      case 'ne': arity(2); return !equal(a[0], a[1])
      case 'lt': arity(2); return compare(name, a[0], a[1]) < 0
      case 'le': arity(2); return compare(name, a[0], a[1]) <= 0
      case 'gt': arity(2); return compare(name, a[0], a[1]) > 0
      case 'ge': arity(2); return compare(name, a[0], a[1]) >= 0
      case 'not': arity(1); return !truth(a[0])
      case 'trunc': { arity(2); const n = wantInt(name, a[0]); const s = wantString(name, a[1]); return n >= 0 ? s.slice(0, n) : s.slice(Math.max(0, s.length + n)) }
      case 'trimSuffix': { arity(2); const suf = wantString(name, a[0]); const s = wantString(name, a[1]); return suf !== '' && s.endsWith(suf) ? s.slice(0, -suf.length) : s }
      case 'replace': arity(3); return wantString(name, a[2]).replaceAll(wantString(name, a[0]), wantString(name, a[1]))
      case 'contains': arity(2); return wantString(name, a[1]).includes(wantString(name, a[0]))
      case 'hasKey': arity(2); if (!isMap(a[0])) throw new Error(`hasKey: expected a map, got ${kindOf(a[0])}`); return Object.hasOwn(a[0], wantString(name, a[1]))
      case 'kindIs': arity(2); return kindOf(a[1]) === wantString(name, a[0])
      case 'join': arity(2); if (!Array.isArray(a[1])) throw new Error('join: expected a list'); return a[1].filter(x => !isNil(x)).map(strval).join(wantString(name, a[0]))
      case 'int':
      case 'int64': arity(1); return toInt64(a[0])
      case 'add': return a.reduce<bigint>((s, x) => s + toInt64(x), 0n)
      case 'div': { arity(2); const d = toInt64(a[1]); if (d === 0n) throw new Error('div: by zero'); return toInt64(a[0]) / d }
      case 'sha256sum': arity(1); return createHash('sha256').update(wantString(name, a[0])).digest('hex')
      case 'b64enc': arity(1); return Buffer.from(wantString(name, a[0])).toString('base64')
      case 'required': arity(2); if (isNil(a[1]) || a[1] === '') throw new TemplateFail(wantString(name, a[0])); return a[1]
      case 'fail': arity(1); throw new TemplateFail(wantString(name, a[0]))
      default: throw new Error(`function "${name}" is outside the subset this renderer supports`)
    }
  }
}

// ---- Helm around it ------------------------------------------------------------

/** Helm's coalescing: maps merge key by key, anything else replaces, null deletes. */
export function mergeValues (base: unknown, over: unknown): unknown {
  if (!isMap(base) || !isMap(over)) return structuredClone(over)
  const out: Dict = structuredClone(base)
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k]
    else out[k] = isMap(out[k]) && isMap(v) ? mergeValues(out[k], v) : structuredClone(v)
  }
  return out
}

export interface RenderOptions {
  /** Values merged over the chart's values.yaml, as `helm -f` / `--set` would. */
  readonly values?: unknown
  readonly releaseName?: string
  readonly namespace?: string
}

export interface Rendered {
  /** The merged values the templates saw. */
  readonly values: Dict
  /** Rendered text per template file (blank ones left out), by file name. */
  readonly files: Map<string, string>
  /** NOTES.txt, rendered. */
  readonly notes: string
  /** Every YAML document of every file, parsed. */
  readonly objects: Dict[]
}

export function loadChartValues (chartDir: string): Dict {
  return parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8'), { version: '1.1' }) as Dict
}

/** Renders the chart in `chartDir` like `helm template`. Throws TemplateFail for `fail`/`required`. */
export function renderChart (chartDir: string, opts: RenderOptions = {}): Rendered {
  const chartMeta = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as Dict
  const chartName = chartMeta.name as string
  const values = mergeValues(loadChartValues(chartDir), opts.values ?? {}) as Dict
  const engine = new Engine()
  const templatesDir = join(chartDir, 'templates')
  const names = readdirSync(templatesDir).filter(f => /\.(ya?ml|tpl|txt)$/.test(f)).sort()
  for (const file of names) {
    const name = `${chartName}/templates/${file}`
    const parsed = parseTemplate(readFileSync(join(templatesDir, file), 'utf8'), name)
    for (const [k, v] of parsed.defines) engine.defines.set(k, v)
    engine.files.set(name, parsed.nodes)
  }
  const top = (file: string): Dict => ({
    Values: values,
    Release: { Name: opts.releaseName ?? 'demo', Namespace: opts.namespace ?? 'default', Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1 },
    Chart: Object.fromEntries(Object.entries(chartMeta).map(([k, v]) => [k.charAt(0).toUpperCase() + k.slice(1), v])),
    Template: { Name: `${chartName}/templates/${file}`, BasePath: `${chartName}/templates` },
    Capabilities: { KubeVersion: { Version: 'v1.30.0', Major: '1', Minor: '30' } },
  })
  const files = new Map<string, string>()
  let notes = ''
  for (const file of names) {
    if (file.startsWith('_')) continue
    const text = engine.execute(engine.files.get(`${chartName}/templates/${file}`) as Node[], top(file))
    if (file === 'NOTES.txt') { notes = text; continue }
    if (text.trim() !== '') files.set(file, text)
  }
  const objects: Dict[] = []
  for (const [file, text] of files) {
    // YAML 1.1 like Kubernetes: an unquoted `off` is a boolean there, and here.
    for (const doc of parseAllDocuments(text, { version: '1.1' })) {
      if (doc.errors.length > 0) throw new Error(`${file}: YAML error: ${doc.errors.map(e => e.message).join('; ')}\n${text}`)
      const obj = doc.toJS() as unknown
      if (obj === null || obj === undefined) continue
      if (!isMap(obj)) throw new Error(`${file}: a document is not a mapping`)
      objects.push(obj)
    }
  }
  return { values, files, notes, objects }
}
