/**
 * Adaptive tuning: fanout and round interval follow the cluster's size, the
 * measured duplicate rate and the measured convergence time, always within
 * the configured bounds. Deterministic: the same observations give the same
 * parameters.
 *
 * Measurements (GossipMeter, folded once per round):
 * - duplicate rate: the share of received entries we already held, as a
 * moving average over the rounds that received any. Scuttlebutt sends a
 * peer only what its digest lacks, so duplicates come from several peers
 * sending the same news in one round: a sign the fanout is larger than the
 * news needs.
 * - convergence time: every entry carries its age, the ticks since its
 * owner wrote it (each relay adds the ticks it held it). The mean age of
 * the entries that are new to us, as a moving average over the rounds that
 * brought any, estimates how long news takes to reach a node. Compared with
 * what epidemic spreading predicts, log(N + 1) / log(fanout + 1) + 1
 * rounds, it tells whether news lags (loss, a partition that just healed,
 * a fanout too small for the cluster).
 * - quiet rounds: rounds in a row that brought nothing new (no entry, no
 * write of our own). After QUIET_ROUNDS the estimates above are stale.
 *
 * Policy (retune(), every TUNE_EVERY_ROUNDS rounds):
 * 1. News lags (estimate > LAG_FACTOR x predicted): fanout + 1 and the
 * interval 3/4 as long.
 * 2. Else, many duplicates (> DUPLICATE_RATE_HIGH): fanout - 1.
 * 3. Else fanout steps toward the size's fanout, 1 + round(log10(N + 1))
 * (2 for 10 peers, 3 for 100, 4 for 1,000, 5 for 10,000).
 * 4. Not lagging, the interval returns to the configured one, or, when the
 * cluster is quiet, grows by 5/4 toward intervalTicksMax: a quiet cluster
 * exchanges digests that find nothing, and these are most of the bytes.
 *
 * Between retunes, news (a write of our own, an entry new to us) brings an
 * interval stretched by quiet back to the configured one at once
 * (onNews()): waiting for the next retune, up to 4 of the longest rounds,
 * would hold every hop of a fresh write back.
 */

export interface TuningParameters {
  fanout: number
  intervalTicks: number
}

export interface TuningBounds {
  fanoutMin: number
  fanoutMax: number
  intervalTicksMin: number
  intervalTicksMax: number
}

export interface TuningObservations {
  /** Peers we gossip with (the cluster's size less one). */
  peers: number
  /** null: no entries received yet. */
  duplicateRate: number | null
  /** null: no news received yet. */
  convergenceTicks: number | null
  quietRounds: number
}

/** Rounds between two retunes: the moving averages need a few rounds to move. */
export const TUNE_EVERY_ROUNDS = 4
/** Rounds without news after which the cluster counts as quiet and the estimates as stale. */
export const QUIET_ROUNDS = 8
/** News lags when it takes this many times longer than epidemic spreading predicts. */
export const LAG_FACTOR = 2
/** Above this share of duplicates, the fanout is larger than the news needs. */
export const DUPLICATE_RATE_HIGH = 0.5
/** Weight of the newest round in the moving averages. */
export const EWMA_WEIGHT = 0.25

/** The fanout the cluster's size calls for (before bounds). */
export function sizeFanout (peers: number): number {
  return 1 + Math.round(Math.log10(peers + 1))
}

/** Rounds for news to reach everyone by epidemic spreading with this fanout (a prediction, not a bound). */
export function predictedRounds (peers: number, fanout: number): number {
  return Math.ceil(Math.log(peers + 1) / Math.log(fanout + 1)) + 1
}

function clamp (value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value))
}

/**
 * The next parameters, from the current ones, the configured ones (`base`:
 * the interval to return to) and what the meter observed.
 */
export function retune (current: TuningParameters, base: TuningParameters, observed: TuningObservations, bounds: TuningBounds): TuningParameters {
  const quiet = observed.quietRounds >= QUIET_ROUNDS
  const predictedTicks = predictedRounds(observed.peers, current.fanout) * current.intervalTicks
  const lagging = !quiet && observed.convergenceTicks !== null && observed.convergenceTicks > LAG_FACTOR * predictedTicks
  let fanout: number
  let intervalTicks: number
  if (lagging) {
    fanout = current.fanout + 1
    intervalTicks = Math.floor(current.intervalTicks * 3 / 4)
  } else {
    const target = clamp(sizeFanout(observed.peers), bounds.fanoutMin, bounds.fanoutMax)
    if (!quiet && observed.duplicateRate !== null && observed.duplicateRate > DUPLICATE_RATE_HIGH) {
      fanout = current.fanout - 1
    } else {
      fanout = current.fanout + Math.sign(target - current.fanout)
    }
    intervalTicks = quiet ? Math.ceil(current.intervalTicks * 5 / 4) : base.intervalTicks
  }
  return {
    fanout: clamp(fanout, bounds.fanoutMin, bounds.fanoutMax),
    intervalTicks: clamp(intervalTicks, bounds.intervalTicksMin, bounds.intervalTicksMax)
  }
}

/** News arrived: an interval longer than the configured one (a quiet cluster's) returns to it. */
export function onNews (current: TuningParameters, base: TuningParameters): TuningParameters {
  return { fanout: current.fanout, intervalTicks: Math.min(current.intervalTicks, base.intervalTicks) }
}

/** Folds what each round received into the moving averages retune() reads. */
export class GossipMeter {
  duplicateRate: number | null = null
  convergenceTicks: number | null = null
  quietRounds = 0
  private received = 0
  private duplicates = 0
  private fresh = 0
  private ageSum = 0
  private wrote = false

  /** Entries received in a delta, and how many of them we held already. */
  noteReceived (received: number, duplicates: number): void {
    this.received += received
    this.duplicates += duplicates
  }

  /** An entry new to us, `ageTicks` after its owner wrote it. */
  noteFresh (ageTicks: number): void {
    this.fresh++
    this.ageSum += ageTicks
  }

  /** We wrote: news, though not received. */
  noteWrite (): void {
    this.wrote = true
  }

  endRound (): void {
    if (this.received > 0) { this.duplicateRate = ewma(this.duplicateRate, this.duplicates / this.received) }
    if (this.fresh > 0) { this.convergenceTicks = ewma(this.convergenceTicks, this.ageSum / this.fresh) }
    this.quietRounds = this.fresh > 0 || this.wrote ? 0 : this.quietRounds + 1
    this.received = 0
    this.duplicates = 0
    this.fresh = 0
    this.ageSum = 0
    this.wrote = false
  }
}

function ewma (average: number | null, sample: number): number {
  return average === null ? sample : average + EWMA_WEIGHT * (sample - average)
}
