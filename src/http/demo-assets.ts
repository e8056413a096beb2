/**
 * The demo's files: the page (src/demo/index.html, a template), its style
 * sheet and its browser modules (src/demo/*.ts compiled by
 * tsconfig.demo.json), and the client helper they import.
 *
 * Where they are: run from dist/ everything sits next to this module's
 * folder (the build copies the HTML and CSS to dist/src/demo/); run from
 * source (tests), the HTML and CSS are the ones in src/demo/ and the
 * compiled modules are taken from the build in dist/.
 */
import { readFile } from 'node:fs/promises'

/** One file the route serves. */
export interface DemoAsset {
  /** Path under the route, e.g. `/demo/demo.js`. */
  readonly path: string
  readonly contentType: string
  /** Where to look, in order; the first that exists is served. */
  readonly candidates: readonly URL[]
}

const JS = 'text/javascript; charset=utf-8'

function compiled (file: string): URL[] {
  return [new URL(`../${file}`, import.meta.url), new URL(`../../dist/src/${file}`, import.meta.url)]
}

/** The page template. */
export const DEMO_PAGE: DemoAsset = { path: '/demo', contentType: 'text/html; charset=utf-8', candidates: [new URL('../demo/index.html', import.meta.url)] }

/** The files the page loads, besides the page itself. */
export const DEMO_FILES: readonly DemoAsset[] = [
  { path: '/demo/demo.css', contentType: 'text/css; charset=utf-8', candidates: [new URL('../demo/demo.css', import.meta.url)] },
  { path: '/demo/demo.js', contentType: JS, candidates: compiled('demo/demo.js') },
  { path: '/demo/connect-form.js', contentType: JS, candidates: compiled('demo/connect-form.js') },
  { path: '/client/sse-client.js', contentType: JS, candidates: compiled('client/sse-client.js') },
]

/** The text of an asset, or undefined when none of its candidates exists (not built). */
export async function readDemoAsset (asset: DemoAsset): Promise<string | undefined> {
  for (const file of asset.candidates) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch {
      continue
    }
    // The source map points at TypeScript sources the gateway does not serve.
    return asset.contentType === JS ? text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n') : text
  }
  return undefined
}

/** What the page template is filled with. */
export interface DemoPageValues {
  /** Sections kept (`true`: the `if:` part, `false`: the `else:` part), by name. */
  readonly sections: Readonly<Record<string, boolean>>
  /** Text for `{{name}}`, HTML-escaped here. */
  readonly text: Readonly<Record<string, string>>
  /** JSON for `{{name}}` inside a `<script type="application/json">`. */
  readonly json: Readonly<Record<string, unknown>>
}

const SECTION = /<!-- if:([a-z-]+) -->\n?([\s\S]*?)(?:[ \t]*<!-- else:\1 -->\n?([\s\S]*?))?[ \t]*<!-- end:\1 -->\n?/g
const PLACEHOLDER = /\{\{(\w+)\}\}/g

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`)
}

/** JSON safe inside a `<script>` element: no `</script>`, no `<!--`. */
function scriptJson (value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')
}

/**
 * Fills the page template once; returns the page for a nonce. Every name in
 * the template must be given (and `nonce` is left to the returned function):
 * a template and a route that disagree fail here, not in a browser.
 */
export function renderDemoPage (template: string, values: DemoPageValues): (nonce: string) => string {
  const filled = template
    .replace(SECTION, (_all, name: string, then: string, otherwise: string | undefined) => {
      const keep = values.sections[name]
      if (keep === undefined) throw new Error(`demo page: no value for section ${name}`)
      return keep ? then : otherwise ?? ''
    })
    .replace(PLACEHOLDER, (all, name: string) => {
      if (name === 'nonce') return all
      if (name in values.text) return escapeHtml(values.text[name] as string)
      if (name in values.json) return scriptJson(values.json[name])
      throw new Error(`demo page: no value for {{${name}}}`)
    })
  if (/<!-- (?:if|else|end):/.test(filled)) throw new Error('demo page: an unbalanced section')
  // The nonce changes per response: split once, join per request.
  const parts = filled.split('{{nonce}}')
  return nonce => parts.join(escapeHtml(nonce))
}
