/**
 * The KV store as the driver sees it, with the simulator watching: every
 * entry applied or skipped, and every snapshot installed (from the leader,
 * or restored at start), is reported before it takes effect.
 */
import type { RaftStateMachine, StateMachineSnapshotCheck, StateMachineSnapshotEncoder } from '../../node/raft/driver.ts'
import type { KvApplyResult, KvStateMachine } from '../../protocols/kv/index.ts'

export interface KvWatcher {
  /** Entry `index` is applied (`data`) or skipped (null: not for the state machine). */
  applying(index: number, data: Uint8Array | null): void
  /** A checked snapshot of the state at `index` replaces the state. */
  installing(index: number, data: Uint8Array): void
}

export class ObservedKv implements RaftStateMachine {
  readonly kv: KvStateMachine
  private readonly watcher: KvWatcher

  constructor (kv: KvStateMachine, watcher: KvWatcher) {
    this.kv = kv
    this.watcher = watcher
  }

  get appliedIndex (): number {
    return this.kv.appliedIndex
  }

  apply (index: number, data: Uint8Array): KvApplyResult {
    this.watcher.applying(index, data)
    return this.kv.apply(index, data)
  }

  skip (index: number): void {
    this.watcher.applying(index, null)
    this.kv.skip(index)
  }

  checkSnapshot (data: Uint8Array): StateMachineSnapshotCheck {
    const check = this.kv.checkSnapshot(data)
    return {
      decodeSome: workBytes => check.decodeSome(workBytes),
      result: () => check.result(),
      install: () => {
        const result = check.result()
        if (result.ok) { this.watcher.installing(result.appliedIndex, data) }
        check.install()
      }
    }
  }

  beginSnapshot (): StateMachineSnapshotEncoder {
    return this.kv.beginSnapshot()
  }
}
