/**
 * The RGA's storage: items (runs of units) in document order, held in a
 * doubly linked list of chunks (small arrays) that cache their visible
 * length, and per replica a seq-sorted index of the same items.
 */

/** A chunk splits in two when it holds more items than this. */
export const CHUNK_ITEMS_MAX = 128
/** Items per chunk when a document is built in one go (load, collectStable). */
export const CHUNK_ITEMS_FILL = 64

/**
 * A run of units inserted by one replica with consecutive counters and
 * consecutive Lamport timestamps, each the origin of the next: one item,
 * split on demand. Unit i has id (rep, seq + i) and timestamp lam + i.
 */
export class Item {
  /** Local index of the inserting replica (Rga.replicas). */
  rep: number
  seq: number
  lam: number
  /** Length in UTF-16 units. */
  len: number
  /** The units, '' once deleted (tombstones keep only their length). */
  text: string
  deleted = false
  /** The deleting op (local replica index and its seq); -1 when deleted before a load (see Rga.loadedVersion). */
  delRep = -1
  delSeq = -1
  chunk: Chunk
  bucket: Bucket

  constructor (rep: number, seq: number, lam: number, len: number, text: string, chunk: Chunk, bucket: Bucket) {
    this.rep = rep
    this.seq = seq
    this.lam = lam
    this.len = len
    this.text = text
    this.chunk = chunk
    this.bucket = bucket
  }
}

export class Chunk {
  items: Item[] = []
  /** Sum of the lengths of the live items. */
  vis = 0
  prev: Chunk | null = null
  next: Chunk | null = null
}

/**
 * A seq-sorted group of one replica's items: the pieces a run was split into
 * (a run is one bucket when it is created). Buckets are appended in seq
 * order, since a replica's ops integrate in seq order, so finding an id is
 * two binary searches.
 */
export class Bucket {
  seq: number
  pieces: Item[] = []

  constructor (seq: number) {
    this.seq = seq
  }
}

/** Index of the last element of `sorted` whose `seq` is <= seq, or -1. */
export function lastAtOrBefore (sorted: Array<{ seq: number }>, seq: number): number {
  let lo = 0
  let hi = sorted.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (sorted[mid].seq <= seq) {
      found = mid
      lo = mid + 1
    } else {
      hi = mid - 1
    }
  }
  return found
}
