/**
 * What accord's services use of the libp2p node they run in: the
 * registrar, the connection manager, the peer store and the node's events.
 *
 * A js-libp2p service gets these as components; `hostFromComponents` puts
 * them behind the few calls of the Libp2p interface that the services
 * make, so the same code runs inside accord's own node and inside an
 * app's. A started Libp2p object is itself an AccordHost (tests pass one).
 */
import type { AbortOptions, Connection, Libp2pEvents, PeerId, PeerStore, Stream, StreamHandler, StreamHandlerOptions, TypedEventTarget } from '@libp2p/interface'
import type { AddressManager, ConnectionManager, Registrar } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface AccordHost {
  readonly peerId: PeerId
  readonly peerStore: PeerStore
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
  unhandle(protocol: string): Promise<void>
  dial(peer: PeerId | Multiaddr | Multiaddr[], options?: AbortOptions): Promise<Connection>
  /** A stream of the first of `protocol` (in order) that the peer speaks: `stream.protocol` says which. */
  dialProtocol(peer: PeerId | Multiaddr | Multiaddr[], protocol: string | string[], options?: AbortOptions): Promise<Stream>
  getConnections(peer?: PeerId): Connection[]
  getMultiaddrs(): Multiaddr[]
  addEventListener: TypedEventTarget<Libp2pEvents>['addEventListener']
  removeEventListener: TypedEventTarget<Libp2pEvents>['removeEventListener']
}

/** The libp2p components every accord service takes. */
export interface HostComponents {
  peerId: PeerId
  peerStore: PeerStore
  registrar: Registrar
  connectionManager: ConnectionManager
  addressManager: AddressManager
  events: TypedEventTarget<Libp2pEvents>
}

export function hostFromComponents (components: HostComponents): AccordHost {
  const { registrar, connectionManager, events } = components
  return {
    peerId: components.peerId,
    peerStore: components.peerStore,
    handle: async (protocol, handler, options) => { await registrar.handle(protocol, handler, options) },
    unhandle: async (protocol) => { await registrar.unhandle(protocol) },
    // as Libp2p.dial does: an app's own dials go ahead of background ones
    dial: async (peer, options) => connectionManager.openConnection(peer, { priority: 75, ...options }),
    dialProtocol: async (peer, protocol, options) => connectionManager.openStream(peer, protocol, options),
    getConnections: (peer) => connectionManager.getConnections(peer),
    getMultiaddrs: () => components.addressManager.getAddresses(),
    addEventListener: events.addEventListener.bind(events),
    removeEventListener: events.removeEventListener.bind(events)
  }
}

/**
 * A sibling service the node may not have (gossipsub, kad-dht): libp2p's
 * components throw on a name nobody registered, and an app may run
 * without it.
 */
export function optionalService<T> (read: () => T | undefined): T | undefined {
  try {
    return read()
  } catch {
    return undefined
  }
}
