/**
 * The outbound quota's subnet rule, as pure functions: among the peers the
 * node may choose, take one per subnet (the IPv4 /24 or IPv6 /48 that
 * budgets.ts subnetOf names) before a second from any subnet, so that an
 * attacker who holds one network cannot fill every outbound choice however
 * many peer ids it puts in the routing table.
 *
 * Loopback is not exempt: 127.0.0.0/8 splits into /24s like any IPv4
 * network (127.1.0.1 and 127.2.0.1 are two subnets) and ::1 is one /48.
 * The rule only orders candidates and never refuses one, so a local
 * cluster where every peer is on 127.0.0.1 (one subnet) is served exactly
 * as before: no other subnet is left, and the quota takes several from it.
 */
import { defaultMultiaddrSorter } from '@libp2p/utils'
import { subnetOf } from './budgets.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The prefix lengths that make one subnet (budgets.ts ConnectionBudgets subnetIpv4PrefixBits / subnetIpv6PrefixBits). */
export interface SubnetPrefixes {
  ipv4Bits: number
  ipv6Bits: number
}

/** Where peers with no IP address at all (DNS names only, relayed) count: together, as one subnet. */
export const UNKNOWN_SUBNET = 'unknown'

/**
 * The subnet a peer counts in. When it is connected, the remote address of
 * that connection counts: for a peer that dialled in, the source address of
 * its TCP connection, which it cannot choose. Otherwise its addresses (which
 * the peer, or whoever told the DHT about it, claimed) are taken in the
 * order libp2p dials them (public first, loopback last) and the first with
 * an IP address counts; the quota checks the address its dial reached
 * afterwards (see `OutboundQuota`), so a claim in another subnet buys
 * nothing.
 */
export function peerSubnet (connected: Multiaddr | undefined, addresses: readonly Multiaddr[], prefixes: SubnetPrefixes): string {
  const ordered = connected != null ? [connected] : defaultMultiaddrSorter([...addresses])
  for (const address of ordered) {
    const subnet = subnetOf(address, prefixes.ipv4Bits, prefixes.ipv6Bits)
    if (subnet != null) { return subnet.subnet }
  }
  return UNKNOWN_SUBNET
}

/** A candidate, its subnet, and how many peers of that subnet come before it (already chosen, or earlier in the order). */
export interface RankedCandidate<T> {
  candidate: T
  subnet: string
  rank: number
}

/**
 * Order `candidates` so that subnets take turns: a candidate's rank is the
 * number of peers of its subnet already chosen (`taken`, one entry per
 * chosen peer) plus the candidates of its subnet ahead of it in the input;
 * the result is sorted by rank, and keeps the input order within a rank
 * (the quota shuffles its candidates first). So the first of every subnet
 * with nothing chosen comes before the second of any subnet, and more per
 * subnet only once no other subnet is left.
 */
export function spreadOverSubnets<T> (candidates: readonly T[], subnetOfCandidate: (candidate: T) => string, taken: Iterable<string>): Array<RankedCandidate<T>> {
  const counts = new Map<string, number>()
  for (const subnet of taken) { counts.set(subnet, (counts.get(subnet) ?? 0) + 1) }
  const ranked = candidates.map(candidate => {
    const subnet = subnetOfCandidate(candidate)
    const rank = counts.get(subnet) ?? 0
    counts.set(subnet, rank + 1)
    return { candidate, subnet, rank }
  })
  // Array.prototype.sort is stable
  return ranked.sort((a, b) => a.rank - b.rank)
}
