import { expect } from 'aegir/chai'
import { SessionPool } from '../../node/raft/session-pool.ts'
import type { ClientSession, KvApplyResult } from '../../protocols/kv/index.ts'

describe('raft session pool (sessions for writes that bring none)', () => {
  it('lends a new session at sequence 1, then the same one at the next sequence once it is back', () => {
    const pool = new SessionPool('p')
    const first = pool.borrow()
    expect(first).to.deep.equal({ clientId: 'p-1', sequence: 1 })
    pool.giveBack(first)
    expect(pool.borrow()).to.deep.equal({ clientId: 'p-1', sequence: 2 })
  })

  it('never lends one session to two borrowers at once', () => {
    const pool = new SessionPool('p')
    const lent = Array.from({ length: 5 }, () => pool.borrow())
    expect(new Set(lent.map(s => s.clientId)).size).to.equal(5)
    for (const session of lent) { pool.giveBack(session) }
    const again = Array.from({ length: 5 }, () => pool.borrow())
    expect(new Set(again.map(s => s.clientId)).size).to.equal(5)
    expect(again.every(s => s.sequence === 2)).to.equal(true)
  })

  it('gives a fresh session to replace one the state machine evicted', () => {
    const pool = new SessionPool('p')
    pool.giveBack(pool.borrow())
    expect(pool.fresh()).to.deep.equal({ clientId: 'p-2', sequence: 1 })
  })

  it('keeps at most idleMax sessions; the rest are dropped', () => {
    const pool = new SessionPool('p', 3)
    const lent = Array.from({ length: 5 }, () => pool.borrow())
    for (const session of lent) { pool.giveBack(session) }
    expect(pool.idle).to.equal(3)
    const reused = Array.from({ length: 4 }, () => pool.borrow())
    expect(reused.filter(s => s.sequence === 2)).to.have.length(3)
    expect(reused.filter(s => s.sequence === 1)).to.deep.equal([{ clientId: 'p-6', sequence: 1 }])
  })

  it('withSession gives the session back after a write, and after a failed one', async () => {
    const pool = new SessionPool('p')
    const ok: KvApplyResult = { ok: true, index: 7, type: 'put' }
    expect(await pool.withSession(async () => ok)).to.equal(ok)
    await expect(pool.withSession(async () => { throw new Error('timed out') })).to.be.rejectedWith(/timed out/)
    // the failed write may still apply later: its sequence is never used again
    expect(pool.borrow()).to.deep.equal({ clientId: 'p-1', sequence: 3 })
  })

  it('withSession retries once with a fresh session when the borrowed one was evicted', async () => {
    const pool = new SessionPool('p')
    pool.giveBack(pool.borrow())
    const tried: ClientSession[] = []
    const result = await pool.withSession(async session => {
      tried.push(session)
      return session.sequence > 1
        ? { ok: false, index: 9, reason: 'session-expired', message: 'evicted' }
        : { ok: true, index: 10, type: 'put' }
    })
    expect(tried).to.deep.equal([{ clientId: 'p-1', sequence: 2 }, { clientId: 'p-2', sequence: 1 }])
    expect(result).to.deep.include({ ok: true, index: 10 })
    expect(pool.borrow()).to.deep.equal({ clientId: 'p-2', sequence: 2 })
  })
})
