/** The control plane's pure parts: commands from requests, their signal form, which sessions they end, the keys. */
import t from 'tap'
import {
  ControlRequestError, controlKeys, controlKind, decodeControlSignal, encodeControlSignal, issuedBefore, parseControlCommand,
  signalEnds, splitLeaseMember, leaseMember, type ControlCommand,
} from '../../src/core/control.js'
import { loadConfig } from '../../src/core/config.js'
import { keySlot } from '../../src/source/cluster-connection.js'

const limits = { nowMs: 1_700_000_000_000, maxTokenLifetimeMs: 86_400_000 }
const parse = (body: unknown): ControlCommand => parseControlCommand(body, limits)
const SESSION = '0f8fad5b-d9cb-469f-a165-70867728950e'

t.test('commands from request bodies', async t => {
  t.same(parse({ kind: 'disconnect', user: '42' }), { kind: 'disconnect', user: '42' })
  t.same(parse({ kind: 'disconnect', session: SESSION }), { kind: 'disconnect', session: SESSION })
  t.same(parse({ kind: 'revoke', jti: 'abc', exp: 1_700_000_600 }), { kind: 'revoke', jti: 'abc', expMs: 1_700_000_600_000 })
  t.same(parse({ kind: 'revoke', jti: 'abc' }), { kind: 'revoke', jti: 'abc', expMs: limits.nowMs + limits.maxTokenLifetimeMs }, 'no exp: the longest token lifetime')
  t.same(parse({ kind: 'revoke', user: '42' }), { kind: 'revoke', user: '42', beforeMs: limits.nowMs }, 'before defaults to now')
  t.same(parse({ kind: 'revoke', user: '42', before: '2023-11-14T22:00:00Z' }), { kind: 'revoke', user: '42', beforeMs: Date.parse('2023-11-14T22:00:00Z') })
  t.same(parse({ kind: 'revoke', user: '42', before: String(limits.nowMs - 5) }), { kind: 'revoke', user: '42', beforeMs: limits.nowMs - 5 })
})

t.test('bad requests say what to fix', async t => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /JSON object/],
    [[], /JSON object/],
    [{ kind: 'kick', user: '1' }, /`kind` must be/],
    [{ kind: 'disconnect' }, /one of `user` or `session`/],
    [{ kind: 'disconnect', user: '1', session: SESSION }, /one of `user` or `session`/],
    [{ kind: 'disconnect', session: 'abc' }, /session id/],
    [{ kind: 'disconnect', user: 'a\nb' }, /`user` must be/],
    [{ kind: 'disconnect', user: 'x'.repeat(257) }, /`user` must be/],
    [{ kind: 'disconnect', user: '1', jti: 'x' }, /`jti` does not apply to disconnect/],
    [{ kind: 'disconnect', user: '1', extra: 1 }, /`extra` does not apply/],
    [{ kind: 'revoke', jti: 'has space' }, /`jti` must be/],
    [{ kind: 'revoke', jti: 'a', exp: 1.5 }, /whole seconds/],
    [{ kind: 'revoke', jti: 'a', exp: 1_600_000_000 }, /in the past/],
    [{ kind: 'revoke', jti: 'a', before: 'now' }, /`before` goes with `user`/],
    [{ kind: 'revoke', user: '1', exp: 5 }, /`exp` goes with `jti`/],
    [{ kind: 'revoke', user: '1', before: 'tomorrow' }, /`before` must be/],
    [{ kind: 'revoke', user: '1', before: limits.nowMs + 120_000 }, /a minute ahead/],
  ]
  for (const [body, message] of bad) {
    t.throws(() => parse(body), ControlRequestError, JSON.stringify(body))
    t.throws(() => parse(body), { message }, JSON.stringify(body))
  }
})

t.test('a command survives its trip through the control stream; anything else is refused', async t => {
  for (const c of [parse({ kind: 'disconnect', user: '42' }), parse({ kind: 'disconnect', session: SESSION }), parse({ kind: 'revoke', jti: 'j' }), parse({ kind: 'revoke', user: 'u' })]) {
    t.same(decodeControlSignal(encodeControlSignal(c)), c)
  }
  for (const junk of [undefined, '', 'nope', '[]', '{"kind":"revoke"}', '{"kind":"disconnect","user":""}', '{"kind":"revoke","user":"u"}']) {
    t.equal(decodeControlSignal(junk), undefined, String(junk))
  }
  t.equal(controlKind(parse({ kind: 'revoke', user: 'u' })), 'revoke-user')
  t.equal(controlKind(parse({ kind: 'disconnect', session: SESSION })), 'disconnect-session')
})

t.test('which sessions a command ends', async t => {
  const s = { id: SESSION, user: '42', jti: 'j1', issuedAtMs: 1_700_000_000_000 }
  t.ok(signalEnds(parse({ kind: 'disconnect', user: '42' }), s))
  t.notOk(signalEnds(parse({ kind: 'disconnect', user: '43' }), s))
  t.ok(signalEnds(parse({ kind: 'disconnect', session: SESSION }), s))
  t.ok(signalEnds(parse({ kind: 'revoke', jti: 'j1' }), s))
  t.notOk(signalEnds(parse({ kind: 'revoke', jti: 'j2' }), s))
  t.ok(signalEnds({ kind: 'revoke', user: '42', beforeMs: 1_700_000_001_000 }, s), 'issued a second before the cut-off')
  t.notOk(signalEnds({ kind: 'revoke', user: '42', beforeMs: 1_700_000_000_999 }, s), 'issued in the cut-off\'s second: kept (iat has whole seconds)')
  t.ok(signalEnds({ kind: 'revoke', user: '42', beforeMs: 1 }, { ...s, issuedAtMs: undefined }), 'no iat: refused by any cut-off')
  t.notOk(issuedBefore(5000, 5999))
  t.ok(issuedBefore(4000, 5000))
})

t.test('a user\'s keys share a hash slot whatever the prefix or the user hold; lease members split back', async t => {
  for (const prefix of ['sse:', 'a{b}:', 'odd{', '']) {
    for (const user of ['42', 'x}y', '{z}', 'user with spaces']) {
      t.equal(keySlot(controlKeys.before(prefix, user)), keySlot(controlKeys.leases(prefix, user)), `${prefix} ${user}`)
    }
  }
  t.same(splitLeaseMember(leaseMember(SESSION, 'user with spaces')), [SESSION, 'user with spaces'])
  t.same(splitLeaseMember(leaseMember(SESSION, '')), [SESSION, ''])
})

t.test('CONTROL_TOKEN and CONTROL_TOKEN_FILE: one of them, at least 32 characters, never quoted', async t => {
  const secret = 's'.repeat(40)
  t.equal(loadConfig({ CONTROL_TOKEN: secret }).controlToken, secret)
  t.equal(loadConfig({}).controlToken, undefined)
  t.equal(loadConfig({ CONTROL_TOKEN_FILE: '/run/secrets/control' }, { readFile: () => `${secret}\n` }).controlToken, secret, 'one trailing newline stripped')
  t.throws(() => loadConfig({ CONTROL_TOKEN: 'short-secret' }), { message: /CONTROL_TOKEN must hold at least 32 characters/ })
  t.throws(() => loadConfig({ CONTROL_TOKEN: 'short-secret' }), { message: /^(?!.*short-secret)/ }, 'the value is not in the message')
  t.throws(() => loadConfig({ CONTROL_TOKEN: secret, CONTROL_TOKEN_FILE: '/x' }), { message: /both set/ })
  t.throws(() => loadConfig({ CONTROL_TOKEN_FILE: '/nope' }, { readFile: () => { throw Object.assign(new Error('x'), { code: 'ENOENT' }) } }), { message: /CONTROL_TOKEN_FILE names \/nope, which does not exist/ })
  t.throws(() => loadConfig({ CONTROL_TOKEN_FILE: '/short' }, { readFile: () => 'short\n' }), { message: /CONTROL_TOKEN \(from CONTROL_TOKEN_FILE \/short\) must hold at least 32 characters/ })
})
