import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { ClientTimestamps } from '../../node/pbft/client-timestamps.ts'
import { PbftStorageCorruptionError } from '../../node/pbft/storage.ts'

describe('pbft client timestamps (reserved on disk in blocks) and session opening', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'accord-pbft-client-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  const saved = async (): Promise<{ next: number, opened: boolean }> => JSON.parse(await readFile(join(dir, 'client.json'), 'utf8'))

  it('a new client starts at 1 until its session is open; then a restart starts above everything the last run may have used', async () => {
    const first = await ClientTimestamps.open(dir, 100)
    expect(first.first).to.equal(1)
    expect(first.opened).to.equal(false)
    // crashed before the session-opening request executed: only timestamp 1 was ever sent, so start at 1 again
    const again = await ClientTimestamps.open(dir, 100)
    expect(again.first).to.equal(1)
    await again.markOpened()
    expect(await saved()).to.include({ opened: true })
    // used up to 180: reserved beyond it before use
    await again.reserve(180)
    expect((await saved()).next).to.be.greaterThan(180)
    const third = await ClientTimestamps.open(dir, 100)
    expect(third.opened).to.equal(true)
    expect(third.first).to.be.greaterThan(180)
    expect(third.first).to.equal((await saved()).next - 100)
  })

  it('refuses a damaged reservation file', async () => {
    for (const text of ['{"next": -3, "opened": true}', '{"next": 1.5, "opened": true}', '{"next": 5}', 'not json']) {
      await writeFile(join(dir, 'client.json'), text)
      await expect(ClientTimestamps.open(dir)).to.eventually.be.rejectedWith(PbftStorageCorruptionError, 'client.json')
    }
  })
})
