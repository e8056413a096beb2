/**
 * Regression: `TRUST_PROXY=true` trusts every hop. Behind the repository's
 * own nginx and HAProxy configs (deploy/local), with TRUST_PROXY as
 * deploy/local/run.sh sets it, a client cannot choose the address that
 * CONNECT_RATE_PER_IP counts by sending its own X-Forwarded-For.
 */
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/process.js'
import { sleep } from '../helpers/sse.js'

t.setTimeout(60000)
const deploy = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy')
const hasBin = (name: string): boolean => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0

/** The value deploy/local/run.sh exports. */
function deployTrustProxy (): string {
  const m = /^export TRUST_PROXY=(\S+)$/m.exec(readFileSync(join(deploy, 'local', 'run.sh'), 'utf8'))
  if (m === null) throw new Error('deploy/local/run.sh sets no TRUST_PROXY')
  return m[1] as string
}

/** Status of GET /events through `url` with a spoofed X-Forwarded-For; the stream is cut at its headers. */
async function connectStatus (url: string, spoofed: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request(`${url}/events?topic=pub`, { headers: { 'x-forwarded-for': spoofed, accept: 'text/event-stream' } }, res => {
      resolve(res.statusCode ?? 0)
      res.destroy()
    })
    req.on('error', reject)
    req.end()
  })
}

async function waitUp (url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>(resolve => {
      const req = request(url, res => { res.resume(); resolve(true) })
      req.on('error', () => { resolve(false) })
      req.end()
    })
    if (up) return
    await sleep(100)
  }
  throw new Error(`nothing answers at ${url}`)
}

interface Proxy { url: string, proc: ChildProcess, dir: string }

/**
 * SIGTERM, then wait: nginx's master ends its workers on TERM (a SIGKILL
 * would leave them running, and listening). SIGKILL only if it hangs.
 */
async function stopProxy (proxy: Proxy): Promise<void> {
  const { proc } = proxy
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>(resolve => proc.once('exit', () => { resolve() }))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => { proc.kill('SIGKILL') }, 5000)
  await exited
  clearTimeout(timer)
}

async function startNginx (gw: TestGateway): Promise<Proxy> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-trust-nginx-'))
  mkdirSync(join(dir, 'tmp'))
  const port = await freePort()
  const gwPort = new URL(gw.url).port
  const conf = readFileSync(join(deploy, 'local', 'nginx.conf'), 'utf8')
    .replace(/server 127\.0\.0\.1:8081[^;]*;/, `server 127.0.0.1:${gwPort};`)
    .replace(/\s*server 127\.0\.0\.1:8082[^;]*;/, '')
    .replace('listen 127.0.0.1:8080;', `listen 127.0.0.1:${port};`)
    .replace('../nginx/sse-locations.conf', join(deploy, 'nginx', 'sse-locations.conf'))
  writeFileSync(join(dir, 'nginx.conf'), conf)
  const proc = spawn('nginx', ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', 'stderr'], { stdio: 'ignore' })
  const url = `http://127.0.0.1:${port}`
  await waitUp(url)
  return { url, proc, dir }
}

async function startHaproxy (gw: TestGateway): Promise<Proxy> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-trust-haproxy-'))
  const port = await freePort()
  const conf = readFileSync(join(deploy, 'local', 'haproxy.cfg'), 'utf8')
    .replace('bind 127.0.0.1:8080', `bind 127.0.0.1:${port}`)
    .replace(/server a 127\.0\.0\.1:8081 check port 9091/, `server a 127.0.0.1:${new URL(gw.url).port} check port ${new URL(gw.internalUrl).port}`)
    .replace(/\s*server b 127\.0\.0\.1:8082 check port 9092/, '')
  writeFileSync(join(dir, 'haproxy.cfg'), conf)
  const proc = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' })
  const url = `http://127.0.0.1:${port}`
  await waitUp(url)
  // Until its first health checks pass, HAProxy has no server to send to.
  for (let i = 0; i < 50 && await connectStatus(url, '198.51.100.1') === 503; i++) await sleep(200)
  // That connect counted against this client's rate: let the window pass.
  await sleep(1100)
  return { url, proc, dir }
}

for (const [name, start, bin] of [['nginx', startNginx, 'nginx'], ['HAProxy', startHaproxy, 'haproxy']] as const) {
  t.test(`TRUST_PROXY=true trusts every hop: behind ${name} with the deploy config, a spoofed X-Forwarded-For does not escape CONNECT_RATE_PER_IP`, { skip: hasBin(bin) ? false : `${bin} is not installed (.ci/run installs it)` }, async t => {
    const gw = await startGateway({ PUBLIC_TOPICS: 'pub', CONNECT_RATE_PER_IP: '2', TRUST_PROXY: deployTrustProxy() })
    t.teardown(() => gw.close())
    const proxy = await start(gw)
    t.teardown(async () => {
      await stopProxy(proxy)
      rmSync(proxy.dir, { recursive: true, force: true })
    })
    // All at once: they land in one or two of the limiter's one-second windows.
    const began = Date.now()
    const statuses = await Promise.all(Array.from({ length: 8 }, async (_, i) => await connectStatus(proxy.url, `203.0.113.${i + 1}`)))
    t.comment(`8 connects in ${Date.now() - began} ms`)
    // The limiter's one-second windows are not aligned with this loop: 8
    // connects may span two of them, so at most 2 x 2 get through.
    const open = statuses.filter(s => s === 200).length
    t.ok(open >= 2 && open <= 4, `2 streams a second from one client, whatever its X-Forwarded-For (${statuses.join(' ')})`)
    t.equal(statuses.filter(s => s === 429).length, 8 - open, 'the rest refused with 429')
    const refused = gw.logs.map(l => JSON.parse(l) as { msg?: string, req?: { remoteAddress?: string } }).filter(l => l.msg === 'request refused')
    t.ok(refused.length > 0 && refused.every(l => l.req?.remoteAddress === '127.0.0.1'), 'logged with the real client address, not a spoofed one')
  })
}

t.test('TRUST_PROXY: the proxies\' addresses are trusted, nothing else', async t => {
  const gw = await startGateway({ PUBLIC_TOPICS: 'pub', CONNECT_RATE_PER_IP: '2', TRUST_PROXY: '10.0.0.0/8' })
  t.teardown(() => gw.close())
  // The peer (127.0.0.1) is not a trusted proxy: its X-Forwarded-For is ignored.
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push(await connectStatus(gw.url, `203.0.113.${i + 1}`))
  const open = statuses.filter(s => s === 200).length
  t.ok(open >= 2 && open <= 3 && statuses.filter(s => s === 429).length === 4 - open, `a direct client cannot spread itself over spoofed addresses (${statuses.join(' ')})`)
})

t.test('TRUST_PROXY=true with CONNECT_RATE_PER_IP warns at start-up that it limits nothing', async t => {
  const gw = await startGateway({ PUBLIC_TOPICS: 'pub', CONNECT_RATE_PER_IP: '2', TRUST_PROXY: 'true' })
  t.teardown(() => gw.close())
  t.ok(gw.logs.some(l => l.includes('TRUST_PROXY=true') && l.includes('"level":40')), 'one warning')
})
