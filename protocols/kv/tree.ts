/**
 * The KV data: a B+ tree (sorted-btree) ordered by the keys' UTF-8 bytes, the
 * snapshot order. Its clone() is O(1) and copy-on-write, so a snapshot can
 * encode a frozen copy slice by slice while the live tree keeps changing.
 */
import sortedBtree from 'sorted-btree'
import { compareUtf8 } from './codec.ts'

// a CommonJS module: its class is the `default` property of module.exports
const BTree = sortedBtree.default

export type KvTree = InstanceType<typeof BTree<string, Uint8Array>>

export function newKvTree (): KvTree {
  return new BTree<string, Uint8Array>(undefined, compareUtf8)
}
