/**
 * Where a token is found: header, query parameter, cookie, in that order,
 * only in the places a route accepts, and a malformed credential is told
 * apart from none.
 */
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { ANY_TOKEN_SOURCE, HEADER_ONLY, findToken } from '../../src/http/token-source.js'

interface Parts {
  authorization?: string
  query?: Record<string, unknown>
  cookies?: Record<string, string | undefined>
}
const request = (parts: Parts): FastifyRequest => ({
  headers: parts.authorization === undefined ? {} : { authorization: parts.authorization },
  query: parts.query ?? {},
  cookies: parts.cookies ?? {},
}) as unknown as FastifyRequest

const COOKIE = 'sse_token'
const any = (parts: Parts): ReturnType<typeof findToken> => findToken(request(parts), ANY_TOKEN_SOURCE, COOKIE)

t.test('Authorization: Bearer', async t => {
  t.same(any({ authorization: 'Bearer abc.def.ghi' }), { token: 'abc.def.ghi', via: 'header' })
  t.same(any({ authorization: 'bearer   abc  ' }), { token: 'abc', via: 'header' }, 'scheme in any case, spaces around')
  t.same(any({ authorization: 'Basic dXNlcjpwYXNz' }), { token: '', via: 'header' }, 'another scheme: malformed, not "no token"')
  t.same(any({ authorization: 'Bearer' }), { token: '', via: 'header' }, 'no token after the scheme: malformed')
  t.same(any({ authorization: 'Bearer a b' }), { token: '', via: 'header' }, 'two tokens: malformed')
  t.equal(any({ authorization: '' }), undefined, 'an empty header is no token')
})

t.test('the token query parameter', async t => {
  t.same(any({ query: { token: 'q.t.k' } }), { token: 'q.t.k', via: 'query' })
  t.same(any({ query: { token: ['a', 'b'] } }), { token: '', via: 'query' }, 'twice: malformed')
  t.equal(any({ query: { token: '' } }), undefined, 'empty: no token')
  t.equal(any({ query: { other: 'x' } }), undefined)
})

t.test('the cookie', async t => {
  t.same(any({ cookies: { [COOKIE]: 'c.k.e' } }), { token: 'c.k.e', via: 'cookie' })
  t.equal(any({ cookies: { other: 'c.k.e' } }), undefined, 'only the configured cookie name')
  t.same(findToken(request({ cookies: { custom: 'x' } }), ANY_TOKEN_SOURCE, 'custom'), { token: 'x', via: 'cookie' }, 'TOKEN_COOKIE names it')
  t.equal(any({ cookies: { [COOKIE]: '' } }), undefined, 'empty: no token')
})

t.test('order: header, then query, then cookie', async t => {
  t.same(any({ authorization: 'Bearer h', query: { token: 'q' }, cookies: { [COOKIE]: 'c' } }), { token: 'h', via: 'header' })
  t.same(any({ query: { token: 'q' }, cookies: { [COOKIE]: 'c' } }), { token: 'q', via: 'query' })
  t.same(any({ authorization: 'Basic x', query: { token: 'q' } }), { token: '', via: 'header' }, 'a malformed header is not skipped for the query')
})

t.test('a route that takes the header only ignores the query and the cookie', async t => {
  const header = (parts: Parts): ReturnType<typeof findToken> => findToken(request(parts), HEADER_ONLY, COOKIE)
  t.same(header({ authorization: 'Bearer h' }), { token: 'h', via: 'header' })
  t.same(header({ authorization: 'Token h' }), { token: '', via: 'header' })
  t.equal(header({ query: { token: 'q' } }), undefined, 'query: no token for this route')
  t.equal(header({ cookies: { [COOKIE]: 'c' } }), undefined, 'cookie: no token for this route')
})

t.test('a request with no query or cookie parser output has no token', async t => {
  t.equal(findToken({ headers: {} } as unknown as FastifyRequest, ANY_TOKEN_SOURCE, COOKIE), undefined)
})
