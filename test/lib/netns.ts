/**
 * Network namespaces as stand-ins for separate machines: each host gets its
 * own namespace and IP address, joined to a "switch" namespace holding a
 * bridge, through veth pairs. Addresses come from 10.213.<net>.0/24, a range
 * that exists only inside these namespaces. Needs root and iproute2.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const exec = promisify(execFile)

async function ip (...args: string[]): Promise<void> {
  await exec('ip', args)
}

export interface NetnsHost {
  name: string
  address: string
  /** Prefix for commands that must run inside the namespace. */
  wrap: string[]
  /** The veth end in the switch namespace: down = this host is cut off. */
  switchPort: string
}

export class NetnsLab {
  readonly hosts: NetnsHost[] = []
  readonly #switch: string
  readonly #prefix: string
  readonly #subnet: string

  /** When set, the test process (root namespace) reaches the hosts at this address. */
  readonly hostAccessAddress: string | null
  readonly #rootPort: string
  /** The blackhole routes partition() added, each in `host` towards `address`; heal() removes them. */
  readonly #cuts: Array<{ host: NetnsHost, address: string }> = []

  constructor (hostCount: number, options: { net?: number, hostAccess?: boolean } = {}) {
    const tag = (process.pid % 10000).toString(36)
    this.#prefix = `acc${tag}`
    this.#switch = `${this.#prefix}sw`
    this.#subnet = `10.213.${options.net ?? 7}`
    this.#rootPort = `${this.#prefix}r`
    this.hostAccessAddress = options.hostAccess === true ? `${this.#subnet}.254` : null
    for (let i = 0; i < hostCount; i++) {
      const name = `${this.#prefix}h${i}`
      this.hosts.push({ name, address: `${this.#subnet}.${i + 1}`, wrap: ['ip', 'netns', 'exec', name], switchPort: `${this.#prefix}p${i}` })
    }
  }

  static async check (): Promise<void> {
    if (process.getuid?.() !== 0) { throw new Error('network namespace tests need root') }
    await exec('ip', ['-V']).catch(() => { throw new Error('network namespace tests need iproute2 (apt-get install iproute2)') })
  }

  async create (): Promise<void> {
    await NetnsLab.check()
    await this.destroy()
    await ip('netns', 'add', this.#switch)
    await ip('-n', this.#switch, 'link', 'add', 'br0', 'type', 'bridge')
    await ip('-n', this.#switch, 'link', 'set', 'br0', 'up')
    for (const [i, host] of this.hosts.entries()) {
      await ip('netns', 'add', host.name)
      await ip('-n', host.name, 'link', 'set', 'lo', 'up')
      const inner = `${this.#prefix}v${i}`
      await ip('link', 'add', inner, 'netns', host.name, 'type', 'veth', 'peer', 'name', host.switchPort, 'netns', this.#switch)
      await ip('-n', host.name, 'addr', 'add', `${host.address}/24`, 'dev', inner)
      await ip('-n', host.name, 'link', 'set', inner, 'up')
      await ip('-n', this.#switch, 'link', 'set', host.switchPort, 'master', 'br0')
      await ip('-n', this.#switch, 'link', 'set', host.switchPort, 'up')
    }
    if (this.hostAccessAddress != null) {
      const peer = `${this.#prefix}rp`
      await ip('link', 'add', this.#rootPort, 'type', 'veth', 'peer', 'name', peer, 'netns', this.#switch)
      await ip('addr', 'add', `${this.hostAccessAddress}/24`, 'dev', this.#rootPort)
      await ip('link', 'set', this.#rootPort, 'up')
      await ip('-n', this.#switch, 'link', 'set', peer, 'master', 'br0')
      await ip('-n', this.#switch, 'link', 'set', peer, 'up')
    }
  }

  /** Cut a host off the network (link down) or reconnect it. */
  async setLink (host: NetnsHost, up: boolean): Promise<void> {
    await ip('-n', this.#switch, 'link', 'set', host.switchPort, up ? 'up' : 'down')
  }

  /**
   * Split the hosts into sides that cannot reach one another: in each host,
   * a blackhole route to every host of the other sides (a new connection
   * fails at once, packets of an open one are dropped). Each side still
   * reaches itself, and the test process reaches all (hostAccess).
   */
  async partition (sides: NetnsHost[][]): Promise<void> {
    for (const [i, side] of sides.entries()) {
      const others = sides.filter((_, j) => j !== i).flat()
      for (const host of side) {
        for (const other of others) {
          await ip('-n', host.name, 'route', 'add', 'blackhole', `${other.address}/32`)
          this.#cuts.push({ host, address: other.address })
        }
      }
    }
  }

  /** Undo partition(). */
  async heal (): Promise<void> {
    for (const { host, address } of this.#cuts.splice(0)) {
      await ip('-n', host.name, 'route', 'del', 'blackhole', `${address}/32`)
    }
  }

  async destroy (): Promise<void> {
    this.#cuts.length = 0
    await ip('link', 'del', this.#rootPort).catch(() => {})
    for (const name of [...this.hosts.map(h => h.name), this.#switch]) {
      await ip('netns', 'del', name).catch(() => {})
    }
  }
}
