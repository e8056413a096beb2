/**
 * Static checks of deploy/: the load balancer configs keep SSE streams
 * unbuffered and open, the local example stays on loopback and agrees with
 * itself on ports, the Prometheus configs parse and the alert rules use
 * metrics the gateway really exports (names read from src/metrics.ts).
 * Where nginx, haproxy or promtool are installed, they check their files too.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { parse as parseYaml } from 'yaml'
import { SETTINGS } from '../../src/core/config.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const deploy = join(root, 'deploy')
const read = (p: string): string => readFileSync(join(deploy, p), 'utf8')
const settingDefault = (name: string): number => Number((SETTINGS as ReadonlyArray<{ env: string, default?: string }>).find(s => s.env === name)?.default)
const HEARTBEAT_S = settingDefault('HEARTBEAT_INTERVAL_MS') / 1000
const hasBin = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0

type Obj = Record<string, any>

// ---- the local example's ports, as run.sh sets them ---------------------------
const runSh = read('local/run.sh')
const shVar = (name: string): number => {
  const m = new RegExp(`\\b${name}=(\\d+)`).exec(runSh)
  if (m === null) throw new Error(`run.sh does not set ${name}`)
  return Number(m[1])
}
const ports = {
  lb: shVar('LB_PORT'),
  a: shVar('A_PORT'),
  aInternal: shVar('A_INTERNAL'),
  b: shVar('B_PORT'),
  bInternal: shVar('B_INTERNAL'),
  redis: shVar('REDIS_PORT'),
}

// ---- nginx ------------------------------------------------------------------------
/** Directives as [name, args], comments dropped (good enough for flat files). */
function nginxDirectives (text: string): Array<[string, string]> {
  const body = text.split('\n').map(l => l.replace(/(^|\s)#.*$/, '')).join('\n')
  return [...body.matchAll(/([a-z_]+)\s+([^;{}]*);/g)].map(m => [m[1] as string, (m[2] as string).trim()])
}
const seconds = (v: string | undefined): number => {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(v ?? '')
  if (m === null) return NaN
  return Number(m[1]) * ({ ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? 's'] as number)
}

t.test('nginx: the SSE location does not buffer and keeps streams open', async t => {
  const d = new Map(nginxDirectives(read('nginx/sse-locations.conf')))
  t.equal(d.get('proxy_buffering'), 'off', 'proxy_buffering off')
  t.equal(d.get('proxy_cache'), 'off', 'proxy_cache off')
  t.equal(d.get('gzip'), 'off', 'gzip off')
  t.equal(d.get('proxy_http_version'), '1.1')
  t.match(read('nginx/sse-locations.conf'), /proxy_set_header Connection "";/, 'no Connection: close to the replicas')
  for (const k of ['proxy_read_timeout', 'proxy_send_timeout']) {
    const s = seconds(d.get(k))
    t.ok(s >= 3600 && s > 4 * HEARTBEAT_S, `${k} ${String(d.get(k))} is long`)
  }
  t.match(read('nginx/sse-locations.conf'), /location = \/events\s*\{/, 'only /events is proxied')
})

t.test('nginx: local and compose configs', async t => {
  for (const [file, servers, include] of [
    ['local/nginx.conf', [`127.0.0.1:${ports.a}`, `127.0.0.1:${ports.b}`], resolve(deploy, 'local', '../nginx/sse-locations.conf')],
    ['compose/nginx.conf', [`gateway-a:${settingDefault('PORT')}`, `gateway-b:${settingDefault('PORT')}`], '/etc/nginx/sse-locations.conf'],
  ] as const) {
    const text = read(file)
    const ds = nginxDirectives(text)
    const upstream = ds.filter(([k]) => k === 'server').map(([, v]) => v.split(/\s+/)[0])
    t.same(upstream, servers, `${file}: upstream is the two replicas' public ports`)
    t.match(text, /least_conn;/, `${file}: balances on open connections`)
    const inc = ds.find(([k]) => k === 'include')?.[1] as string
    t.ok(inc === include || resolve(deploy, 'local', inc) === include, `${file}: includes the shared SSE location`)
    for (const [k, v] of ds.filter(([k]) => k === 'log_format')) {
      t.notMatch(v, /\$(request|request_uri|args|query_string|arg_token)\b/, `${file}: ${k} leaves out query strings (tokens)`)
    }
    if (file.startsWith('local')) {
      t.same(ds.filter(([k]) => k === 'listen').map(([, v]) => v), [`127.0.0.1:${ports.lb}`], `${file}: listens on loopback`)
    }
  }
})

t.test('nginx -t accepts the configs', { skip: hasBin('nginx') ? false : 'nginx not installed' }, async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sse-nginx-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'tmp'))
  const r = spawnSync('nginx', ['-t', '-q', '-p', `${dir}/`, '-c', join(deploy, 'local/nginx.conf'), '-e', 'stderr'], { encoding: 'utf8' })
  t.equal(r.status, 0, `local/nginx.conf: ${r.stderr}`)
  // The compose one, with its container paths and service names made local.
  const composeConf = read('compose/nginx.conf')
    .replace('/etc/nginx/sse-locations.conf', join(deploy, 'nginx/sse-locations.conf'))
    .replace(/gateway-[ab]:/g, '127.0.0.1:')
    .replace('/tmp/nginx.pid', join(dir, 'nginx.pid'))
    .replace('/dev/stdout', join(dir, 'access.log'))
  writeFileSync(join(dir, 'compose.conf'), composeConf)
  const c = spawnSync('nginx', ['-t', '-q', '-p', `${dir}/`, '-c', join(dir, 'compose.conf'), '-e', 'stderr'], { encoding: 'utf8' })
  t.equal(c.status, 0, `compose/nginx.conf: ${c.stderr}`)
})

// ---- HAProxy ------------------------------------------------------------------------
t.test('HAProxy: long inactivity timeouts, readiness checks on the internal ports', async t => {
  const text = read('local/haproxy.cfg').split('\n').map(l => l.replace(/(^|\s)#.*$/, '').trim()).filter(Boolean)
  const timeout = (name: string): number => seconds(text.find(l => l.startsWith(`timeout ${name} `))?.split(/\s+/)[2])
  for (const k of ['client', 'server']) t.ok(timeout(k) >= 3600 && timeout(k) > 4 * HEARTBEAT_S, `timeout ${k} is long (${timeout(k)} s)`)
  t.ok(text.includes('mode http'))
  t.ok(text.includes('balance leastconn'), 'balances on open connections')
  t.ok(text.includes('option httpchk GET /readyz'), 'health checks on /readyz')
  const servers = text.filter(l => l.startsWith('server '))
  t.same(servers.map(l => /(\S+:\d+).*check port (\d+)/.exec(l)?.slice(1)), [
    [`127.0.0.1:${ports.a}`, String(ports.aInternal)],
    [`127.0.0.1:${ports.b}`, String(ports.bInternal)],
  ], 'public ports for traffic, internal ports for checks')
  t.ok(text.includes(`bind 127.0.0.1:${ports.lb}`), 'binds loopback')
  const logFormat = text.find(l => l.startsWith('log-format')) ?? ''
  t.ok(logFormat !== '' && !/%(r|HU|HQ)\b/.test(logFormat), 'log-format leaves out query strings (tokens)')
  t.notOk(text.some(l => /^compression\b/.test(l)), 'no compression')
})

t.test('haproxy -c accepts the config', { skip: hasBin('haproxy') ? false : 'haproxy not installed' }, async t => {
  const r = spawnSync('haproxy', ['-c', '-q', '-f', join(deploy, 'local/haproxy.cfg')], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
})

// ---- run.sh -------------------------------------------------------------------------------
t.test('run.sh: loopback only, Redis with AOF and no snapshots, stops what it starts', async t => {
  t.equal(spawnSync('bash', ['-n', join(deploy, 'local/run.sh')]).status, 0, 'bash -n')
  t.match(runSh, /^set -euo pipefail$/m)
  t.match(runSh, /redis-server --bind 127\.0\.0\.1 --port "\$REDIS_PORT"[^\n]*\\\n\s*--save "" --appendonly yes/, 'redis-server: loopback, --save "", --appendonly yes')
  t.match(runSh, /export HOST=127\.0\.0\.1 INTERNAL_HOST=127\.0\.0\.1/, 'replicas bind loopback')
  t.match(runSh, /--web\.listen-address="127\.0\.0\.1:/, 'Prometheus binds loopback')
  t.match(runSh, /trap cleanup EXIT/, 'cleans up on exit')
  t.notMatch(runSh, /pkill|killall/, 'stops processes by PID only')
  t.ok(runSh.includes('"http://127.0.0.1:$A_INTERNAL/readyz"'), 'waits for readiness')
  t.ok((statSync(join(deploy, 'local/run.sh')).mode & 0o100) !== 0, 'executable')
})

// ---- Prometheus -------------------------------------------------------------------------
/** Metric names the gateway exports, read from src/metrics.ts, plus prom-client's default ones under its prefix. */
async function exportedMetrics (): Promise<Set<string>> {
  const src = readFileSync(join(root, 'src/metrics.ts'), 'utf8')
  const prefix = /const p = '([a-z_]+)'/.exec(src)?.[1] ?? ''
  const names = new Set<string>()
  for (const chunk of src.split(/new (?=(?:Counter|Gauge|Histogram|Summary)\s*(?:<[^>]*>)?\s*\()/).slice(1)) {
    const type = /^(\w+)/.exec(chunk)?.[1]
    const m = /name:\s*(?:`\$\{p\}([a-z0-9_]+)`|'([a-z0-9_]+)')/.exec(chunk)
    if (m === null) continue
    const name = m[1] !== undefined ? prefix + m[1] : m[2] as string
    names.add(name)
    if (type === 'Histogram' || type === 'Summary') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s)
  }
  if (/collectDefaultMetrics\(/.test(src)) {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry, prefix })
    for (const m of await registry.getMetricsAsJSON()) {
      names.add(m.name)
      if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s)
    }
  }
  return names
}

/** Metric names in a PromQL expression. */
function metricNames (expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\[[^\]]*\]/g, '')
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])
  return [...stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)]
    .filter(m => m[2] === undefined && !keywords.has((m[1] as string).toLowerCase()))
    .map(m => m[1] as string)
}

/** Metrics from outside the gateway that rules may use. */
const EXTERNAL = new Set(['up', 'kube_pod_status_ready'])

t.test('Prometheus scrape configs point at the internal ports', async t => {
  const local = parseYaml(read('prometheus/prometheus.yml')) as Obj
  const compose = parseYaml(read('compose/prometheus.yml')) as Obj
  for (const [name, cfg, targets, dir] of [
    ['local', local, [`127.0.0.1:${ports.aInternal}`, `127.0.0.1:${ports.bInternal}`], 'prometheus'],
    ['compose', compose, [`gateway-a:${settingDefault('INTERNAL_PORT')}`, `gateway-b:${settingDefault('INTERNAL_PORT')}`], 'compose'],
  ] as const) {
    const job = (cfg.scrape_configs as Obj[]).find(j => j.job_name === 'sse-gateway') as Obj
    t.ok(job, `${name}: job sse-gateway`)
    t.equal(job.metrics_path ?? '/metrics', '/metrics')
    t.same(job.static_configs.flatMap((s: Obj) => s.targets), targets, `${name}: scrapes each replica's internal port`)
    for (const f of cfg.rule_files as string[]) {
      const path = name === 'compose' ? join(deploy, 'prometheus', f) : join(deploy, dir, f)
      t.ok(existsSync(path), `${name}: rule file ${f} exists`)
    }
  }
})

t.test('alert rules: well formed, and every metric they use exists', async t => {
  const exported = await exportedMetrics()
  t.ok(exported.has('sse_gateway_connections_open'), 'metric names read from src/metrics.ts')
  const doc = parseYaml(read('prometheus/alerts.yml')) as Obj
  const rules = (doc.groups as Obj[]).flatMap(g => g.rules as Obj[])
  const used = new Set<string>()
  for (const r of rules) {
    t.match(r.alert, /^SSEGateway[A-Za-z]+$/, `alert name ${String(r.alert)}`)
    t.type(r.expr, 'string')
    t.ok(['critical', 'warning', 'info'].includes(r.labels?.severity), `${String(r.alert)}: severity`)
    t.type(r.annotations?.summary, 'string', `${String(r.alert)}: summary`)
    const names = metricNames(r.expr)
    t.ok(names.length > 0, `${String(r.alert)}: uses a metric`)
    for (const n of names) {
      used.add(n)
      t.ok(exported.has(n) || EXTERNAL.has(n), `${String(r.alert)}: ${n} exists`)
    }
  }
  t.equal(new Set(rules.map(r => r.alert)).size, rules.length, 'alert names are unique')
  // What the operations issue asks to be alerted on.
  for (const [what, metric] of [
    ['replica down', 'up'],
    ['replica not ready', 'kube_pod_status_ready'],
    ['Redis reader errors', 'sse_gateway_redis_reader_errors_total'],
    ['gap rate', 'sse_gateway_gaps_total'],
    ['slow-client closes', 'sse_gateway_slow_client_closes_total'],
    ['connections near the limit', 'sse_gateway_connections_open'],
  ]) t.ok(used.has(metric as string), `an alert for ${what} (${metric})`)
  const near = rules.find(r => r.alert === 'SSEGatewayConnectionsNearLimit') as Obj
  t.match(near.expr, new RegExp(`\\b${settingDefault('MAX_CONNECTIONS')}\\b`), 'the limit in the rule is MAX_CONNECTIONS\' default')
  t.same(metricNames('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m]))) > 0.8 * y'), ['x_bucket', 'y'], 'metricNames reads PromQL')
})

t.test('promtool accepts the configs and the rules pass their tests', { skip: hasBin('promtool') ? false : 'promtool not installed' }, async t => {
  const config = spawnSync('promtool', ['check', 'config', join(deploy, 'prometheus/prometheus.yml')], { encoding: 'utf8' })
  t.equal(config.status, 0, config.stdout + config.stderr)
  const tests = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: join(deploy, 'prometheus'), encoding: 'utf8' })
  t.equal(tests.status, 0, tests.stdout + tests.stderr)
})

// ---- Docker Compose ------------------------------------------------------------------------
t.test('docker-compose.yml: the same topology, drains within the stop grace period', async t => {
  const compose = parseYaml(read('compose/docker-compose.yml'), { merge: true }) as Obj
  const services = compose.services as Obj
  t.same(Object.keys(services).sort(), ['gateway-a', 'gateway-b', 'nginx', 'prometheus', 'redis'])
  for (const name of ['gateway-a', 'gateway-b']) {
    const s = services[name] as Obj
    t.ok(existsSync(join(deploy, 'compose', s.build.context, s.build.dockerfile)), `${name}: builds the repository's Dockerfile`)
    t.notOk(s.ports, `${name}: publishes no port (the load balancer does)`)
    t.equal(s.environment.REDIS_URL, 'redis://redis:6379')
    t.match(s.environment.JWT_SECRET, /^\$\{JWT_SECRET:\?/, `${name}: JWT_SECRET must be given, no default secret`)
    t.ok(seconds(s.stop_grace_period) * 1000 > Number(s.environment.DRAIN_WINDOW_MS), `${name}: stop_grace_period > DRAIN_WINDOW_MS`)
    t.equal(s.read_only, true)
    t.same(s.cap_drop, ['ALL'])
  }
  t.match(services.redis.command.join(' '), /--appendonly yes/, 'Redis keeps an AOF')
  for (const [name, s] of Object.entries(services)) {
    for (const p of (s as Obj).ports ?? []) t.match(p, /^127\.0\.0\.1:/, `${name}: publishes ${String(p)} on loopback only`)
    for (const v of (s as Obj).volumes ?? []) {
      const src = String(v).split(':')[0] as string
      if (src.startsWith('.')) t.ok(existsSync(resolve(deploy, 'compose', src)), `${name}: mounts ${src}, which exists`)
    }
  }
  t.ok(existsSync(resolve(dirname(join(deploy, 'compose/docker-compose.yml')), '../nginx/sse-locations.conf')))
})
