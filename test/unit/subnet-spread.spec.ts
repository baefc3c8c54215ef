/**
 * The outbound quota's subnet rule on its own: which address a peer counts
 * by, and the order that lets subnets take turns.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'aegir/chai'
import { peerSubnet, spreadOverSubnets, UNKNOWN_SUBNET } from '../../node/subnet-spread.ts'

const PREFIXES = { ipv4Bits: 24, ipv6Bits: 48 }
const at = (...addresses: string[]): string => peerSubnet(undefined, addresses.map(a => multiaddr(a)), PREFIXES)

describe('subnet spread', () => {
  describe('the subnet a peer counts in', () => {
    it('is the /24 of an IPv4 address, the /48 of an IPv6 one, and the /24 of the IPv4 address in an IPv4-mapped one', () => {
      expect(at('/ip4/192.0.2.7/tcp/1')).to.equal('192.0.2.0/24')
      expect(at('/ip6/2001:db8:1:2::5/tcp/1')).to.equal('2001:db8:1:0:0:0:0:0/48')
      expect(at('/ip6/::ffff:192.0.2.9/tcp/1')).to.equal(at('/ip4/192.0.2.7/tcp/1'))
      expect(peerSubnet(undefined, [multiaddr('/ip4/10.1.130.7/tcp/1')], { ipv4Bits: 16, ipv6Bits: 48 })).to.equal('10.1.0.0/16')
    })

    it('splits loopback like any other network: 127.1.0.1 and 127.2.0.1 are two subnets, ::1 a third', () => {
      expect(at('/ip4/127.1.0.1/tcp/1')).to.equal('127.1.0.0/24')
      expect(at('/ip4/127.2.0.1/tcp/1')).to.equal('127.2.0.0/24')
      expect(at('/ip4/127.0.0.1/tcp/1')).to.equal(at('/ip4/127.0.0.200/tcp/2'))
      expect(at('/ip6/::1/tcp/1')).to.equal('0:0:0:0:0:0:0:0/48')
    })

    it('of several addresses, takes the first libp2p would dial: public before private before loopback, whatever order they were listed in', () => {
      expect(at('/ip4/127.0.0.1/tcp/1', '/ip4/10.0.0.5/tcp/1', '/ip4/81.2.69.7/tcp/1')).to.equal('81.2.69.0/24')
      expect(at('/ip4/127.0.0.1/tcp/1', '/ip4/10.0.0.5/tcp/1')).to.equal('10.0.0.0/24')
      expect(at('/dns4/example.com/tcp/1', '/ip4/127.0.0.1/tcp/1')).to.equal('127.0.0.0/24')
    })

    it('is where its connection is when it has one, not what it claims', () => {
      const claimed = [multiaddr('/ip4/198.51.100.7/tcp/1')]
      expect(peerSubnet(multiaddr('/ip4/192.0.2.9/tcp/40000'), claimed, PREFIXES)).to.equal('192.0.2.0/24')
    })

    it('is UNKNOWN_SUBNET, one group for all such peers, without any IP address', () => {
      expect(at('/dns4/example.com/tcp/1')).to.equal(UNKNOWN_SUBNET)
      expect(at()).to.equal(UNKNOWN_SUBNET)
    })
  })

  describe('the order of the candidates', () => {
    const spread = (candidates: string[], taken: string[] = []): string[] =>
      spreadOverSubnets(candidates, c => c.split('-')[0], taken).map(r => r.candidate)

    it('takes one of each subnet before a second of any, keeping the input order within a turn', () => {
      expect(spread(['a-1', 'a-2', 'a-3', 'b-1', 'a-4', 'c-1', 'b-2'])).to.deep.equal(['a-1', 'b-1', 'c-1', 'a-2', 'b-2', 'a-3', 'a-4'])
      expect(spreadOverSubnets(['a-1', 'a-2', 'b-1'], c => c.split('-')[0], []).map(r => `${r.candidate}:${r.subnet}:${r.rank}`))
        .to.deep.equal(['a-1:a:0', 'b-1:b:0', 'a-2:a:1'])
    })

    it('counts the subnets of peers already chosen', () => {
      expect(spread(['b-1', 'a-1', 'a-2', 'c-1'], ['b', 'c', 'c'])).to.deep.equal(['a-1', 'b-1', 'a-2', 'c-1'])
    })

    it('takes several of one subnet when no other is left, in the input order', () => {
      expect(spread(['a-3', 'a-1', 'a-2'])).to.deep.equal(['a-3', 'a-1', 'a-2'])
      expect(spread([])).to.deep.equal([])
    })
  })
})
