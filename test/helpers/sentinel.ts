/**
 * A throwaway Sentinel topology per test file: one master and one replica
 * (`redis-server --replicaof`) and three `redis-sentinel`s watching the
 * master with a quorum of 2, on free loopback ports in a temp folder. Every
 * process is started here and killed here by its PID.
 *
 * The nodes replicate as an ACL user of their own (`repl`; the Sentinels
 * and clients use the default user), so a test can cut the replica off
 * (that user disabled, its link killed) and then kill the master: the promoted replica lacks what was written meanwhile, as
 * asynchronous replication loses it in production.
 *
 * With `acl`, the Sentinels let in only their own user (`user ... on >pw`,
 * the default user off; they reach each other as it, `sentinel
 * sentinel-user/sentinel-pass`) and the data nodes only theirs and the
 * replication user (the Sentinels monitor them as it, `sentinel auth-user/
 * auth-pass`). With `tls`, every process speaks TLS only (no plain port),
 * to clients and to each other, with the CA's node certificate (which
 * names `localhost`, not the 127.0.0.1 the Sentinels hand out). The helper's
 * own connections use the same.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './process.js'
import { tlsNodeArgs, tlsNodeClient, type TestCa } from './tls.js'

export const SENTINEL_MASTER = 'gwmaster'
const REPL_USER = 'repl'
const REPL_PASSWORD = 'repl-secret-for-tests'

interface Node {
  readonly port: number
  readonly proc: ChildProcess
  readonly client: Redis
}

export interface TestSentinel {
  /** The monitored master's name. */
  readonly master: string
  /** `127.0.0.1:<port>` of each Sentinel, as REDIS_SENTINELS takes them. */
  readonly sentinels: readonly string[]
  /** A Sentinel-aware client (the producer's side): follows the master. */
  readonly client: Redis
  /** The port of the node the Sentinels name master now. */
  masterPort (): Promise<number>
  /** A plain client on the data node at `port` (not following failovers). */
  node (port: number): Redis
  /** The replica stops receiving: its replication user is disabled and its link killed. */
  cutReplica (): Promise<void>
  /** `SENTINEL FAILOVER`: the replica promoted, the master (alive) demoted to its replica; resolves with the old master's port. */
  failover (): Promise<number>
  /** SIGKILLs the current master; resolves with its port. */
  killMaster (): Promise<number>
  /**
   * Resolves with the new master's port once the Sentinels name one other
   * than `oldPort`, it answers as master and the old one, if alive,
   * replicates it.
   */
  failedOver (oldPort: number, timeoutMs?: number): Promise<number>
  stop (): Promise<void>
}

async function waitForExit (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  await new Promise<void>(resolve => proc.once('exit', () => { resolve() }))
}

async function until<T> (what: string, timeoutMs: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const v = await f()
      if (v !== undefined) return v
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

export interface SentinelOptions {
  /** The ACL users of the Sentinels and of the data nodes (the default user is off on both). */
  acl?: { sentinelUser: string, sentinelPassword: string, dataUser: string, dataPassword: string }
  /** TLS only, everywhere, with this CA's node certificate. */
  tls?: TestCa
}

/** What the helper's own connections need: the user of the process they reach, and TLS. */
interface Reach { username?: string, password?: string, tls?: ReturnType<typeof tlsNodeClient> }

function plainClient (port: number, reach: Reach = {}): Redis {
  const c = new Redis({ host: '127.0.0.1', port, protocol: 2, maxRetriesPerRequest: 1, retryStrategy: () => 200, lazyConnect: false, ...reach })
  c.on('error', () => {})
  return c
}

/** Flat `[k, v, k, v]` (SENTINEL MASTER's reply) as a record. */
function record (flat: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  const a = flat as string[]
  for (let i = 0; i + 1 < a.length; i += 2) out[String(a[i])] = String(a[i + 1])
  return out
}

export async function startSentinel (opts: SentinelOptions = {}): Promise<TestSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-sentinel-'))
  const acl = opts.acl
  const tls = opts.tls === undefined ? undefined : tlsNodeClient(opts.tls)
  const dataReach: Reach = { ...(acl !== undefined ? { username: acl.dataUser, password: acl.dataPassword } : {}), ...(tls !== undefined ? { tls } : {}) }
  const sentinelReach: Reach = { ...(acl !== undefined ? { username: acl.sentinelUser, password: acl.sentinelPassword } : {}), ...(tls !== undefined ? { tls } : {}) }
  const procs: ChildProcess[] = []
  const clients: Redis[] = []
  const nodes = new Map<number, Node>()

  const startNode = async (name: string, replicaOf?: number): Promise<Node> => {
    const port = await freePort()
    const proc = spawn('redis-server', [
      ...(opts.tls !== undefined ? tlsNodeArgs(opts.tls, port, false) : ['--port', String(port)]),
      '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--dbfilename', `${name}.rdb`, '--logfile', join(dir, `${name}.log`),
      '--user', REPL_USER, 'on', `>${REPL_PASSWORD}`, '~*', '&*', '+@all',
      ...(acl !== undefined ? ['--user', acl.dataUser, 'on', `>${acl.dataPassword}`, '~*', '&*', '+@all', '--user', 'default', 'off'] : []),
      '--masteruser', REPL_USER, '--masterauth', REPL_PASSWORD,
      ...(replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(replicaOf)] : []),
    ], { stdio: 'ignore' })
    procs.push(proc)
    const client = plainClient(port, dataReach)
    clients.push(client)
    await until(`redis-server ${name} on ${port}`, 10000, async () => await client.ping() === 'PONG' ? true : undefined)
    const node = { port, proc, client }
    nodes.set(port, node)
    return node
  }

  const sentinelClients: Redis[] = []
  const stopAll = async (): Promise<void> => {
    for (const c of [...clients, ...sentinelClients]) c.disconnect()
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
    await Promise.all(procs.map(waitForExit))
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    const master = await startNode('node-a')
    const replica = await startNode('node-b', master.port)
    await until('the replica in sync', 10000, async () =>
      /master_link_status:up/.test(String(await replica.client.info('replication'))) ? true : undefined)

    const sentinels: string[] = []
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const conf = join(dir, `sentinel-${i}.conf`)
      const ca = opts.tls
      writeFileSync(conf, [
        ...(ca !== undefined
          ? ['port 0', `tls-port ${port}`, `tls-cert-file ${ca.nodeCert}`, `tls-key-file ${ca.nodeKey}`, `tls-ca-cert-file ${ca.caCert}`, 'tls-auth-clients no', 'tls-replication yes']
          : [`port ${port}`]),
        'bind 127.0.0.1', 'daemonize no', `dir ${dir}`, `logfile ${join(dir, `sentinel-${i}.log`)}`,
        'sentinel resolve-hostnames no',
        ...(acl !== undefined
          ? [`user ${acl.sentinelUser} on >${acl.sentinelPassword} allchannels +@all`, 'user default off',
              `sentinel sentinel-user ${acl.sentinelUser}`, `sentinel sentinel-pass ${acl.sentinelPassword}`]
          : []),
        `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${master.port} 2`,
        ...(acl !== undefined ? [`sentinel auth-user ${SENTINEL_MASTER} ${acl.dataUser}`, `sentinel auth-pass ${SENTINEL_MASTER} ${acl.dataPassword}`] : []),
        `sentinel down-after-milliseconds ${SENTINEL_MASTER} 1000`,
        `sentinel failover-timeout ${SENTINEL_MASTER} 5000`,
        `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
        '',
      ].join('\n'))
      procs.push(spawn('redis-sentinel', [conf], { stdio: 'ignore' }))
      const c = plainClient(port, sentinelReach)
      sentinelClients.push(c)
      sentinels.push(`127.0.0.1:${port}`)
    }
    // Ready when every Sentinel knows the replica and the two others (hello
    // messages go through the master every 2 s): only then can they fail over.
    await Promise.all(sentinelClients.map(async (c, i) => await until(`sentinel ${i} to see the replica and its peers`, 20000, async () => {
      const m = record(await c.call('SENTINEL', 'MASTER', SENTINEL_MASTER))
      return m['num-slaves'] === '1' && m['num-other-sentinels'] === '2' ? true : undefined
    })))

    const client = new Redis({
      sentinels: sentinels.map(s => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })),
      name: SENTINEL_MASTER,
      protocol: 2,
      ...(acl !== undefined ? { sentinelUsername: acl.sentinelUser, sentinelPassword: acl.sentinelPassword, username: acl.dataUser, password: acl.dataPassword } : {}),
      ...(tls !== undefined ? { sentinelTLS: tls, tls, enableTLSForSentinelMode: true } : {}),
      maxRetriesPerRequest: 20,
      retryStrategy: () => 100,
      sentinelRetryStrategy: () => 100,
    })
    client.on('error', () => {})
    clients.push(client)

    const masterPort = async (): Promise<number> => {
      for (const c of sentinelClients) {
        try {
          const [, port] = await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER) as [string, string]
          return Number(port)
        } catch {}
      }
      throw new Error('no Sentinel answers')
    }

    return {
      master: SENTINEL_MASTER,
      sentinels,
      client,
      masterPort,
      node (port) {
        const n = nodes.get(port)
        if (n === undefined) throw new Error(`no data node on ${port}`)
        return n.client
      },
      async cutReplica () {
        const m = nodes.get(await masterPort()) as Node
        // Sentinel kills normal clients of the nodes it reconfigures: retry on that.
        await until('the replication user disabled', 5000, async () => await m.client.call('ACL', 'SETUSER', REPL_USER, 'off'))
        await until('the replica link killed', 5000, async () => await m.client.call('CLIENT', 'KILL', 'TYPE', 'replica'))
        const r = [...nodes.values()].find(n => n !== m) as Node
        await until('the replica cut off', 5000, async () =>
          /master_link_status:down/.test(String(await r.client.info('replication'))) ? true : undefined)
      },
      async failover () {
        const port = await masterPort()
        await sentinelClients[0]?.call('SENTINEL', 'FAILOVER', SENTINEL_MASTER)
        return port
      },
      async killMaster () {
        const port = await masterPort()
        const n = nodes.get(port) as Node
        n.proc.kill('SIGKILL')
        await waitForExit(n.proc)
        return port
      },
      async failedOver (oldPort, timeoutMs = 20000) {
        const port = await until('the Sentinels to promote the replica', timeoutMs, async () => {
          const port = await masterPort()
          if (port === oldPort) return undefined
          return /role:master/.test(String(await nodes.get(port)?.client.info('replication'))) ? port : undefined
        })
        // A demoted master that runs on: done once it replicates the new one.
        const old = nodes.get(oldPort) as Node
        if (old.proc.exitCode === null && old.proc.signalCode === null) {
          await until('the old master to replicate the new one', timeoutMs, async () => {
            const info = String(await old.client.info('replication'))
            return info.includes(`master_port:${port}`) && /master_link_status:up/.test(info) ? true : undefined
          })
        }
        return port
      },
      stop: stopAll,
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}
