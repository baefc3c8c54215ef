import { expect } from 'aegir/chai'
import { EMPTY_STATE, Replay, ReplayError } from '../../node/raft/storage/recovery.ts'
import { entry, hard } from './raft-storage-helpers.ts'
import type { LogState } from '../../node/raft/storage/records.ts'

/** Replays entries first..last of `term`, entry i at offset 100 * i of segment `seq`. */
function append (replay: Replay, first: number, last: number, term: number, seq = 1): void {
  for (let i = first; i <= last; i++) { replay.apply({ kind: 'entry', entry: entry(i, term) }, { seq, offset: 100 * i, bytes: 50 }) }
}

const indexes = (replay: Replay): number[] => {
  const out: number[] = []
  for (let i = replay.index.firstIndex; i < replay.index.firstIndex + replay.index.size; i++) { out.push(i) }
  return out
}

describe('raft storage: replay and the log index (pure)', () => {
  it('keeps the location and term of every live entry, replacing an overwritten suffix', () => {
    const replay = new Replay(EMPTY_STATE)
    append(replay, 1, 6, 1)
    append(replay, 4, 5, 2, 2)
    expect(indexes(replay)).to.deep.equal([1, 2, 3, 4, 5])
    expect(replay.index.get(3)).to.deep.equal({ seq: 1, offset: 300, bytes: 50, term: 1 })
    expect(replay.index.get(4)).to.deep.equal({ seq: 2, offset: 400, bytes: 50, term: 2 })
    expect(replay.index.get(6)).to.equal(undefined)
    expect(replay.finish()).to.deep.include({ lastIndex: 5, lastTerm: 2 })
  })

  it('drops entries up to a compaction and all of them at an install', () => {
    const replay = new Replay(EMPTY_STATE)
    append(replay, 1, 6, 1)
    replay.apply({ kind: 'hard-state', hardState: hard(1, 6) })
    replay.apply({ kind: 'snapshot', mode: 'compact', index: 4, term: 1 })
    expect(indexes(replay)).to.deep.equal([5, 6])
    expect(replay.index.oldestSegment()).to.equal(1)
    replay.apply({ kind: 'snapshot', mode: 'install', index: 20, term: 3 })
    expect(replay.index.size).to.equal(0)
    expect(replay.index.oldestSegment()).to.equal(null)
    append(replay, 21, 21, 3, 4)
    expect(replay.finish()).to.deep.equal({ hardState: hard(1, 6), snapshotIndex: 20, snapshotTerm: 3, lastIndex: 21, lastTerm: 3 })
  })

  it('refuses records that do not fit the log', () => {
    const replay = new Replay(EMPTY_STATE)
    append(replay, 1, 4, 2)
    expect(() => { append(replay, 6, 6, 2) }).to.throw(ReplayError, /log entry 6 does not fit the log \(snapshot 0, last index 4\)/)
    expect(() => { replay.apply({ kind: 'snapshot', mode: 'compact', index: 5, term: 2 }) }).to.throw(ReplayError, /compaction at 5\/2 does not fit/)
    expect(() => { replay.apply({ kind: 'snapshot', mode: 'compact', index: 3, term: 1 }) }).to.throw(ReplayError, /compaction at 3\/1 does not fit/)
    replay.apply({ kind: 'snapshot', mode: 'compact', index: 3, term: 2 })
    expect(() => { append(replay, 3, 3, 2) }).to.throw(ReplayError, /log entry 3 does not fit the log \(snapshot 3, last index 4\)/)
    expect(() => { replay.apply({ kind: 'snapshot', mode: 'install', index: 2, term: 9 }) }).to.throw(ReplayError, /not after the snapshot at 3/)
    replay.apply({ kind: 'hard-state', hardState: hard(2, 9) })
    expect(() => replay.finish()).to.throw(ReplayError, /the commit index 9 is beyond the last log index 4/)
  })

  it('starting from a later segment: entries its head counts but no segment holds must be below the snapshot', () => {
    const head: LogState = { hardState: hard(1, 8), snapshotIndex: 2, snapshotTerm: 1, lastIndex: 8, lastTerm: 1 }
    const missing = new Replay(head)
    append(missing, 9, 10, 1, 5)
    expect(() => missing.finish()).to.throw(ReplayError, /log entries 3\.\.8 are missing \(their segment was deleted\)/)
    const covered = new Replay(head)
    append(covered, 9, 10, 1, 5)
    covered.apply({ kind: 'snapshot', mode: 'compact', index: 8, term: 1 })
    expect(covered.finish()).to.deep.include({ snapshotIndex: 8, lastIndex: 10 })
    expect(indexes(covered)).to.deep.equal([9, 10])
  })

  it('checks a later segment head against the replayed state, taking the larger commit', () => {
    const replay = new Replay(EMPTY_STATE)
    append(replay, 1, 3, 1)
    replay.apply({ kind: 'hard-state', hardState: hard(1, 2) })
    replay.checkHead(2, { hardState: hard(1, 3), snapshotIndex: 0, snapshotTerm: 0, lastIndex: 3, lastTerm: 1 })
    expect(replay.state.hardState).to.deep.equal(hard(1, 3))
    expect(() => { replay.checkHead(3, { hardState: hard(2, 3), snapshotIndex: 0, snapshotTerm: 0, lastIndex: 3, lastTerm: 1 }) })
      .to.throw(ReplayError, /segment 3 starts from another state/)
  })
})
