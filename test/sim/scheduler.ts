/**
 * Virtual time for the simulator: a priority queue of callbacks ordered by
 * (time, insertion order), so two events at the same virtual millisecond
 * always run in the order they were scheduled. Nothing here reads a clock.
 */
interface ScheduledEvent {
  timeMs: number
  order: number
  run(): void
}

export class Scheduler {
  private heap: ScheduledEvent[] = []
  private scheduled = 0
  private nowMs = 0
  /** Events run so far. */
  executed = 0

  get now (): number {
    return this.nowMs
  }

  get size (): number {
    return this.heap.length
  }

  /** Runs `run` `delayMs` (>= 0) virtual milliseconds from now. */
  after (delayMs: number, run: () => void): void {
    this.at(this.nowMs + delayMs, run)
  }

  at (timeMs: number, run: () => void): void {
    if (!(timeMs >= this.nowMs)) { throw new RangeError(`scheduler: cannot schedule at ${timeMs}, now is ${this.nowMs}`) }
    this.push({ timeMs, order: this.scheduled++, run })
  }

  /** Runs the next event if it is due at or before `untilMs`; false when there is none. */
  runNext (untilMs: number): boolean {
    const next = this.heap[0]
    if (next === undefined || next.timeMs > untilMs) { return false }
    this.pop()
    this.nowMs = next.timeMs
    this.executed++
    next.run()
    return true
  }

  /**
   * Runs events until `stop()` holds (checked before every event) or until
   * none is due by `untilMs`, in which case the clock moves to `untilMs`.
   */
  runUntil (untilMs: number, stop: () => boolean = () => false): void {
    while (!stop()) {
      if (!this.runNext(untilMs)) {
        if (untilMs > this.nowMs) { this.nowMs = untilMs }
        return
      }
    }
  }

  private push (event: ScheduledEvent): void {
    const heap = this.heap
    heap.push(event)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i], heap[parent])) { break }
      [heap[i], heap[parent]] = [heap[parent], heap[i]]
      i = parent
    }
  }

  private pop (): void {
    const heap = this.heap
    const last = heap.pop()
    if (last === undefined || heap.length === 0) { return }
    heap[0] = last
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let smallest = i
      if (left < heap.length && before(heap[left], heap[smallest])) { smallest = left }
      if (right < heap.length && before(heap[right], heap[smallest])) { smallest = right }
      if (smallest === i) { return }
      [heap[i], heap[smallest]] = [heap[smallest], heap[i]]
      i = smallest
    }
  }
}

function before (a: ScheduledEvent, b: ScheduledEvent): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.order < b.order)
}
