import { expect } from 'aegir/chai'
import { PeerRateLimiter, TokenBucket } from '../../node/pbft/rate-limit.ts'

describe('pbft rate limits (token buckets on an injected clock)', () => {
  it('allows a burst, then refills at the rate', () => {
    const bucket = new TokenBucket(10, 3, 0)
    expect([bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)]).to.deep.equal([true, true, true, false])
    // 10 per second: one token per 100 ms
    expect(bucket.take(99)).to.equal(false)
    expect(bucket.take(100)).to.equal(true)
    expect(bucket.take(100)).to.equal(false)
    // refills up to the burst, no more
    expect([bucket.take(10_000), bucket.take(10_000), bucket.take(10_000), bucket.take(10_000)]).to.deep.equal([true, true, true, false])
  })

  it('refills nothing when the clock goes back', () => {
    const bucket = new TokenBucket(1000, 1, 1000)
    expect(bucket.take(1000)).to.equal(true)
    expect(bucket.take(500)).to.equal(false)
    expect(bucket.take(1000)).to.equal(false)
  })

  it('refuses impossible settings', () => {
    expect(() => new TokenBucket(0, 1, 0)).to.throw(RangeError)
    expect(() => new TokenBucket(1, 0, 0)).to.throw(RangeError)
  })

  it('limits each peer and each message type on its own', () => {
    const limiter = new PeerRateLimiter({ prepare: { ratePerSecond: 1, burst: 2 }, 'view-change': { ratePerSecond: 1, burst: 1 } })
    expect([limiter.allow('a', 'prepare', 0), limiter.allow('a', 'prepare', 0), limiter.allow('a', 'prepare', 0)]).to.deep.equal([true, true, false])
    // another type of the same peer, and the same type of another peer, have buckets of their own
    expect(limiter.allow('a', 'view-change', 0)).to.equal(true)
    expect(limiter.allow('a', 'view-change', 0)).to.equal(false)
    expect(limiter.allow('b', 'prepare', 0)).to.equal(true)
    expect(limiter.allow('a', 'prepare', 1000)).to.equal(true)
  })

  it('keeps buckets for at most peersMax peers, forgetting the least recently seen', () => {
    const limiter = new PeerRateLimiter({ commit: { ratePerSecond: 1, burst: 1 } }, 2)
    expect(limiter.allow('a', 'commit', 0)).to.equal(true)
    expect(limiter.allow('b', 'commit', 0)).to.equal(true)
    expect(limiter.allow('a', 'commit', 0)).to.equal(false)
    expect(limiter.allow('c', 'commit', 0)).to.equal(true)
    expect(limiter.trackedPeers).to.equal(2)
    // b was least recently seen: forgotten, so it starts with a full bucket; a is still limited
    expect(limiter.allow('b', 'commit', 0)).to.equal(true)
    expect(limiter.allow('c', 'commit', 0)).to.equal(false)
  })
})
