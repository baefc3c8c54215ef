/** Protocol ids and topics, versioned (see ARCHITECTURE.md). */
export const PRIVATE_DHT_PROTOCOL = '/accord/kad/1.0.0'
/** The public Amino DHT's protocol (public mode). */
export const PUBLIC_DHT_PROTOCOL = '/ipfs/kad/1.0.0'

/**
 * Every node registers this protocol for its cluster. identify announces it,
 * so a peer's protocol list tells whether it is a member of our cluster
 * without an extra round trip; the handler answers with the node's summary.
 */
export function clusterProtocol (cluster: string): string {
  return `/accord/cluster/${cluster}/1.0.0`
}

export function membershipTopic (cluster: string): string {
  return `accord/${cluster}/membership/1`
}

/** The rendezvous string whose CID cluster members provide on the public DHT. */
export function rendezvousKey (cluster: string): string {
  return `accord/${cluster}/rendezvous/1`
}

/**
 * Cluster-hello streams per connection, each way. accord itself opens none
 * (identify's protocol list does its job); the handler is there for other
 * tools, so a peer gets a couple and no more.
 */
export const CLUSTER_HELLO_STREAMS_MAX = 2

/** Largest cluster-hello answer we read. */
export const CLUSTER_HELLO_BYTES_MAX = 4096
