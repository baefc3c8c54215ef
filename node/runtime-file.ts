/**
 * `<dataDir>/node.json`: written by a running daemon, removed when it stops.
 * It tells other processes (the demo, `accord status`) how to reach the node.
 */
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from './config.ts'

export const RUNTIME_FILE = 'node.json'

export interface RuntimeInfo {
  peerId: string
  multiaddrs: string[]
  api: string | null
  pid: number
  startedAt: string
}

export async function writeRuntimeInfo (dataDir: string, info: RuntimeInfo): Promise<void> {
  await writeFileAtomic(join(dataDir, RUNTIME_FILE), JSON.stringify(info, null, 2) + '\n', 0o644)
}

export async function readRuntimeInfo (dataDir: string): Promise<RuntimeInfo | null> {
  try {
    return JSON.parse(await readFile(join(dataDir, RUNTIME_FILE), 'utf8')) as RuntimeInfo
  } catch {
    return null
  }
}

export async function removeRuntimeInfo (dataDir: string): Promise<void> {
  await rm(join(dataDir, RUNTIME_FILE), { force: true })
}
