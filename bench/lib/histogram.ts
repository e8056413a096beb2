/**
 * A fixed-bucket latency histogram, cheap enough to record every delivery:
 * 0.1 ms buckets up to 100 ms, 1 ms buckets up to 10 s, one overflow bucket.
 * Workers send the non-zero buckets to the parent, which merges them.
 */

const FINE_LIMIT_MS = 100
const FINE_BUCKETS = 1000
const COARSE_LIMIT_MS = 10000
const COARSE_BUCKETS = COARSE_LIMIT_MS - FINE_LIMIT_MS
export const BUCKETS = FINE_BUCKETS + COARSE_BUCKETS + 1

/** Non-zero buckets as `[index, count]` pairs (what crosses the IPC channel). */
export type SparseHistogram = Array<[number, number]>

export class Histogram {
  readonly counts = new Float64Array(BUCKETS)
  total = 0
  sum = 0
  max = 0

  record (ms: number): void {
    const v = ms < 0 ? 0 : ms
    let i: number
    if (v < FINE_LIMIT_MS) i = Math.floor(v * 10)
    else if (v < COARSE_LIMIT_MS) i = FINE_BUCKETS + Math.floor(v - FINE_LIMIT_MS)
    else i = BUCKETS - 1
    this.counts[i] = (this.counts[i] as number) + 1
    this.total++
    this.sum += v
    if (v > this.max) this.max = v
  }

  reset (): void {
    this.counts.fill(0)
    this.total = 0
    this.sum = 0
    this.max = 0
  }

  toSparse (): SparseHistogram {
    const out: SparseHistogram = []
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) out.push([i, this.counts[i] as number])
    return out
  }

  add (sparse: SparseHistogram, sum = 0, max = 0): void {
    for (const [i, n] of sparse) {
      this.counts[i] = (this.counts[i] as number) + n
      this.total += n
    }
    this.sum += sum
    if (max > this.max) this.max = max
  }

  /** Upper bound of the bucket holding the `p`-th percentile, in ms; null when empty. */
  percentile (p: number): number | null {
    if (this.total === 0) return null
    const rank = Math.ceil((p / 100) * this.total)
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] as number
      if (seen >= rank) return upperBound(i)
    }
    return upperBound(BUCKETS - 1)
  }

  get mean (): number | null {
    return this.total === 0 ? null : this.sum / this.total
  }
}

function upperBound (i: number): number {
  if (i < FINE_BUCKETS) return round((i + 1) / 10)
  if (i < BUCKETS - 1) return FINE_LIMIT_MS + (i - FINE_BUCKETS) + 1
  return Infinity
}

function round (n: number): number {
  return Math.round(n * 10) / 10
}
