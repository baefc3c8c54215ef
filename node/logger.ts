import { pino } from 'pino'
import type { LogLevel } from './config.ts'
import type { Logger } from 'pino'

export type { Logger }

/** Structured JSON logs (one object a line) on stderr, so stdout stays free for command output. */
export function createLogger (level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...bindings } }, pino.destination({ fd: 2, sync: false }))
}

/** A logger that writes nothing: the default of a service given none. */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
