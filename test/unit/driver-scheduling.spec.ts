import { expect } from 'aegir/chai'
import { CoalescedPass, inSlices } from '../../node/driver-scheduling.ts'
import type { DriverRuntime } from '../../node/runtime.ts'

/** A runtime whose deferred work runs when the test says, on a clock the test moves. */
function manualRuntime (): DriverRuntime & { deferred: Array<() => void>, clockMs: number, runDeferred(): void } {
  const runtime = {
    deferred: [] as Array<() => void>,
    clockMs: 0,
    now: () => runtime.clockMs,
    setTimeout: () => () => {},
    setInterval: () => () => {},
    defer: (run: () => void) => { runtime.deferred.push(run) },
    seed: () => 1,
    runDeferred: () => { for (const run of runtime.deferred.splice(0)) { run() } }
  }
  return runtime
}

const settle = async (): Promise<void> => { await new Promise<void>(resolve => { setImmediate(resolve) }) }

describe('driver scheduling: a coalesced pass', () => {
  it('runs one deferred pass for many requests, and one more for requests made during it', async () => {
    const runtime = manualRuntime()
    let passes = 0
    let release = (): void => {}
    const pass = new CoalescedPass(runtime, async () => {
      passes++
      await new Promise<void>(resolve => { release = resolve })
    }, err => { throw err }, () => true)
    pass.request()
    pass.request()
    expect(pass.running).to.equal(true)
    expect(passes).to.equal(0)
    runtime.runDeferred()
    expect(passes).to.equal(1)
    pass.request()
    pass.request()
    release()
    await settle()
    runtime.runDeferred()
    expect(passes).to.equal(2)
    release()
    await settle()
    expect(runtime.deferred).to.have.length(0)
    expect(pass.running).to.equal(false)
  })

  it('makes no further pass once mayRunAgain() is false, and hands a failed pass to onError', async () => {
    const runtime = manualRuntime()
    const errors: Error[] = []
    let live = true
    const pass = new CoalescedPass(runtime, async () => {
      pass.request()
      live = false
      throw new Error('disk gone')
    }, err => { errors.push(err) }, () => live)
    pass.request()
    runtime.runDeferred()
    await settle()
    expect(errors.map(e => e.message)).to.deep.equal(['disk gone'])
    expect(runtime.deferred).to.have.length(0)
    expect(pass.running).to.equal(false)
  })
})

describe('driver scheduling: work in slices', () => {
  it('yields to the runtime each time a slice is used up, and finishes the work', async () => {
    const runtime = manualRuntime()
    let steps = 0
    // every step takes 2 ms of the runtime's clock: a 5 ms slice holds 3
    const done = inSlices(runtime, () => { runtime.clockMs += 2; return ++steps === 7 }, () => false, 5)
    expect(steps).to.equal(3)
    runtime.runDeferred()
    await settle()
    expect(steps).to.equal(6)
    runtime.runDeferred()
    expect(await done).to.equal(true)
    expect(steps).to.equal(7)
  })

  it('stops at a yield once abandoned() holds', async () => {
    const runtime = manualRuntime()
    let abandoned = false
    const done = inSlices(runtime, () => { runtime.clockMs += 10; return false }, () => abandoned, 5)
    abandoned = true
    runtime.runDeferred()
    expect(await done).to.equal(false)
  })
})
