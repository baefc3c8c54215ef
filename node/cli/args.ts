/**
 * Flag parsing shared by the CLI commands: node's util.parseArgs in strict
 * mode, so an unknown flag or a missing value is a one-line UserError.
 */
import { parseArgs } from 'node:util'
import { UserError } from '../errors.ts'
import type { ParseArgsConfig } from 'node:util'

export type FlagSpec = NonNullable<ParseArgsConfig['options']>

export function parseFlags<T extends FlagSpec> (command: string, args: string[], options: T): ReturnType<typeof parseArgs<{ args: string[], options: T, strict: true, allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new UserError(`${command}: ${(err as Error).message.split('\n')[0]}`)
  }
}

/** Like parseFlags, for commands that also take positional arguments (at most `positionalsMax`). */
export function parseFlagsAndPositionals<T extends FlagSpec> (command: string, args: string[], options: T, positionalsMax: number): {
  values: ReturnType<typeof parseArgs<{ args: string[], options: T, strict: true, allowPositionals: true }>>['values']
  positionals: string[]
} {
  let parsed
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true })
  } catch (err) {
    throw new UserError(`${command}: ${(err as Error).message.split('\n')[0]}`)
  }
  if (parsed.positionals.length > positionalsMax) { throw new UserError(`${command}: unexpected argument "${parsed.positionals[positionalsMax]}"`) }
  return { values: parsed.values, positionals: parsed.positionals }
}

export function parseIntegerFlag (value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) { return undefined }
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UserError(`${flag} must be an integer in ${min}..${max}, got "${value}"`)
  }
  return n
}
