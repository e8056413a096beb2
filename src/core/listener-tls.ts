/**
 * The public listener's certificate and key (TLS_CERT_FILE, TLS_KEY_FILE):
 * read and checked as a pair, at start-up by loadConfig (a bad file stops
 * the start with the variable's name) and again each time the files change
 * (http/tls-reloader.ts), so a rotation that leaves a half-written pair
 * keeps the old one in service instead of serving a broken handshake.
 * No I/O of its own: the caller hands in the file reader. Messages name
 * variables and paths, never the key's text.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { ConfigError } from './errors.js'

/** The files the listener's TLS comes from, and their text as last read and checked. */
export interface ListenerTls {
  readonly certFile: string
  readonly keyFile: string
  /** PEM: the server certificate first, then any intermediates (cert-manager's `tls.crt`). */
  readonly cert: string
  /** PEM private key of the first certificate (not encrypted). */
  readonly key: string
  /** When the first certificate stops being valid (ms since epoch). */
  readonly notAfterMs: number
}

function readNamed (read: (path: string) => string, name: string, path: string, what: string): string {
  try {
    return read(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? 'error'})`
    throw new ConfigError(`${name} names ${path}, which ${why}: give the path of ${what}`)
  }
}

/**
 * Reads `certFile` and `keyFile` with `read` and checks that they are a
 * PEM certificate (chain) and the unencrypted key of its first certificate.
 * Throws {@link ConfigError} naming the variable to fix.
 */
export function readListenerTls (certFile: string, keyFile: string, read: (path: string) => string): ListenerTls {
  const cert = readNamed(read, 'TLS_CERT_FILE', certFile, 'a PEM certificate file (the server certificate, then its intermediates)')
  if (!/-----BEGIN CERTIFICATE-----/.test(cert)) throw new ConfigError(`TLS_CERT_FILE names ${certFile}, which holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`)
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch {
    throw new ConfigError(`TLS_CERT_FILE names ${certFile}, whose certificate cannot be read: give a PEM certificate file`)
  }
  const key = readNamed(read, 'TLS_KEY_FILE', keyFile, 'the PEM private key of TLS_CERT_FILE')
  let keyObject: KeyObject
  try {
    keyObject = createPrivateKey(key)
  } catch {
    throw new ConfigError(`TLS_KEY_FILE names ${keyFile}, which holds no readable PEM private key (an encrypted key is not supported: decrypt it with \`openssl pkey\`)`)
  }
  if (!x509.checkPrivateKey(keyObject)) {
    throw new ConfigError(`TLS_KEY_FILE names ${keyFile}, which is not the key of the certificate in TLS_CERT_FILE (${certFile})`)
  }
  return Object.freeze({ certFile, keyFile, cert, key, notAfterMs: Date.parse(x509.validTo) })
}
