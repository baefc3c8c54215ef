import { expect } from 'aegir/chai'
import { defaultConfig, parseEncrypters, resolveConfig, SAVED_KEYS } from '../../node/config.ts'
import { UserError } from '../../node/errors.ts'
import { connectionEncrypters } from '../../node/libp2p.ts'

describe('config: connection encrypters', () => {
  it('offers Noise first, then TLS 1.3, by default, and saves the choice', () => {
    expect(defaultConfig('/d').encrypters).to.deep.equal(['noise', 'tls'])
    expect(SAVED_KEYS).to.include('encrypters')
    expect(resolveConfig('/d', { encrypters: ['tls'] }, {}).encrypters).to.deep.equal(['tls'])
    expect(resolveConfig('/d', { encrypters: ['tls'] }, { encrypters: ['tls', 'noise'] }).encrypters).to.deep.equal(['tls', 'noise'])
  })

  it('parses --encrypters as a comma-separated list', () => {
    expect(parseEncrypters(undefined)).to.equal(undefined)
    expect(parseEncrypters('noise, tls')).to.deep.equal(['noise', 'tls'])
    expect(parseEncrypters('tls')).to.deep.equal(['tls'])
  })

  const bad: Array<[string, unknown, RegExp]> = [
    ['an empty list', [], /--encrypters must list noise, tls or both \(there is no plaintext option\)/],
    ['an empty flag', parseEncrypters(' , '), /--encrypters must list/],
    ['plaintext', ['plaintext'], /--encrypters: "plaintext" is not one of noise, tls or both \(there is no plaintext option\)/],
    ['plaintext beside noise', ['noise', 'plaintext'], /"plaintext" is not one of/],
    ['a name twice', ['noise', 'noise'], /--encrypters lists an encrypter twice/],
    ['not a list', 'noise', /--encrypters must list/],
    ['a list of non-strings', [1], /--encrypters must list/]
  ]
  for (const [what, encrypters, message] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => resolveConfig('/d', {}, { encrypters } as never)).to.throw(UserError, message)
    })
  }

  it('builds no libp2p node from an empty list of encrypters', () => {
    expect(() => connectionEncrypters([])).to.throw(UserError, /at least one connection encrypter/)
  })
})
