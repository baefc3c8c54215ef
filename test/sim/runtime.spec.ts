import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { runUntilAsync, simRuntime } from './runtime.ts'
import { Scheduler } from './scheduler.ts'

describe('sim: the drivers\' runtime on virtual time', () => {
  it('runs timeouts and intervals at their virtual times, and never once cancelled', async () => {
    const scheduler = new Scheduler()
    const runtime = simRuntime(scheduler, createRng(1))
    const ran: string[] = []
    runtime.setTimeout(() => { ran.push(`timeout@${runtime.now()}`) }, 15)
    const cancelTimeout = runtime.setTimeout(() => { ran.push('cancelled timeout') }, 5)
    const cancelInterval = runtime.setInterval(() => { ran.push(`tick@${runtime.now()}`) }, 10)
    runtime.defer(() => { ran.push(`deferred@${runtime.now()}`) })
    cancelTimeout()
    scheduler.after(25, cancelInterval)
    await runUntilAsync(scheduler, 100)
    expect(ran).to.deep.equal(['deferred@0', 'tick@10', 'timeout@15', 'tick@20'])
    expect(scheduler.now).to.equal(100)
  })

  it('draws seeds from the seeded rng', () => {
    const seeds = (seed: number): number[] => {
      const runtime = simRuntime(new Scheduler(), createRng(seed))
      return [runtime.seed(), runtime.seed()]
    }
    expect(seeds(7)).to.deep.equal(seeds(7))
    expect(seeds(7)).to.not.deep.equal(seeds(8))
  })

  it('runUntilAsync lets every continuation of an event run, however deep, before the next event', async () => {
    const scheduler = new Scheduler()
    const order: string[] = []
    const chain = async (depth: number): Promise<void> => {
      for (let i = 0; i < depth; i++) { await Promise.resolve() }
      order.push(`continuation of a (${depth} awaits deep)`)
    }
    scheduler.after(1, () => {
      order.push('a')
      void chain(20)
    })
    scheduler.after(1, () => { order.push('b') })
    await runUntilAsync(scheduler, 10)
    expect(order).to.deep.equal(['a', 'continuation of a (20 awaits deep)', 'b'])
  })

  it('runUntilAsync stops before the event at which stop() holds, and rethrows what an event throws', async () => {
    const scheduler = new Scheduler()
    let count = 0
    const increment = (): void => { count++ }
    for (let t = 1; t <= 5; t++) { scheduler.after(t, increment) }
    await runUntilAsync(scheduler, 10, () => count === 3)
    expect(count).to.equal(3)
    expect(scheduler.now).to.equal(3)
    scheduler.after(1, () => { throw new Error('broken') })
    await expect(runUntilAsync(scheduler, 10)).to.eventually.be.rejectedWith('broken')
  })
})
