/** The value at fraction `p` (0..1) of an ascending array; NaN when it is empty. Shared by the bench scripts. */
export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) { return NaN }
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}
