/**
 * A RaftDriver over the KV application for unit tests: a store that keeps
 * nothing, an outbox that drops everything, an empty restored state and a
 * silent log, unless `options` says otherwise.
 */
import { pino } from 'pino'
import { RaftDriver } from '../../node/raft/driver.ts'
import { kvApplication } from '../../node/raft/kv-application.ts'
import type { RaftDriverOptions } from '../../node/raft/driver.ts'

export function testDriver (options: Partial<RaftDriverOptions> & Pick<RaftDriverOptions, 'id'>): RaftDriver {
  return RaftDriver.create({
    ...kvApplication(),
    store: { persist: async () => {}, saveSnapshot: async () => true },
    outbox: { send: () => {} },
    restored: { hardState: { term: 0, vote: null, commit: 0 }, entries: [] },
    tickIntervalMs: 5,
    electionTimeoutTicks: 4,
    heartbeatIntervalTicks: 1,
    readOnlyMode: 'safe',
    snapshotEveryEntries: 1000,
    autoPromoteLearners: false,
    log: pino({ level: 'silent' }),
    ...options
  })
}
