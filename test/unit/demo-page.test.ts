/**
 * The demo page template (src/demo/index.html) as the route fills it
 * (src/http/demo-assets.ts): for every combination of settings, the parts
 * that fit them, every name filled in and escaped, a new nonce per page.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import { renderDemoPage } from '../../src/http/demo-assets.js'

const template = readFileSync(new URL('../../src/demo/index.html', import.meta.url), 'utf8')

function render (tokenEndpoint: boolean, publish: boolean, publishClaim = 'publish'): (nonce: string) => string {
  return renderDemoPage(template, {
    sections: { 'token-endpoint': tokenEndpoint, publish },
    text: { publishClaim },
    json: { config: { tokenEndpoint, publishEnabled: publish, maxTopics: 16 } },
  })
}

t.test('each combination of settings gets its own parts, all filled in', async t => {
  for (const tokenEndpoint of [true, false]) {
    for (const publish of [true, false]) {
      const what = `token endpoint ${String(tokenEndpoint)}, publish ${String(publish)}`
      const html = render(tokenEndpoint, publish)('bm9uY2U=')
      t.notMatch(html, /\{\{|\}\}|<!-- (?:if|else|end):/, `${what}: nothing left of the template`)
      t.equal(/<input id="sub" name="sub"/.test(html), tokenEndpoint, `${what}: a name box only with demo tokens`)
      t.equal(/<textarea id="token"/.test(html), !tokenEndpoint, `${what}: a token box only without`)
      t.equal(html.match(/id="(?:sub|token)"/g)?.length, 2, `${what}: both ids there for the script, one of them hidden`)
      t.equal(/<form id="publish-form"/.test(html), publish, `${what}: the publish form only with POST /publish`)
      t.equal(html.match(/<datalist id="channels">/g)?.length, 1, `${what}: one channel list`)
      const config = /<script type="application\/json" id="demo-config" nonce="bm9uY2U=">([^<]*)<\/script>/.exec(html)?.[1]
      t.same(JSON.parse(config ?? 'null'), { tokenEndpoint, publishEnabled: publish, maxTopics: 16 }, `${what}: the config`)
    }
  }
})

t.test('values are escaped; the nonce changes per page', async t => {
  const page = render(false, true, '"><script>x</script>')
  t.notMatch(page('a'), /"><script>x/, 'a claim name cannot break out of the HTML')
  t.match(page('a'), /<code>&#34;&#62;&#60;script&#62;x&#60;\/script&#62;<\/code>/)
  t.match(page('first'), /<script type="module" src="demo\/demo\.js" nonce="first">/)
  t.match(page('second'), /<script type="module" src="demo\/demo\.js" nonce="second">/)
  const json = renderDemoPage('<script type="application/json">{{config}}</script>', { sections: {}, text: {}, json: { config: { a: '</script><!--' } } })('n')
  t.equal(json, '<script type="application/json">{"a":"\\u003c/script\\u003e\\u003c!--"}</script>', 'JSON cannot end its script element')
})

t.test('a template and a route that disagree fail at once', async t => {
  t.throws(() => renderDemoPage('{{missing}}', { sections: {}, text: {}, json: {} }), /no value for \{\{missing\}\}/)
  t.throws(() => renderDemoPage('<!-- if:x -->a<!-- end:x -->', { sections: {}, text: {}, json: {} }), /no value for section x/)
  t.throws(() => renderDemoPage('<!-- if:x -->a', { sections: { x: true }, text: {}, json: {} }), /unbalanced section/)
})
