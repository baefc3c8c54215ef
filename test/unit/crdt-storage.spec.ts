/**
 * The CRDT service's journal (node/crdt/storage.ts): records come back in
 * order after a reopen; a torn last append is cut off; a damaged frame
 * before the end stops the open; emptying it.
 */
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { CRDT_JOURNAL_FILE, CrdtStorage } from '../../node/crdt/storage.ts'
import { encodeFrame } from '../../node/storage-frames.ts'

describe('crdt storage: the journal', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'accord-crdt-journal-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  const records = [
    { name: 'hits', counter: 1, delta: Uint8Array.from([1, 2, 3]) },
    { name: 'doc', counter: 2, delta: new Uint8Array(5000).fill(7) },
    { name: 'hits', counter: 3, delta: Uint8Array.from([9]) }
  ]
  const path = (): string => join(dir, 'crdt', CRDT_JOURNAL_FILE)

  it('gives back what was appended, in order, after a reopen; empty once cleared', async () => {
    const storage = new CrdtStorage(dir)
    expect(await storage.openJournal()).to.deep.equal([])
    await storage.append(records.slice(0, 2))
    await storage.append(records.slice(2))
    expect(storage.journalBytes).to.equal((await stat(path())).size)
    await storage.close()
    const again = new CrdtStorage(dir)
    expect(await again.openJournal()).to.deep.equal(records)
    await again.clearJournal()
    expect(again.journalBytes).to.equal(0)
    await again.close()
    const third = new CrdtStorage(dir)
    expect(await third.openJournal()).to.deep.equal([])
    await third.close()
  })

  it('cuts off a torn last append and keeps the records before it', async () => {
    const storage = new CrdtStorage(dir)
    await storage.openJournal()
    await storage.append(records)
    await storage.close()
    const whole = (await stat(path())).size
    // a crash in the middle of the next append: a header and part of the payload
    await appendFile(path(), Uint8Array.from([0, 0, 0, 50, 1, 2, 3, 4, 5, 6]))
    const reopened = new CrdtStorage(dir)
    expect(await reopened.openJournal()).to.deep.equal(records)
    expect((await stat(path())).size).to.equal(whole)
    await reopened.append(records.slice(0, 1))
    await reopened.close()
    const last = new CrdtStorage(dir)
    expect(await last.openJournal()).to.deep.equal([...records, records[0]])
    await last.close()
  })

  it('refuses to open a journal damaged before its end, and one with a record that is not a journal record', async () => {
    const storage = new CrdtStorage(dir)
    await storage.openJournal()
    await storage.append(records)
    await storage.close()
    const bytes = await readFile(path())
    bytes[12] ^= 0xff
    await writeFile(path(), bytes)
    await expect(new CrdtStorage(dir).openJournal()).to.eventually.be.rejectedWith(/damaged at byte 0/)
    // a well-framed payload that is not {n, c, d}
    await writeFile(path(), encodeFrame(Uint8Array.from([0xa0])))
    await expect(new CrdtStorage(dir).openJournal()).to.eventually.be.rejectedWith(/not a journal record/)
  })
})
