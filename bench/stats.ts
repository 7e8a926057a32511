/** Summaries the benchmarks print: over repeated, interleaved runs on a noisy machine, min and median. */

/** The lower median: for an even count, the smaller of the two middle values. */
export function median(xs: readonly number[]): number {
	return [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
}
