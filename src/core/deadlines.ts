/**
 * Deadlines for many items under one timer: a binary min-heap that knows each
 * item's place, so removing an item (a stream that closed early) is
 * O(log n) and leaves nothing behind.
 *
 * One Node timer per open stream costs a Timeout object, its closure and, as
 * every stream's duration differs, a timer list of its own: about 300 bytes
 * per idle connection. Here an item costs one array slot and the two fields
 * of {@link DeadlineSlot}.
 */

/** What an item carries for the queue (kept on the item, not in a side map). */
export interface DeadlineSlot {
  /** Milliseconds since the epoch. */
  deadlineAt: number
  /** Place in the heap; -1 when not queued. */
  deadlineIndex: number
}

/** Longest delay a Node timer takes (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1

export class Deadlines<T extends DeadlineSlot> {
  private readonly heap: T[] = []
  private timer: NodeJS.Timeout | undefined
  private timerAt = Infinity

  /**
   * @param onDue called once for each item whose deadline has passed, after
   *   it left the queue.
   * @param now the clock (tests pass their own).
   */
  constructor (
    private readonly onDue: (item: T) => void,
    private readonly now: () => number = Date.now
  ) {}

  get size (): number {
    return this.heap.length
  }

  /** Queues `item` to be due at `at` (ms since the epoch); re-queues it if already queued. */
  add (item: T, at: number): void {
    if (item.deadlineIndex >= 0) this.remove(item)
    item.deadlineAt = at
    item.deadlineIndex = this.heap.length
    this.heap.push(item)
    this.up(item.deadlineIndex)
    this.arm()
  }

  /** Takes `item` out of the queue; nothing happens if it is not queued. */
  remove (item: T): void {
    const i = item.deadlineIndex
    if (i < 0 || this.heap[i] !== item) return
    item.deadlineIndex = -1
    const last = this.heap.pop() as T
    if (i < this.heap.length) {
      this.heap[i] = last
      last.deadlineIndex = i
      this.down(i)
      this.up(last.deadlineIndex)
    }
    if (this.heap.length === 0) this.disarm()
  }

  /** Stops the timer; queued items stay queued and are never reported. */
  stop (): void {
    this.disarm()
  }

  /** Reports every item that is due now (the timer calls this). */
  runDue (): void {
    const now = this.now()
    for (;;) {
      const first = this.heap[0]
      if (first === undefined || first.deadlineAt > now) break
      this.remove(first)
      this.onDue(first)
    }
    this.timerAt = Infinity
    this.timer = undefined
    this.arm()
  }

  private arm (): void {
    const first = this.heap[0]
    if (first === undefined || first.deadlineAt >= this.timerAt) return
    this.disarm()
    this.timerAt = first.deadlineAt
    const delay = Math.min(Math.max(0, first.deadlineAt - this.now()), MAX_TIMER_MS)
    this.timer = setTimeout(() => { this.runDue() }, delay)
    this.timer.unref()
  }

  private disarm (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.timerAt = Infinity
  }

  private up (i: number): void {
    const heap = this.heap
    const item = heap[i] as T
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = heap[p] as T
      if (parent.deadlineAt <= item.deadlineAt) break
      heap[i] = parent
      parent.deadlineIndex = i
      i = p
    }
    heap[i] = item
    item.deadlineIndex = i
  }

  private down (i: number): void {
    const heap = this.heap
    const n = heap.length
    const item = heap[i] as T
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && (heap[r] as T).deadlineAt < (heap[l] as T).deadlineAt ? r : l
      const child = heap[c] as T
      if (child.deadlineAt >= item.deadlineAt) break
      heap[i] = child
      child.deadlineIndex = i
      i = c
    }
    heap[i] = item
    item.deadlineIndex = i
  }
}
