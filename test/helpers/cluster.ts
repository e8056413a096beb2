/**
 * A throwaway Redis Cluster per test file: 3 masters and 3 replicas (or as
 * asked) on free loopback ports in a temp folder, `cluster-enabled yes`,
 * with no server setting for the gateway (no `notify-keyspace-events`:
 * what a managed cluster gives; `notify: 'Kt'` asks for it on every node,
 * and {@link TestCluster.setNotify} sets it at run time), made with
 * `redis-cli --cluster create ... --cluster-replicas 1`. Every process is
 * killed by its PID at stop, and the folder removed. Never the shared Redis.
 *
 * With `tls`, every node speaks TLS only (no plain port), to clients, on
 * the cluster bus and for replication, with the CA's node certificate
 * (which names `localhost`, not 127.0.0.1); the helper's own connections
 * then use TLS too.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { freePort } from './process.js'
import { tlsNodeArgs, tlsNodeClient, type TestCa } from './tls.js'

const run = promisify(execFile)

export interface ClusterNodeProcess {
  readonly port: number
  readonly address: string
  readonly proc: ChildProcess
}

export interface TestCluster {
  /** `127.0.0.1:p1,127.0.0.1:p2,...`, as REDIS_CLUSTER_NODES takes it. */
  readonly seeds: string
  readonly nodes: ClusterNodeProcess[]
  /** A Cluster client for the test itself (producer side). */
  readonly client: Cluster
  /** The masters now, as `127.0.0.1:port`, with the slots each serves. */
  masters (): Promise<Array<{ address: string, id: string, slots: number }>>
  /** The node serving `key`'s slot, as `127.0.0.1:port`. */
  ownerOf (key: string): Promise<string>
  /**
   * SIGKILL the master at `address`, and wait until a replica serves its
   * slots and the cluster is ok; `afterKill` runs right after the kill.
   */
  killMaster (address: string, afterKill?: () => void): Promise<void>
  /** SIGSTOP the replica of the master at `address` and cut its link (what the master takes next is on the master only); the function resumes it (SIGCONT). */
  pauseReplicaOf (address: string): Promise<() => void>
  /** Moves the slot of `key` to the master at `to` (CLUSTER SETSLOT / MIGRATE, as `redis-cli --cluster reshard` does). */
  moveSlotOf (key: string, to: string): Promise<void>
  /** Starts an empty node, joins it as a master with no slots (CLUSTER MEET, as `redis-cli --cluster add-node`): its address. */
  addMaster (): Promise<string>
  /** CONFIG SET notify-keyspace-events on every live node (or only `address`): `Kt` turns the notification feeds on, `''` off. */
  setNotify (flags: string, address?: string): Promise<void>
  /** Runs a command on every live node (ACL SETUSER, say: ACLs are node-local). */
  onEveryNode (...args: string[]): Promise<void>
  stop (): Promise<void>
}

async function waitForExit (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  await new Promise<void>(resolve => proc.once('exit', () => { resolve() }))
}

/** The TLS options of the helper's connections to each TLS node, by port. */
const tlsOfPort = new Map<number, ReturnType<typeof tlsNodeClient>>()

function nodeClient (port: number): Redis {
  const tls = tlsOfPort.get(port)
  const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(tls !== undefined ? { tls } : {}) })
  c.on('error', () => {})
  return c
}

async function ask (port: number, ...args: string[]): Promise<unknown> {
  const c = nodeClient(port)
  try {
    await c.connect()
    return await c.call(args[0] as string, ...args.slice(1))
  } finally {
    c.disconnect()
  }
}

async function until (check: () => Promise<boolean>, what: string, timeoutMs = 30000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** CLUSTER NODES of the node at `port`, parsed. */
async function clusterNodes (port: number): Promise<Array<{ id: string, address: string, flags: string[], master: string, slots: string[] }>> {
  const text = String(await ask(port, 'CLUSTER', 'NODES'))
  return text.trim().split('\n').map(line => {
    const [id, addr, flags, master, , , , , ...slots] = line.split(' ')
    return { id: id as string, address: (addr as string).split('@')[0] as string, flags: (flags as string).split(','), master: master as string, slots }
  })
}

function slotCount (ranges: string[]): number {
  let n = 0
  for (const r of ranges) {
    if (r.startsWith('[')) continue
    const [a, b] = r.split('-').map(Number)
    n += (b ?? a as number) - (a as number) + 1
  }
  return n
}

export interface ClusterOptions {
  masters?: number
  replicas?: number
  /** `notify-keyspace-events` on every node (none by default: the gateway needs no server setting). */
  notify?: string
  /** TLS only, with this CA's node certificate; `clientCertificates`: clients must present one (mutual TLS). */
  tls?: { ca: TestCa, clientCertificates?: boolean }
  /** More redis-server arguments for every node (an ACL user, say). */
  args?: string[]
}

export async function startCluster (opts: ClusterOptions = {}): Promise<TestCluster> {
  const masters = opts.masters ?? 3
  const replicas = opts.replicas ?? 1
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-cluster-'))
  const nodes: ClusterNodeProcess[] = []
  const launch = async (): Promise<ClusterNodeProcess> => {
    const port = await freePort()
    if (opts.tls !== undefined) tlsOfPort.set(port, tlsNodeClient(opts.tls.ca))
    const proc = spawn('redis-server', [
      ...(opts.tls !== undefined ? tlsNodeArgs(opts.tls.ca, port, opts.tls.clientCertificates === true) : ['--port', String(port)]),
      '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '1000',
      // A master added with no slots yet must stay a master (Redis 7 may make it a replica otherwise).
      '--cluster-allow-replica-migration', 'no',
      '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, `redis-${port}.log`),
      ...(opts.notify !== undefined ? ['--notify-keyspace-events', opts.notify] : []),
      ...(opts.args ?? []),
    ], { stdio: 'ignore' })
    const node = { port, address: `127.0.0.1:${port}`, proc }
    nodes.push(node)
    await until(async () => await ask(port, 'PING') === 'PONG', `redis-server on ${port}`, 10000)
    return node
  }
  const clients: Cluster[] = []
  const timers: NodeJS.Timeout[] = []
  const stop = async (): Promise<void> => {
    for (const timer of timers) clearInterval(timer)
    for (const c of clients) c.disconnect()
    await Promise.all(nodes.map(async n => {
      n.proc.kill('SIGKILL')
      await waitForExit(n.proc)
    }))
    rmSync(dir, { recursive: true, force: true })
    for (const n of nodes) tlsOfPort.delete(n.port)
  }
  try {
    await Promise.all(Array.from({ length: masters * (1 + replicas) }, launch))
    const cliTls = opts.tls === undefined ? [] : ['--tls', '--cacert', opts.tls.ca.caCert, '--cert', opts.tls.ca.clientCert, '--key', opts.tls.ca.clientKey]
    await run('redis-cli', [...cliTls, '--cluster', 'create', ...nodes.map(n => n.address), '--cluster-replicas', String(replicas), '--cluster-yes'])
    await until(async () => {
      for (const n of nodes) if (!/cluster_state:ok/.test(String(await ask(n.port, 'CLUSTER', 'INFO')))) return false
      return true
    }, 'cluster_state:ok on every node')
    // Every node knows every other node's role (replicas attached) before the test starts.
    await until(async () => {
      for (const n of nodes) {
        const view = await clusterNodes(n.port)
        if (view.filter(v => v.flags.includes('master') && slotCount(v.slots) > 0).length !== masters) return false
        if (view.filter(v => v.flags.includes('slave')).length !== masters * replicas) return false
      }
      return true
    }, 'every node to see the whole topology')
  } catch (err) {
    await stop()
    throw err
  }
  const alive = (): ClusterNodeProcess[] => nodes.filter(n => n.proc.exitCode === null && n.proc.signalCode === null)
  const anyPort = (): number => (alive()[0] as ClusterNodeProcess).port
  const client = new Cluster(nodes.slice(0, masters).map(n => ({ host: '127.0.0.1', port: n.port })), {
    redisOptions: { protocol: 2, maxRetriesPerRequest: 20, ...(opts.tls !== undefined ? { tls: tlsNodeClient(opts.tls.ca) } : {}) },
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    // Refreshed by the timer below: ioredis's own interval can outlive disconnect().
    slotsRefreshInterval: 0,
  })
  client.on('error', () => {})
  clients.push(client)
  const refresh = setInterval(() => { client.refreshSlotsCache() }, 500)
  refresh.unref()
  timers.push(refresh)
  // Connected, so its slot map is known (tests look keys up in it).
  await until(async () => await client.ping() === 'PONG' && client.slots.filter(x => x !== undefined).length > 0, 'the test client connected')
  const portOf = (address: string): number => Number(address.split(':')[1])
  const ownerOf = async (key: string): Promise<string> => {
    const slot = Number(await ask(anyPort(), 'CLUSTER', 'KEYSLOT', key))
    const view = await clusterNodes(anyPort())
    for (const v of view) {
      if (!v.flags.includes('master')) continue
      for (const r of v.slots) {
        if (r.startsWith('[')) continue
        const [a, b] = r.split('-').map(Number)
        if (slot >= (a as number) && slot <= (b ?? a as number)) return v.address
      }
    }
    throw new Error(`no master serves slot ${slot}`)
  }
  return {
    seeds: nodes.slice(0, masters).map(n => n.address).join(','),
    nodes,
    client,
    async masters () {
      const view = await clusterNodes(anyPort())
      return view.filter(v => v.flags.includes('master') && !v.flags.includes('fail')).map(v => ({ address: v.address, id: v.id, slots: slotCount(v.slots) }))
    },
    ownerOf,
    async killMaster (address, afterKill) {
      const node = nodes.find(n => n.address === address)
      if (node === undefined) throw new Error(`no node at ${address}`)
      node.proc.kill('SIGKILL')
      await waitForExit(node.proc)
      afterKill?.()
      await until(async () => {
        for (const n of alive()) {
          if (!/cluster_state:ok/.test(String(await ask(n.port, 'CLUSTER', 'INFO')))) return false
          const view = await clusterNodes(n.port)
          if (view.some(v => v.address === address && v.flags.includes('master') && !v.flags.includes('fail') && slotCount(v.slots) > 0)) return false
        }
        return true
      }, `a replica of ${address} promoted`)
    },
    async pauseReplicaOf (address) {
      const view = await clusterNodes(anyPort())
      const master = view.find(v => v.address === address)
      const replica = view.find(v => v.flags.includes('slave') && v.master === master?.id)
      const node = nodes.find(n => n.address === replica?.address)
      if (node === undefined) throw new Error(`${address} has no replica`)
      node.proc.kill('SIGSTOP')
      // The master drops its link: what it takes from now on reaches no replica.
      await ask(portOf(address), 'CLIENT', 'KILL', 'TYPE', 'replica')
      return () => { node.proc.kill('SIGCONT') }
    },
    async moveSlotOf (key, to) {
      const from = await ownerOf(key)
      if (from === to) return
      const slot = String(await ask(anyPort(), 'CLUSTER', 'KEYSLOT', key))
      const fromPort = portOf(from)
      const toPort = portOf(to)
      const idOf = async (port: number): Promise<string> => String(await ask(port, 'CLUSTER', 'MYID'))
      const fromId = await idOf(fromPort)
      const toId = await idOf(toPort)
      await ask(toPort, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId)
      await ask(fromPort, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId)
      for (;;) {
        const keys = await ask(fromPort, 'CLUSTER', 'GETKEYSINSLOT', slot, '100') as string[]
        if (keys.length === 0) break
        // A busy machine can make a node think the cluster is down for a moment: retry.
        const deadline = Date.now() + 15000
        for (;;) {
          try {
            await ask(fromPort, 'MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys)
            break
          } catch (err) {
            if (!/CLUSTERDOWN|TRYAGAIN/.test((err as Error).message) || Date.now() > deadline) throw err
            await new Promise(resolve => setTimeout(resolve, 100))
          }
        }
      }
      await ask(toPort, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId)
      await ask(fromPort, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId)
      for (const n of alive()) await ask(n.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId).catch(() => {})
    },
    async addMaster () {
      const node = await launch()
      // What `redis-cli --cluster add-node` does, without its emptiness check (it
      // misjudged a node just started): the new node meets the cluster.
      await ask(node.port, 'CLUSTER', 'MEET', '127.0.0.1', String(anyPort()))
      let views = ''
      await until(async () => {
        views = ''
        for (const n of alive()) {
          const view = await clusterNodes(n.port)
          views += `${n.address}: ${view.map(v => `${v.address} ${v.flags.join(',')}`).join('; ')}\n`
          if (!view.some(v => v.address === node.address && v.flags.includes('master'))) return false
        }
        return true
      }, `${node.address} known to every node`).catch(err => { throw new Error(`${(err as Error).message}:\n${views}`) })
      return node.address
    },
    async setNotify (flags, address) {
      for (const n of alive()) if (address === undefined || n.address === address) await ask(n.port, 'CONFIG', 'SET', 'notify-keyspace-events', flags)
    },
    async onEveryNode (...args) {
      for (const n of alive()) await ask(n.port, ...args)
    },
    stop,
  }
}
