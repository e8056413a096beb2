/**
 * Static checks of helm/sse-gateway: values.yaml against values.schema.json,
 * the schema against the gateway's own settings, and the rendered manifests
 * (test/static/helm-render.ts stands in for `helm template`).
 */
import t, { type Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Ajv } from 'ajv'
import { SETTINGS, loadConfig } from '../../src/core/config.js'
import { goFloat, loadChartValues, renderChart, TemplateFail, type Rendered } from './helm-render.js'

const chartDir = fileURLToPath(new URL('../../helm/sse-gateway', import.meta.url))
const schema = JSON.parse(readFileSync(`${chartDir}/values.schema.json`, 'utf8')) as Record<string, any>

/** Settings the chart sets itself (from `ports`, `secret`, `listenerTls`, `redisTls` and `redisPassword`), not from `config`. */
const CHART_MANAGED = ['PORT', 'INTERNAL_PORT', 'TLS_CERT_FILE', 'TLS_KEY_FILE', 'REDIS_URL', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'REDIS_PASSWORD', 'REDIS_PASSWORD_FILE', 'REDIS_TLS_CA_FILE', 'REDIS_TLS_CERT_FILE', 'REDIS_TLS_KEY_FILE', 'REDIS_SENTINEL_PASSWORD', 'CONTROL_TOKEN', 'CONTROL_TOKEN_FILE']

type Obj = Record<string, any>

/** Every optional feature on, as an operator would turn them on. */
const ALL_ON = {
  autoscaling: { enabled: true, connections: { enabled: true, averageValue: '4000' } },
  ingress: {
    enabled: true,
    hosts: [{ host: 'sse.example.com', paths: [{ path: '/events', pathType: 'Prefix' }] }],
    tls: [{ secretName: 'sse-tls', hosts: ['sse.example.com'] }],
  },
  httpRoute: { enabled: true, parentRefs: [{ name: 'public', namespace: 'gateways' }], hostnames: ['sse.example.com'] },
  serviceMonitor: { enabled: true, labels: { release: 'prometheus' } },
  secret: { jwtSecret: 'x'.repeat(40) },
  config: { PUBLIC_TOPICS: ['news', 'prices.*'], SLOW_CLIENT_BUFFER_BYTES: 1000000, LOG_LEVEL: 'debug' },
  imagePullSecrets: [{ name: 'regcred' }],
  podAnnotations: { 'example.com/team': 'realtime' },
  extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=384' }],
}

function newAjv (): Ajv {
  return new Ajv({ strict: true, allErrors: true, allowUnionTypes: true })
}

function byKind (r: Rendered, kind: string): Obj[] {
  return r.objects.filter(o => o.kind === kind)
}

function one (r: Rendered, kind: string): Obj {
  const found = byKind(r, kind)
  if (found.length !== 1) throw new Error(`expected one ${kind}, got ${found.length}`)
  return found[0] as Obj
}

function envOf (container: Obj): Map<string, Obj> {
  return new Map((container.env as Obj[]).map(e => [e.name as string, e]))
}

function drainWindowMs (values: Obj): number {
  return (values.config?.DRAIN_WINDOW_MS as number | undefined) ?? Number(SETTINGS.find(s => s.env === 'DRAIN_WINDOW_MS')?.default)
}

t.test('values.schema.json is a strict draft-07 schema and values.yaml passes it', async t => {
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#')
  t.equal(schema.additionalProperties, false, 'unknown top-level keys are rejected')
  const validate = newAjv().compile(schema)
  const ok = validate(loadChartValues(chartDir))
  t.ok(ok, `values.yaml validates: ${JSON.stringify(validate.errors)}`)
  const merged = renderChart(chartDir, { values: ALL_ON }).values
  t.ok(validate(merged), `values with every feature on validate: ${JSON.stringify(validate.errors)}`)
})

t.test('invalid values are rejected by the schema', async t => {
  const validate = newAjv().compile(schema)
  const base = loadChartValues(chartDir)
  const cases: Array<[string, Obj]> = [
    ['negative replicas', { replicaCount: -1 }],
    ['replicas as a string', { replicaCount: '2' }],
    ['unknown top-level key', { replicas: 3 }],
    ['unknown nested key', { image: { repo: 'x' } }],
    ['bad image pullPolicy', { image: { pullPolicy: 'Sometimes' } }],
    ['unknown gateway setting (typo)', { config: { DRAIN_WINDOW: 5000 } }],
    ['setting below its minimum', { config: { HEARTBEAT_INTERVAL_MS: 10 } }],
    ['setting above its maximum', { config: { DRAIN_WINDOW_MS: 600001 } }],
    ['bad log level', { config: { LOG_LEVEL: 'verbose' } }],
    ['chart-managed setting in config', { config: { PORT: 8081 } }],
    ['Redis URL with a wrong scheme', { secret: { redisUrl: 'http://redis:6379' } }],
    ['short JWT secret', { secret: { jwtSecret: 'short' } }],
    ['port out of range', { ports: { http: 70000 } }],
    ['bad service type', { service: { type: 'External' } }],
    ['httpRoute on without parentRefs', { httpRoute: { enabled: true } }],
    ['unknown probe field', { probes: { liveness: { path: '/other' } } }],
    ['bad PDB value', { podDisruptionBudget: { maxUnavailable: 'half' } }],
  ]
  for (const [name, override] of cases) {
    const values = deepMerge(base, override)
    t.notOk(validate(values), `rejected: ${name}`)
  }
})

t.test('config in the schema matches the gateway settings in src/core/config.ts', async t => {
  if (process.env.UPDATE_HELM_SCHEMA === '1') {
    // Regenerate properties.config.properties from SETTINGS, then check as usual.
    const regenerated: Record<string, Obj> = {}
    for (const spec of SETTINGS as readonly Obj[]) if (!CHART_MANAGED.includes(spec.env)) regenerated[spec.env] = schemaFor(spec)
    schema.properties.config.properties = regenerated
    writeFileSync(`${chartDir}/values.schema.json`, JSON.stringify(schema, null, 2) + '\n')
  }
  const props = schema.properties.config.properties as Record<string, Obj>
  t.equal(schema.properties.config.additionalProperties, false)
  const settings = new Map<string, Obj>(SETTINGS.map(s => [s.env, s as Obj]))
  for (const name of Object.keys(props)) {
    t.ok(settings.has(name), `config.${name} is a gateway setting`)
    t.notOk(CHART_MANAGED.includes(name), `config.${name} is not one the chart sets itself`)
  }
  for (const [name, spec] of settings) {
    if (CHART_MANAGED.includes(name)) continue
    const prop = props[name]
    if (prop === undefined) {
      t.fail(`setting ${name} is missing from helm/sse-gateway/values.schema.json (properties.config.properties): regenerate them with UPDATE_HELM_SCHEMA=1 npx tap test/static/helm-chart.test.ts`)
      continue
    }
    if (spec.kind === 'int') {
      t.equal(prop.type, 'integer', `${name} is an integer`)
      t.equal(prop.minimum, spec.min, `${name} minimum`)
      t.equal(prop.maximum, spec.max, `${name} maximum`)
    }
    if (spec.kind === 'enum') t.same(prop.enum, spec.values, `${name} values`)
    if (spec.kind === 'list') t.ok(Array.isArray(prop.anyOf), `${name} takes a list or a comma-separated string`)
    t.same(prop, schemaFor(spec), `${name}: schema entry up to date (UPDATE_HELM_SCHEMA=1 regenerates it)`)
  }
  // Values in values.yaml are within the settings' own bounds.
  const values = loadChartValues(chartDir).config as Obj
  for (const [name, v] of Object.entries(values)) {
    const spec = settings.get(name)
    if (spec?.kind === 'int') t.ok(v >= spec.min && v <= spec.max, `values.yaml ${name}=${String(v)} in range`)
  }
})

t.test('default render: well-formed Kubernetes objects', async t => {
  const r = renderChart(chartDir)
  checkObjects(t, r)
  t.same(r.objects.map(o => o.kind).sort(), ['Deployment', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceAccount'])
  checkDeployment(t, r)
  const svc = one(r, 'Service')
  t.same(svc.spec.ports.map((p: Obj) => [p.name, p.targetPort]), [['http', 'http'], ['internal', 'internal']], 'Service has the public and the internal port')
  t.match(r.notes, /port-forward/)
  t.match(r.notes, /only PUBLIC_TOPICS can be read/, 'NOTES warn when no JWT key is set')
})

t.test('TRUST_PROXY follows the chart\'s topology: private addresses behind its own Ingress or HTTPRoute, nothing otherwise, an explicit value as given', async t => {
  const trust = (values: Obj): unknown => envOf(one(renderChart(chartDir, { values }), 'Deployment').spec.template.spec.containers[0]).get('TRUST_PROXY')?.value
  t.equal(trust({}), undefined, 'no ingress: not set (the gateway trusts no proxy)')
  t.equal(trust({ ingress: { enabled: true } }), 'uniquelocal', 'behind the chart\'s Ingress')
  t.equal(trust({ httpRoute: { enabled: true, parentRefs: [{ name: 'gw' }] } }), 'uniquelocal', 'behind the chart\'s HTTPRoute')
  t.equal(trust({ ingress: { enabled: true }, config: { TRUST_PROXY: '10.42.0.0/16' } }), '10.42.0.0/16', 'an explicit value wins')
  t.equal(trust({ config: { TRUST_PROXY: 'false' } }), 'false')
  t.equal(trust({ config: { TRUST_PROXY: false } }), 'false', 'a YAML boolean from older values still works')
})

t.test('render with every optional feature on', async t => {
  const r = renderChart(chartDir, { values: ALL_ON, releaseName: 'rt', namespace: 'realtime' })
  checkObjects(t, r)
  t.same(r.objects.map(o => o.kind).sort(), [
    'Deployment', 'HTTPRoute', 'HorizontalPodAutoscaler', 'Ingress', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceAccount', 'ServiceMonitor',
  ])
  const dep = checkDeployment(t, r)
  t.notOk('replicas' in dep.spec, 'the HPA owns the replica count')
  const container = dep.spec.template.spec.containers[0] as Obj
  const env = envOf(container)
  t.equal(env.get('SLOW_CLIENT_BUFFER_BYTES')?.value, '1000000', 'a large number stays an integer (not 1e+06)')
  t.equal(env.get('PUBLIC_TOPICS')?.value, 'news,prices.*', 'lists are joined with commas')
  t.equal(env.get('NODE_OPTIONS')?.value, '--max-old-space-size=384', 'extraEnv is passed through')
  t.equal(one(r, 'Secret').stringData.JWT_SECRET, 'x'.repeat(40))
  t.match(dep.spec.template.metadata.annotations['checksum/secret'], /^[a-f0-9]{64}$/, 'pods roll when the Secret changes')

  const svc = one(r, 'Service')
  const ing = one(r, 'Ingress')
  const a = ing.metadata.annotations as Obj
  t.equal(a['nginx.ingress.kubernetes.io/proxy-buffering'], 'off', 'ingress-nginx does not buffer the stream')
  const heartbeatS = Number(SETTINGS.find(s => s.env === 'HEARTBEAT_INTERVAL_MS')?.default) / 1000
  for (const k of ['proxy-read-timeout', 'proxy-send-timeout']) {
    const v = a[`nginx.ingress.kubernetes.io/${k}`]
    t.type(v, 'string', `${k} is a string`)
    t.ok(Number(v) >= 3600 && Number(v) > 4 * heartbeatS, `${k} is long (${String(v)} s)`)
  }
  const rule = ing.spec.rules[0] as Obj
  t.equal(rule.host, 'sse.example.com')
  const backend = rule.http.paths[0].backend.service as Obj
  t.equal(backend.name, svc.metadata.name)
  t.ok(svc.spec.ports.some((p: Obj) => p.name === backend.port.name), 'Ingress points at a Service port')
  t.equal(backend.port.name, 'http', 'Ingress never routes to the internal port')
  t.same(ing.spec.tls, [{ secretName: 'sse-tls', hosts: ['sse.example.com'] }])

  const route = one(r, 'HTTPRoute')
  t.equal(route.apiVersion, 'gateway.networking.k8s.io/v1')
  t.same(route.spec.parentRefs, [{ name: 'public', namespace: 'gateways' }])
  const rr = route.spec.rules[0] as Obj
  t.equal(rr.backendRefs[0].name, svc.metadata.name)
  t.equal(rr.backendRefs[0].port, svc.spec.ports.find((p: Obj) => p.name === 'http').port)
  t.equal(rr.timeouts.request, '0s', 'no request timeout on a stream')
  t.equal(rr.timeouts.backendRequest, '0s')

  const hpa = one(r, 'HorizontalPodAutoscaler')
  t.equal(hpa.apiVersion, 'autoscaling/v2')
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: dep.metadata.name })
  t.ok(hpa.spec.metrics.some((m: Obj) => m.type === 'Resource' && m.resource.name === 'cpu'), 'scales on CPU')
  const pods = hpa.spec.metrics.find((m: Obj) => m.type === 'Pods') as Obj
  t.equal(pods.pods.metric.name, 'sse_gateway_connections_open', 'and on open connections')
  t.equal(pods.pods.target.averageValue, '4000')
  t.ok(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds >= 300, 'scales down slowly')

  const sm = one(r, 'ServiceMonitor')
  t.equal(sm.metadata.labels.release, 'prometheus')
  t.same(sm.spec.endpoints.map((e: Obj) => [e.port, e.path]), [['internal', '/metrics']])
  t.ok(matches(sm.spec.selector.matchLabels, svc.metadata.labels), 'ServiceMonitor selects the Service')
  t.ok(svc.spec.ports.some((p: Obj) => p.name === 'internal'), 'whose internal port it scrapes')
  t.same(sm.spec.namespaceSelector.matchNames, ['realtime'])

  const pdb = one(r, 'PodDisruptionBudget')
  t.ok(matches(pdb.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'PDB selects the pods')
  t.equal(pdb.spec.maxUnavailable, 1)
  t.match(r.notes, /Ingress hosts: sse\.example\.com/)
})

t.test('a public LoadBalancer Service keeps the internal port on its own ClusterIP Service', async t => {
  const r = renderChart(chartDir, { values: { service: { type: 'LoadBalancer' }, serviceMonitor: { enabled: true } } })
  checkObjects(t, r)
  const services = byKind(r, 'Service')
  t.equal(services.length, 2)
  const pub = services.find(s => s.spec.type === 'LoadBalancer') as Obj
  const internal = services.find(s => s.spec.type === 'ClusterIP') as Obj
  t.same(pub.spec.ports.map((p: Obj) => p.name), ['http'], 'no /metrics on the load balancer')
  t.same(internal.spec.ports.map((p: Obj) => p.name), ['internal'])
  t.ok(matches(one(r, 'ServiceMonitor').spec.selector.matchLabels, internal.metadata.labels))
})

t.test('existingSecret: no Secret rendered, env refers to the given one', async t => {
  const r = renderChart(chartDir, { values: { secret: { existingSecret: 'sse-keys', keys: { redisUrl: 'url' } } } })
  checkObjects(t, r)
  t.equal(byKind(r, 'Secret').length, 0)
  const env = envOf(one(r, 'Deployment').spec.template.spec.containers[0])
  t.same(env.get('REDIS_URL')?.valueFrom.secretKeyRef, { name: 'sse-keys', key: 'url' })
  t.same(env.get('JWT_PUBLIC_KEY')?.valueFrom.secretKeyRef, { name: 'sse-keys', key: 'JWT_PUBLIC_KEY', optional: true })
  t.notOk('checksum/secret' in (one(r, 'Deployment').spec.template.metadata.annotations ?? {}))
})

t.test('redisTls and redisPassword: the files are mounted read-only from the given Secrets and the settings point at them', async t => {
  const r = renderChart(chartDir, { values: { secret: { redisUrl: 'rediss://redis.internal:6380' }, config: { REDIS_USERNAME: 'sse-gateway' }, redisTls: { secretName: 'redis-tls', caKey: 'ca.pem', certKey: 'tls.crt', keyKey: 'tls.key' }, redisPassword: { secretName: 'redis-auth', key: 'pw' } } })
  checkObjects(t, r)
  const pod = one(r, 'Deployment').spec.template.spec as Obj
  const c = pod.containers[0] as Obj
  const env = envOf(c)
  t.equal(env.get('REDIS_TLS_CA_FILE')?.value, '/etc/sse-gateway/redis-tls/ca.crt')
  t.equal(env.get('REDIS_TLS_CERT_FILE')?.value, '/etc/sse-gateway/redis-tls/client.crt')
  t.equal(env.get('REDIS_TLS_KEY_FILE')?.value, '/etc/sse-gateway/redis-tls/client.key')
  t.equal(env.get('REDIS_PASSWORD_FILE')?.value, '/etc/sse-gateway/redis-password/password')
  t.equal(env.get('REDIS_USERNAME')?.value, 'sse-gateway', 'the user from config')
  const volumes = new Map((pod.volumes as Obj[]).map(v => [v.name as string, v]))
  t.same(volumes.get('redis-tls')?.secret, { secretName: 'redis-tls', items: [{ key: 'ca.pem', path: 'ca.crt' }, { key: 'tls.crt', path: 'client.crt' }, { key: 'tls.key', path: 'client.key' }] })
  t.same(volumes.get('redis-password')?.secret, { secretName: 'redis-auth', items: [{ key: 'pw', path: 'password' }] })
  const mounts = new Map((c.volumeMounts as Obj[]).map(m => [m.name as string, m]))
  t.same(mounts.get('redis-tls'), { name: 'redis-tls', mountPath: '/etc/sse-gateway/redis-tls', readOnly: true })
  t.same(mounts.get('redis-password'), { name: 'redis-password', mountPath: '/etc/sse-gateway/redis-password', readOnly: true })
  // A CA only (the server's certificate from a private CA, no client certificate).
  const caOnly = envOf(one(renderChart(chartDir, { values: { redisTls: { secretName: 'redis-tls' } } }), 'Deployment').spec.template.spec.containers[0])
  t.equal(caOnly.get('REDIS_TLS_CA_FILE')?.value, '/etc/sse-gateway/redis-tls/ca.crt', 'caKey defaults to ca.crt')
  t.notOk(caOnly.has('REDIS_TLS_CERT_FILE') || caOnly.has('REDIS_PASSWORD_FILE'), 'nothing else unless asked for')
  // The defaults: nothing mounted, nothing set.
  const plain = one(renderChart(chartDir), 'Deployment').spec.template.spec as Obj
  t.notOk((plain.volumes as Obj[]).some(v => v.name !== 'tmp'), 'no Redis volume by default')
  t.notOk([...envOf(plain.containers[0]).keys()].some(k => /^REDIS_(TLS|PASSWORD)/.test(k)), 'no TLS or password setting by default')
})

t.test('listenerTls: the listener\'s certificate and key mounted read-only from a kubernetes.io/tls Secret (whole, so renewals reach the files), TLS_CERT_FILE and TLS_KEY_FILE pointing at them', async t => {
  const r = renderChart(chartDir, { values: { listenerTls: { secretName: 'sse-tls' } } })
  checkObjects(t, r)
  const pod = one(r, 'Deployment').spec.template.spec as Obj
  const c = pod.containers[0] as Obj
  const env = envOf(c)
  t.equal(env.get('TLS_CERT_FILE')?.value, '/etc/sse-gateway/tls/tls.crt')
  t.equal(env.get('TLS_KEY_FILE')?.value, '/etc/sse-gateway/tls/tls.key')
  const volumes = new Map((pod.volumes as Obj[]).map(v => [v.name as string, v]))
  t.same(volumes.get('listener-tls')?.secret, { secretName: 'sse-tls', items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] })
  const mount = (c.volumeMounts as Obj[]).find(m => m.name === 'listener-tls')
  t.same(mount, { name: 'listener-tls', mountPath: '/etc/sse-gateway/tls', readOnly: true }, 'no subPath: a subPath mount never sees a renewal')
  t.equal(one(r, 'Service').spec.ports[0].appProtocol, 'https', 'the Service says the port speaks HTTPS')
  const withIngress = renderChart(chartDir, { values: { listenerTls: { secretName: 'sse-tls' }, ingress: { enabled: true } } })
  t.equal(one(withIngress, 'Ingress').metadata.annotations['nginx.ingress.kubernetes.io/backend-protocol'], 'HTTPS', 'ingress-nginx is told to speak HTTPS to it')
  t.equal(one(withIngress, 'Ingress').metadata.annotations['nginx.ingress.kubernetes.io/proxy-buffering'], 'off', 'beside the SSE annotations')
  const plainRender = renderChart(chartDir, { values: { ingress: { enabled: true } } })
  const plain = envOf(one(plainRender, 'Deployment').spec.template.spec.containers[0])
  t.notOk(plain.has('TLS_CERT_FILE') || plain.has('TLS_KEY_FILE'), 'plain HTTP by default')
  t.notOk('nginx.ingress.kubernetes.io/backend-protocol' in one(plainRender, 'Ingress').metadata.annotations, 'and no backend-protocol')
  t.notOk('appProtocol' in one(plainRender, 'Service').spec.ports[0], 'nor an appProtocol')
  const h2c = renderChart(chartDir, { values: { config: { HTTP2_CLEARTEXT: true } } })
  t.equal(one(h2c, 'Service').spec.ports[0].appProtocol, 'kubernetes.io/h2c', 'HTTP2_CLEARTEXT: the Service says h2c')
})

t.test('Sentinel values: REDIS_SENTINELS and the master from config, the Sentinels\' password from the Secret', async t => {
  const r = renderChart(chartDir, {
    values: {
      config: { REDIS_SENTINELS: ['sentinel-0:26379', 'sentinel-1:26379', 'sentinel-2:26379'], REDIS_SENTINEL_MASTER: 'mymaster' },
      secret: { redisUrl: 'redis://:data-pw@mymaster/0', redisSentinelPassword: 'sentinel-pw', jwtSecret: 'x'.repeat(40) },
    },
  })
  checkObjects(t, r)
  const env = envOf(one(r, 'Deployment').spec.template.spec.containers[0])
  t.equal(env.get('REDIS_SENTINELS')?.value, 'sentinel-0:26379,sentinel-1:26379,sentinel-2:26379')
  t.equal(env.get('REDIS_SENTINEL_MASTER')?.value, 'mymaster')
  const secret = one(r, 'Secret')
  t.same(env.get('REDIS_SENTINEL_PASSWORD')?.valueFrom.secretKeyRef, { name: secret.metadata.name, key: 'REDIS_SENTINEL_PASSWORD', optional: true })
  t.equal(secret.stringData.REDIS_SENTINEL_PASSWORD, 'sentinel-pw')
  const config = loadConfig({
    REDIS_URL: secret.stringData.REDIS_URL,
    JWT_SECRET: secret.stringData.JWT_SECRET,
    REDIS_SENTINEL_PASSWORD: secret.stringData.REDIS_SENTINEL_PASSWORD,
    REDIS_SENTINELS: env.get('REDIS_SENTINELS')?.value,
    REDIS_SENTINEL_MASTER: env.get('REDIS_SENTINEL_MASTER')?.value,
  })
  t.same(config.redisSentinels, ['sentinel-0:26379', 'sentinel-1:26379', 'sentinel-2:26379'], 'the gateway takes what the chart renders')
  const plain = envOf(one(renderChart(chartDir, { values: { secret: { jwtSecret: 'x'.repeat(40) } } }), 'Deployment').spec.template.spec.containers[0])
  t.equal(plain.get('REDIS_SENTINEL_PASSWORD')?.valueFrom.secretKeyRef.optional, true, 'without Sentinel the variable is optional and absent from the Secret')
})

t.test('the chart refuses values that would break shutdown or the gateway', async t => {
  const cases: Array<[string, Obj, RegExp]> = [
    ['grace period shorter than preStop + drain window', { terminationGracePeriodSeconds: 15 }, /terminationGracePeriodSeconds must be at least 20/],
    ['drain window raised without the grace period', { config: { DRAIN_WINDOW_MS: 60000 } }, /at least 70/],
    ['both JWT secret and public key', { secret: { jwtSecret: 'x'.repeat(32), jwtPublicKey: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----' } }, /not both/],
    ['JWT key in values with existingSecret', { secret: { existingSecret: 's', jwtSecret: 'x'.repeat(32) } }, /existingSecret/],
    ['maxReplicas below minReplicas', { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 } }, /maxReplicas/],
    ['PDB with both bounds', { podDisruptionBudget: { minAvailable: 1, maxUnavailable: 1 } }, /not both/],
    ['a client certificate without its key', { redisTls: { secretName: 'redis-tls', certKey: 'tls.crt' } }, /certKey and keyKey/],
  ]
  for (const [name, values, message] of cases) {
    t.throws(() => renderChart(chartDir, { values }), { constructor: TemplateFail, message }, name)
  }
  // The boundary itself is accepted: 5 + 10 + 5.
  t.doesNotThrow(() => renderChart(chartDir, { values: { terminationGracePeriodSeconds: 20 } }))
  // preStop off is allowed, and then no lifecycle hook is rendered.
  const r = renderChart(chartDir, { values: { preStopSleepSeconds: 0 } })
  t.notOk('lifecycle' in one(r, 'Deployment').spec.template.spec.containers[0])
})

t.test('the renderer follows Go and Helm where templates usually go wrong', async t => {
  t.equal(goFloat(1000000), '1e+06', 'float64 %v of a million, as Helm prints an unpiped value')
  t.equal(goFloat(262144), '262144')
  t.equal(goFloat(0.5), '0.5')
  t.equal(goFloat(67108864), '6.7108864e+07')
})

// ---- checks shared by the renders ----

function checkObjects (t: Test, r: Rendered): void {
  const seen = new Set<string>()
  for (const o of r.objects as Obj[]) {
    const id = `${String(o.kind)}/${String(o.metadata?.name)}`
    t.type(o.apiVersion, 'string', `${id}: apiVersion`)
    t.type(o.kind, 'string', `${id}: kind`)
    t.match(o.metadata?.name, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, `${id}: metadata.name is a DNS label`)
    t.notOk(seen.has(id), `${id}: rendered once`)
    seen.add(id)
    for (const [k, v] of Object.entries({ ...(o.metadata.labels ?? {}), ...(o.metadata.annotations ?? {}) })) {
      t.type(v, 'string', `${id}: label/annotation ${k} is a string`)
    }
    t.notOk(JSON.stringify(o).includes('<no value>'), `${id}: no missing values`)
  }
}

function checkDeployment (t: Test, r: Rendered): Obj {
  const dep = one(r, 'Deployment')
  const pod = dep.spec.template.spec as Obj
  t.ok(matches(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'selector matches the pod labels')
  t.equal(pod.containers.length, 1)
  const c = pod.containers[0] as Obj
  const env = envOf(c)
  t.equal(env.size, (c.env as Obj[]).length, 'no variable set twice')
  for (const e of c.env as Obj[]) {
    if ('value' in e) t.type(e.value, 'string', `env ${String(e.name)} is a string`)
  }
  const ports = new Map<string, number>((c.ports as Obj[]).map(p => [p.name as string, p.containerPort as number]))
  t.equal(String(ports.get('http')), env.get('PORT')?.value, 'PORT is the http containerPort')
  t.equal(String(ports.get('internal')), env.get('INTERNAL_PORT')?.value, 'INTERNAL_PORT is the internal containerPort')
  t.not(ports.get('http'), ports.get('internal'))
  const portOf = (p: number | string): number | undefined => typeof p === 'number' ? p : ports.get(p)
  t.equal(c.livenessProbe.httpGet.path, '/livez')
  t.equal(portOf(c.livenessProbe.httpGet.port), ports.get('internal'), 'liveness on the internal port')
  t.equal(c.readinessProbe.httpGet.path, '/readyz')
  t.equal(portOf(c.readinessProbe.httpGet.port), ports.get('internal'), 'readiness on the internal port')
  if (c.startupProbe !== undefined) t.equal(c.startupProbe.httpGet.path, '/livez', 'startup probe never waits for Redis')

  // Shutdown: preStop sleep, then the drain window, inside the grace period.
  const preStop = c.lifecycle?.preStop?.exec?.command as string[] | undefined
  t.equal(preStop?.[0], 'sleep', 'preStop sleeps before SIGTERM')
  const preStopS = Number(preStop?.[1] ?? 0)
  t.ok(preStopS > 0)
  const drainS = Number(env.get('DRAIN_WINDOW_MS')?.value ?? drainWindowMs(r.values)) / 1000
  t.ok(pod.terminationGracePeriodSeconds > drainS, `terminationGracePeriodSeconds ${String(pod.terminationGracePeriodSeconds)} > drain window ${drainS}`)
  t.ok(pod.terminationGracePeriodSeconds > preStopS + drainS, 'and > preStop + drain window')

  // Secrets come from a Secret, never inline.
  for (const name of ['REDIS_URL', 'JWT_SECRET', 'JWT_PUBLIC_KEY']) {
    const ref = env.get(name)?.valueFrom?.secretKeyRef as Obj | undefined
    t.ok(ref !== undefined, `${name} from a Secret`)
    const secret = byKind(r, 'Secret')[0]
    if (secret !== undefined && ref !== undefined) {
      t.equal(ref.name, secret.metadata.name, `${name}: the chart's Secret`)
      if (name === 'REDIS_URL') t.ok(ref.key in secret.stringData, 'REDIS_URL key exists in the Secret')
    }
  }
  // Every env name the gateway reads from config is a real setting.
  const known = new Set<string>(SETTINGS.map(s => s.env))
  for (const name of env.keys()) {
    if (name !== 'NODE_OPTIONS') t.ok(known.has(name), `env ${name} is a gateway setting`)
  }

  // Restricted Pod Security Standard.
  const psc = pod.securityContext as Obj
  const csc = c.securityContext as Obj
  t.equal(psc.runAsNonRoot, true, 'pod runAsNonRoot')
  t.equal(csc.runAsNonRoot, true, 'container runAsNonRoot')
  t.ok(typeof csc.runAsUser === 'number' && csc.runAsUser > 0, 'numeric non-root UID')
  t.equal(csc.allowPrivilegeEscalation, false)
  t.equal(csc.readOnlyRootFilesystem, true)
  t.not(csc.privileged, true)
  t.same(csc.capabilities.drop, ['ALL'])
  t.notOk(csc.capabilities.add, 'no capability added')
  t.equal((csc.seccompProfile ?? psc.seccompProfile).type, 'RuntimeDefault')
  t.equal(psc.seccompProfile.type, 'RuntimeDefault')
  t.notOk(pod.hostNetwork || pod.hostPID || pod.hostIPC, 'no host namespaces')
  t.notOk((pod.volumes as Obj[] ?? []).some(v => 'hostPath' in v), 'no hostPath volume')
  t.equal(pod.automountServiceAccountToken, false)
  t.ok(c.resources?.requests?.cpu !== undefined && c.resources?.limits?.memory !== undefined, 'resources set')
  t.match(c.image, /^[^:@]+(:[\w.-]+|@sha256:[a-f0-9]{64})$/, 'image reference')
  return dep
}

/** The values.schema.json entry for a gateway setting. */
function schemaFor (spec: Obj): Obj {
  const description = spec.default !== undefined ? `${String(spec.description)} Default: ${String(spec.default)}.` : spec.description
  switch (spec.kind) {
    case 'int': return { description, type: 'integer', minimum: spec.min, maximum: spec.max }
    case 'bool': return { description, type: 'boolean' }
    case 'enum': return { description, type: 'string', enum: spec.values }
    case 'list': return { description, anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] }
    // false, true or addresses: values written as YAML booleans stay valid.
    case 'proxies': return { description, type: ['string', 'boolean'] }
    default: return { description, type: 'string' }
  }
}

function matches (selector: Obj, labels: Obj): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v)
}

function deepMerge (base: unknown, over: unknown): any {
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof over !== 'object' || over === null || Array.isArray(over)) return over
  const out: Obj = { ...(base as Obj) }
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(out[k], v)
  return out
}
