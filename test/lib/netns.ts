/**
 * Network namespaces as stand-ins for separate machines: each host gets its
 * own namespace and IP address, joined to a "switch" namespace holding a
 * bridge, through veth pairs. Addresses come from 10.213.<net>.0/24, a range
 * that exists only inside these namespaces. Needs root and iproute2.
 */
import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { promisify } from 'node:util'

const exec = promisify(execFile)

async function ip (...args: string[]): Promise<void> {
  await exec('ip', args)
}

/** The name prefix of the labs a process with this pid makes (network device names are short). */
function prefixOf (pid: number): string {
  return `acc${(pid % 10000).toString(36)}`
}

/**
 * Remove the namespaces and root-namespace veths of labs whose process is
 * gone (killed before its after() hook ran). A leftover root veth keeps its
 * route to the lab's subnet, so a new lab on the same subnet would send the
 * test's packets into the dead one.
 */
async function removeStaleLabs (): Promise<void> {
  const pids = (await readdir('/proc')).filter(name => /^\d+$/.test(name)).map(Number)
  const livePrefixes = new Set(pids.map(prefixOf))
  const stale = (name: string): boolean => {
    const match = /^(acc[0-9a-z]+?)(sw|h\d+|r)$/.exec(name)
    return match != null && !livePrefixes.has(match[1])
  }
  const { stdout: namespaces } = await exec('ip', ['netns', 'list'])
  for (const name of namespaces.split('\n').map(line => line.split(' ')[0]).filter(stale)) {
    await ip('netns', 'del', name).catch(() => {})
  }
  const { stdout: links } = await exec('ip', ['-o', 'link', 'show'])
  for (const name of links.split('\n').map(line => line.split(': ')[1]?.split('@')[0] ?? '').filter(stale)) {
    await ip('link', 'del', name).catch(() => {})
  }
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
    this.#prefix = prefixOf(process.pid)
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
    await removeStaleLabs()
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
      const { stdout: route } = await exec('ip', ['-4', 'route', 'show', `${this.#subnet}.0/24`])
      if (route.trim() !== '') { throw new Error(`the lab's subnet ${this.#subnet}.0/24 is already routed here: ${route.trim()}`) }
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
