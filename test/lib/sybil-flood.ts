/**
 * A Sybil flood from several OS processes (test/lib/sybil-process.ts), each
 * from a loopback address of its own /24 (127.(21 + i).0.1: Linux routes
 * all of 127.0.0.0/8 to lo), so the flood comes from several "networks".
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { collect, signalAndWait } from './processes.ts'
import type { SybilReport } from './sybil-process.ts'
import type { ChildProcess } from 'node:child_process'

export type { SybilReport }

export const SYBIL_PROCESS = fileURLToPath(new URL('./sybil-process.ts', import.meta.url))

/** The source address of flood process `i`: one /24 each. */
export function sybilSource (i: number): string {
  return `127.${21 + i}.0.1`
}

export class SybilFlood {
  readonly #children: ChildProcess[]
  readonly #done: Promise<SybilReport[]>

  /**
   * Start `processes` processes that share `ids` fresh ids between them
   * (each takes its share one after another) against `target`. Each exits
   * by itself after `deadlineMs`, and when this process dies (its stdin
   * closes).
   */
  constructor (target: string, ids: number, processes: number, deadlineMs: number) {
    this.#children = Array.from({ length: processes }, (_, i) => {
      const share = Math.floor(ids / processes) + (i < ids % processes ? 1 : 0)
      const args = [SYBIL_PROCESS, '--target', target, '--ids', String(share), '--source', sybilSource(i), '--deadline-ms', String(deadlineMs)]
      // aegir's NODE_OPTIONS are mocha's, not the flood's
      return spawn(process.execPath, args, { env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['pipe', 'pipe', 'pipe'] })
    })
    this.#done = Promise.all(this.#children.map(async (child, i) => {
      const result = await collect(child)
      if (result.code !== 0) {
        throw new Error(`Sybil process ${i} exited with ${result.code ?? result.signal}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`)
      }
      return JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as SybilReport
    }))
    // the spec awaits `done()` (or kills the flood first): no unhandled rejection
    this.#done.catch(() => {})
  }

  /** The processes' process ids. */
  get pids (): number[] {
    return this.#children.map(c => c.pid ?? -1)
  }

  /** Each process's report, once all have exited; rejects when one failed. */
  async done (): Promise<SybilReport[]> {
    return this.#done
  }

  /** Kill the processes still running (SIGKILL) and wait until they have exited. */
  async kill (): Promise<void> {
    await Promise.all(this.#children.map(async child => signalAndWait(child, 'SIGKILL')))
  }
}
