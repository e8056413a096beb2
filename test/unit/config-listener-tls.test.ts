/**
 * The public listener's TLS and HTTP/2 settings (issue 15): TLS_CERT_FILE
 * and TLS_KEY_FILE read and checked as a pair at start-up, each naming
 * itself when it is wrong and never echoing a key; HTTP2_CLEARTEXT refused
 * beside them; and the HTTP/2 session timeout kept above the heartbeat.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/core/config.js'
import { ConfigError } from '../../src/core/errors.js'
import { http2SessionTimeoutMs, listenerProtocolOptions } from '../../src/http/public-listener.js'
import { makeTestCa } from '../helpers/tls.js'

const ca = makeTestCa()
t.teardown(() => { ca.remove() })

function refused (env: Record<string, string>, pattern: RegExp): void {
  let err: unknown
  try { loadConfig(env) } catch (e) { err = e }
  t.type(err, ConfigError, `refused: ${JSON.stringify(Object.keys(env))}`)
  t.match((err as Error).message, pattern)
  t.notMatch((err as Error).message, /PRIVATE KEY-----|[A-Za-z0-9+/=]{60}/, 'no key or certificate text in the message')
}

t.test('unset: plain HTTP/1.1, no TLS', async t => {
  const c = loadConfig({})
  t.equal(c.listenerTls, undefined)
  t.equal(c.http2Cleartext, false)
  t.same(listenerProtocolOptions(c), {}, 'the HTTP/1.1 listener as before')
})

t.test('a matching pair: read at start-up, HTTPS with HTTP/2 and HTTP/1.1 by ALPN', async t => {
  const c = loadConfig({ TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.serverKey })
  t.equal(c.listenerTls?.certFile, ca.serverCert)
  t.equal(c.listenerTls?.cert, readFileSync(ca.serverCert, 'utf8'))
  t.ok((c.listenerTls?.notAfterMs ?? 0) > Date.now(), 'its expiry is known')
  t.match(listenerProtocolOptions(c), { http2: true, https: { allowHTTP1: true } })
  // A chain (server certificate, then the CA) is taken as it is.
  const chain = join(ca.dir, 'chain.crt')
  writeFileSync(chain, readFileSync(ca.serverCert, 'utf8') + readFileSync(ca.caCert, 'utf8'))
  t.ok(loadConfig({ TLS_CERT_FILE: chain, TLS_KEY_FILE: ca.serverKey }).listenerTls, 'a certificate chain file')
})

t.test('HTTP2_CLEARTEXT=true: h2c with prior knowledge', async t => {
  const c = loadConfig({ HTTP2_CLEARTEXT: 'true' })
  t.equal(c.http2Cleartext, true)
  t.same(listenerProtocolOptions(c), { http2: true, http2SessionTimeout: http2SessionTimeoutMs(c.heartbeatIntervalMs), forceCloseConnections: false })
})

t.test('bad settings name the variable and say what to do', async t => {
  refused({ TLS_CERT_FILE: ca.serverCert }, /TLS_CERT_FILE is set without TLS_KEY_FILE/)
  refused({ TLS_KEY_FILE: ca.serverKey }, /TLS_KEY_FILE is set without TLS_CERT_FILE/)
  refused({ TLS_CERT_FILE: '/nonexistent.crt', TLS_KEY_FILE: ca.serverKey }, /TLS_CERT_FILE names \/nonexistent\.crt, which does not exist/)
  refused({ TLS_CERT_FILE: ca.serverKey, TLS_KEY_FILE: ca.serverKey }, /TLS_CERT_FILE .* holds no PEM certificate/)
  refused({ TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.serverCert }, /TLS_KEY_FILE .* no readable PEM private key/)
  refused({ TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.clientKey }, /TLS_KEY_FILE .* not the key of the certificate in TLS_CERT_FILE/)
  refused({ TLS_CERT_FILE: ca.serverCert, TLS_KEY_FILE: ca.serverKey, HTTP2_CLEARTEXT: 'true' }, /HTTP2_CLEARTEXT=true is set with TLS_CERT_FILE and TLS_KEY_FILE/)
  refused({ HTTP2_CLEARTEXT: 'maybe' }, /HTTP2_CLEARTEXT must be true or false/)
})

t.test('the HTTP/2 session timeout stays above three heartbeats (an open stream\'s connection is never idle)', async t => {
  for (const hb of [1000, 15000, 25000, 60000, 300000]) {
    t.ok(http2SessionTimeoutMs(hb) > 3 * hb, `heartbeat ${hb} ms: timeout ${http2SessionTimeoutMs(hb)} ms`)
    t.ok(http2SessionTimeoutMs(hb) >= 72000, 'never below Fastify\'s default')
  }
})
