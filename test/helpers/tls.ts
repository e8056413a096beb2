/**
 * A private CA made with openssl in a temp folder, with a server certificate
 * for 127.0.0.1, a client certificate and a node certificate it signed, and
 * the redis-server arguments that serve TLS with them.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCa {
  readonly dir: string
  readonly caCert: string
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCert: string
  readonly clientKey: string
  /**
   * A certificate (and key) for `localhost` only, no IP address, for server
   * and client use: what the nodes of a cluster or a replication pair
   * present to clients and to each other. A client that connects to
   * 127.0.0.1 must check it against the name `localhost` (as one reaching
   * a managed cluster that announces IP addresses checks its host name).
   */
  readonly nodeCert: string
  readonly nodeKey: string
  /** Another CA's certificate: one that did not sign the server's. */
  readonly otherCaCert: string
  remove (): void
}

function openssl (dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
}

function makeCa (dir: string, name: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`)
}

function signed (dir: string, name: string, ca: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext)
  openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`,
    '-keyout', `${name}.key`, '-out', `${name}.csr`)
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`)
}

export function makeTestCa (): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'sse-gw-tls-'))
  makeCa(dir, 'ca')
  makeCa(dir, 'other-ca')
  signed(dir, 'server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  signed(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n')
  signed(dir, 'node', 'ca', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n')
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    nodeCert: join(dir, 'node.crt'),
    nodeKey: join(dir, 'node.key'),
    otherCaCert: join(dir, 'other-ca.crt'),
    remove () { rmSync(dir, { recursive: true, force: true }) },
  }
}

/** redis-server arguments for TLS on `port` (the unix socket stays plain, for the test's own client). */
export function tlsArgs (ca: TestCa, port: number, clientCertificates: boolean): string[] {
  return ['--tls-port', String(port), '--tls-cert-file', ca.serverCert, '--tls-key-file', ca.serverKey,
    '--tls-ca-cert-file', ca.caCert, '--tls-auth-clients', clientCertificates ? 'yes' : 'no']
}

/**
 * Another server certificate for 127.0.0.1 signed by the test CA (a renewal,
 * as cert-manager makes one), as `<name>.crt` and `<name>.key` in its folder.
 */
export function signServerCert (ca: TestCa, name: string): { cert: string, key: string } {
  signed(ca.dir, name, 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  return { cert: join(ca.dir, `${name}.crt`), key: join(ca.dir, `${name}.key`) }
}

/**
 * The base64 SHA-256 of a certificate's SubjectPublicKeyInfo, as Chromium's
 * `--ignore-certificate-errors-spki-list` takes it.
 */
export function spkiHash (certFile: string): string {
  const pub = execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-pubkey'])
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pub })
  return createHash('sha256').update(der).digest('base64')
}

/**
 * redis-server arguments for a node that speaks TLS only (`--port 0`) with
 * the node certificate, to clients and to the other nodes: the cluster bus
 * (`--tls-cluster`) and replication (`--tls-replication`) too.
 */
export function tlsNodeArgs (ca: TestCa, port: number, clientCertificates: boolean): string[] {
  return ['--port', '0', '--tls-port', String(port), '--tls-cert-file', ca.nodeCert, '--tls-key-file', ca.nodeKey,
    '--tls-ca-cert-file', ca.caCert, '--tls-auth-clients', clientCertificates ? 'yes' : 'no',
    '--tls-cluster', 'yes', '--tls-replication', 'yes']
}

/** ioredis `tls` options for the test's own connections to such a node (by 127.0.0.1, checked as localhost). */
export function tlsNodeClient (ca: TestCa): { ca: string, cert: string, key: string, servername: string } {
  return { ca: readFileSync(ca.caCert, 'utf8'), cert: readFileSync(ca.clientCert, 'utf8'), key: readFileSync(ca.clientKey, 'utf8'), servername: 'localhost' }
}
