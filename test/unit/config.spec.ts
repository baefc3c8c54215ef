import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'aegir/chai'
import { CONFIG_FILE, defaultConfig, parseHostPort, readSavedConfig, resolveConfig, writeSavedConfig } from '../../node/config.ts'
import { UserError } from '../../node/errors.ts'

const PEER = '12D3KooWHkW6YdTVUw4nnbmmZUUG1nYQ7D893waHZbqe2jpEWJCX'

describe('config', () => {
  it('fills in defaults: private discovery on loopback, API on 127.0.0.1', () => {
    const config = resolveConfig('/d', {}, {})
    expect(config).to.deep.equal(defaultConfig('/d'))
    expect(config.public).to.equal(false)
    expect(config.dhtKeepPrivateAddresses).to.equal(true)
    expect(config.api).to.equal('127.0.0.1:7070')
  })

  it('public mode drops private addresses from DHT records unless told otherwise', () => {
    expect(resolveConfig('/d', {}, { public: true }).dhtKeepPrivateAddresses).to.equal(false)
    expect(resolveConfig('/d', {}, { public: true, dhtKeepPrivateAddresses: true }).dhtKeepPrivateAddresses).to.equal(true)
  })

  it('lets flags override saved settings, and saved settings override defaults', () => {
    const saved = { cluster: 'saved', listen: ['/ip4/127.0.0.1/tcp/5000'] }
    const config = resolveConfig('/d', saved, { cluster: 'flag', listen: undefined })
    expect(config.cluster).to.equal('flag')
    expect(config.listen).to.deep.equal(['/ip4/127.0.0.1/tcp/5000'])
  })

  const bad: Array<[string, object, RegExp]> = [
    ['an invalid cluster name', { cluster: 'no spaces' }, /--cluster "no spaces" is not a valid name/],
    ['a malformed listen address', { listen: ['/ip4/300.1.1.1/tcp/1'] }, /--listen .* is not a valid multiaddr/],
    ['no listen address', { listen: [] }, /at least one --listen/],
    ['a bootstrap address without a peer id', { bootstrap: ['/ip4/127.0.0.1/tcp/4001'] }, /has no \/p2p\/<peer-id>/],
    ['a malformed bootstrap address', { bootstrap: ['garbage'] }, /--bootstrap "garbage" is not a valid multiaddr/],
    ['an API address without a port', { api: 'localhost' }, /--api "localhost" is not HOST:PORT/],
    ['an API port out of range', { api: '127.0.0.1:70000' }, /is not HOST:PORT/],
    ['an unknown log level', { logLevel: 'loud' }, /--log-level must be one of/],
    ['a zero connection limit', { maxConnections: 0 }, /--max-connections/],
    ['a malformed allowed peer', { allowPeers: ['nope'] }, /allowPeers: "nope" is not a peer id/],
    ['a wrongly typed boolean', { public: 'yes' }, /public must be true or false/],
    ['a malformed CRDT writer', { crdtWriters: ['nope'] }, /crdtWriters: "nope" is not a peer id/],
    ['a CRDT sync interval out of range', { crdtSyncIntervalMs: 10 }, /--crdt-sync-interval-ms must be an integer/]
  ]
  for (const [what, overrides, message] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => resolveConfig('/d', {}, overrides)).to.throw(UserError, message)
    })
  }

  it('accepts a well-formed bootstrap address and peer lists', () => {
    const config = resolveConfig('/d', {}, { bootstrap: [`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`], denyPeers: [PEER] })
    expect(config.bootstrap).to.have.length(1)
  })

  it('parses host:port including IPv6', () => {
    expect(parseHostPort('127.0.0.1:80', 'x')).to.deep.equal({ host: '127.0.0.1', port: 80 })
    expect(parseHostPort('[::1]:8080', 'x')).to.deep.equal({ host: '::1', port: 8080 })
  })

  describe('saved settings', () => {
    let dir: string
    beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'accord-config-')) })
    afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

    it('round-trips through the data dir without the data dir itself', async () => {
      const config = resolveConfig(dir, {}, { cluster: 'c1', bootstrap: [`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`] })
      await writeSavedConfig(config)
      const saved = await readSavedConfig(dir)
      expect(saved).to.not.have.property('dataDir')
      expect(resolveConfig(dir, saved, {})).to.deep.equal(config)
    })

    it('returns nothing when no settings were saved yet', async () => {
      expect(await readSavedConfig(dir)).to.deep.equal({})
    })

    it('rejects a saved file with malformed JSON or unknown settings', async () => {
      await writeFile(join(dir, CONFIG_FILE), '{ nope')
      await expect(readSavedConfig(dir)).to.eventually.be.rejectedWith(UserError, /is not valid JSON/)
      await writeFile(join(dir, CONFIG_FILE), JSON.stringify({ clutser: 'typo' }))
      await expect(readSavedConfig(dir)).to.eventually.be.rejectedWith(UserError, /unknown setting "clutser"/)
      expect(await readFile(join(dir, CONFIG_FILE), 'utf8')).to.include('typo')
    })
  })
})
