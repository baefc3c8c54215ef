/**
 * Helpers for end-to-end tests: accord nodes as separate OS processes,
 * started through the CLI exactly as a user starts them.
 */
import { execFile, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { readRuntimeInfo } from '../../node/runtime-file.ts'
import { waitFor } from './nodes.ts'
import type { RuntimeInfo } from '../../node/runtime-file.ts'
import type { ChildProcess } from 'node:child_process'

export const CLI = fileURLToPath(new URL('../../node/cli.ts', import.meta.url))

const exec = promisify(execFile)

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Run `accord ...args` to completion (optionally wrapped, e.g. in `ip netns exec`). */
export async function runCli (args: string[], options: { env?: NodeJS.ProcessEnv, wrap?: string[], timeoutMs?: number } = {}): Promise<CliResult> {
  const child = spawnCli(args, options)
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
  const result = await collect(child)
  clearTimeout(timer)
  return result
}

export function spawnCli (args: string[], options: { env?: NodeJS.ProcessEnv, wrap?: string[] } = {}): ChildProcess {
  const argv = [...(options.wrap ?? []), process.execPath, CLI, ...args]
  // aegir runs mocha with NODE_OPTIONS that make node print experimental
  // warnings; a user's shell has none, and the CLI's stderr is asserted on
  const env = { ...process.env, NODE_OPTIONS: '', ...options.env }
  return spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] })
}

export async function collect (child: ChildProcess): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  return new Promise(resolve => {
    child.once('close', (code, signal) => { resolve({ code, signal, stdout, stderr }) })
  })
}

/** A daemon started with `accord start`, with its output collected. */
export class DaemonProcess {
  readonly child: ChildProcess
  readonly dataDir: string
  readonly done: Promise<CliResult>
  #logSoFar = ''

  constructor (dataDir: string, args: string[], options: { wrap?: string[] } = {}) {
    this.dataDir = dataDir
    this.child = spawnCli(['start', '--data-dir', dataDir, ...args], options)
    this.done = collect(this.child)
    this.child.stderr?.on('data', (d: Buffer) => { this.#logSoFar += d.toString() })
  }

  /** The log (JSON lines on stderr) written so far, while it runs. */
  get logSoFar (): string {
    return this.#logSoFar
  }

  /** Wait until this process has written its runtime file. */
  async ready (): Promise<RuntimeInfo> {
    let info: RuntimeInfo | null = null
    let exited = false
    void this.done.then(() => { exited = true })
    await waitFor(async () => {
      if (exited) {
        const r = await this.done
        throw new Error(`node exited early (code ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
      }
      info = await readRuntimeInfo(this.dataDir)
      return info?.pid === this.child.pid
    }, `node in ${this.dataDir} to start`)
    return info as unknown as RuntimeInfo
  }

  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<CliResult> {
    if (this.child.exitCode === null && this.child.signalCode === null) { this.child.kill(signal) }
    return this.done
  }

  async log (): Promise<string> {
    return readFile(join(this.dataDir, 'node.log'), 'utf8').catch(() => '')
  }
}

/** A join token from the running node in `dataDir`, made as an operator would: `accord token create`. */
export async function joinTokenFrom (dataDir: string, options: { wrap?: string[] } = {}): Promise<string> {
  const result = await runCli(['token', 'create', '--data-dir', dataDir], options)
  if (result.code !== 0) { throw new Error(`accord token create failed: ${result.stderr}`) }
  return result.stdout.trim()
}

/** The CPUs a process may run on (its main thread's affinity), in order. */
export async function cpusOf (pid: number): Promise<number[]> {
  const { stdout } = await exec('taskset', ['--cpu-list', '--pid', String(pid)])
  const list = stdout.trim().split(': ').pop() ?? ''
  return list.split(',').flatMap(part => {
    const [from, to = from] = part.split('-').map(Number)
    return Array.from({ length: to - from + 1 }, (_, i) => from + i)
  })
}

/** Pin a running process, all its threads, to `cpus`; threads it starts later inherit it. */
export async function pinToCpus (pid: number, cpus: number[]): Promise<void> {
  await exec('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus.join(','), String(pid)])
}

/**
 * Processes that spin on one CPU to starve whatever else is pinned there.
 * Each is killed by `timeout` after `lifetimeMs` at the latest, so a
 * crashed test leaves no CPU hog behind for long.
 */
export class BusyLoops {
  readonly #children: ChildProcess[]

  constructor (count: number, cpu: number, lifetimeMs: number) {
    const seconds = String(Math.ceil(lifetimeMs / 1000))
    this.#children = Array.from({ length: count }, () =>
      spawn('timeout', [seconds, 'taskset', '--cpu-list', String(cpu), 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }))
  }

  async stop (): Promise<void> {
    // timeout passes SIGTERM on to the loop, then exits
    await Promise.all(this.#children.map(async child => signalAndWait(child, 'SIGTERM')))
  }
}

/** Sends `signal` to `child` unless it has exited, and resolves once it has. */
export async function signalAndWait (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) { return }
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill(signal)
  await exited
}
