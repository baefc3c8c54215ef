import { expect } from 'aegir/chai'
import { createRng } from '../../protocols/common/rng.ts'
import { Cluster, clientRequest } from './pbft-harness.ts'
import type { Rng } from '../../protocols/common/rng.ts'
import type { ClientRequest } from '../../protocols/pbft/index.ts'

const limits = { requestTimeoutTicks: 6, viewChangeTimeoutTicks: 6, viewChangeTimeoutTicksMax: 48, checkpointInterval: 4, watermarkWindow: 8, batchRequestsMax: 3, pipelineMax: 4 }

/** Delivers in random order, dropping some, until the queue is empty. */
function churn (cluster: Cluster, rng: Rng, dropRate: number): void {
  for (let steps = 0; steps < 200_000; steps++) {
    for (const id of cluster.ids) {
      if (!cluster.down.has(id) && cluster.replica(id).hasReady()) { cluster.processReady(id) }
    }
    if (cluster.queue.length === 0) { return }
    const [envelope] = cluster.queue.splice(rng.intBetween(0, cluster.queue.length - 1), 1)
    if (!rng.chance(dropRate)) { cluster.deliver(envelope) }
  }
  throw new Error('did not settle')
}

/** One round of chaos: maybe a new request (to a random subset), a crash or a restart (at most f down), lossy delivery, a tick. */
function chaosRound (cluster: Cluster, rng: Rng, requests: ClientRequest[], f: number): void {
  if (rng.chance(0.5)) {
    const request = clientRequest(`c${rng.intBetween(1, 3)}`, requests.length + 1)
    requests.push(request)
    for (const id of cluster.ids) {
      if (!cluster.down.has(id) && rng.chance(0.7)) { cluster.submit(id, request) }
    }
  }
  if (rng.chance(0.05) && cluster.down.size < f) {
    cluster.crash(cluster.ids[rng.intBetween(0, cluster.ids.length - 1)])
  } else if (rng.chance(0.1) && cluster.down.size > 0) {
    cluster.restart([...cluster.down][0])
  }
  churn(cluster, rng, 0.1)
  for (const id of cluster.ids) { if (!cluster.down.has(id)) { cluster.replica(id).tick() } }
}

function allExecuted (cluster: Cluster, requests: ClientRequest[]): boolean {
  return cluster.ids.every(id => requests.every(r => cluster.state(id).executed.includes(`${r.client}@${r.timestamp}`)))
}

function scenario (seed: number, n: number): void {
  const rng = createRng(seed)
  const cluster = new Cluster(n, limits)
  const requests: ClientRequest[] = []
  for (let round = 0; round < 60; round++) {
    chaosRound(cluster, rng, requests, Math.floor((n - 1) / 3))
    cluster.expectAgreement()
  }
  // heal: everyone up, no loss, clients retransmit to all until every request executed at every replica
  for (const id of [...cluster.down]) { cluster.restart(id) }
  for (let round = 0; round < 400 && !allExecuted(cluster, requests); round++) {
    if (round % 5 === 0) {
      for (const request of requests) {
        for (const id of cluster.ids) { cluster.submit(id, request) }
      }
    }
    churn(cluster, rng, 0)
    for (const id of cluster.ids) { cluster.replica(id).tick() }
  }
  cluster.expectAgreement()
  for (const id of cluster.ids) {
    const executed = cluster.state(id).executed
    for (const request of requests) { expect(executed, `seed ${seed} ${id}`).to.include(`${request.client}@${request.timestamp}`) }
  }
}

describe('pbft random schedules', () => {
  for (const [n, seeds] of [[4, 25], [7, 10]]) {
    it(`n = ${n}: loss, reordering, crashes and restarts never break agreement, and every request executes once healed (${seeds} seeds)`, () => {
      for (let seed = 1; seed <= seeds; seed++) {
        try {
          scenario(seed, n)
        } catch (err) {
          throw new Error(`seed ${seed}: ${(err as Error).message}`)
        }
      }
    })
  }
})
