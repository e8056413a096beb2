/**
 * FNV-1a (32 bits) of a string's UTF-16 code units: cheap, well spread and
 * stable across processes and versions. Cursors name channels by it (so its
 * output is part of the cursor format and must never change) and the
 * blocking reader places keys on shards with it.
 */

const FNV_OFFSET_BASIS = 0x811c9dc5
const FNV_PRIME = 0x01000193

/** The FNV-1a hash of `text`, an unsigned 32-bit integer. */
export function fnv1a (text: string): number {
  let h = FNV_OFFSET_BASIS
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME) >>> 0
  return h
}
