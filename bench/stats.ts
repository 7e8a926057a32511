/** Summaries the benchmarks print: over repeated, interleaved runs on a noisy machine, min and median. */

/** The lower median: for an even count, the smaller of the two middle values. */
export function median(xs: readonly number[]): number {
	return [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
}

/**
 * The ground truth's verdict on one run: TIME_WAIT entries neither delivered nor covered by the losses
 * the tracer reported (positive: a silent loss), or, negative, entries delivered beyond the
 * connections completed (a count of something that did not happen); 0 when the run is accounted for.
 * A tracer's reported losses are of every kind of event, so they cover missing time_wait entries up to
 * their number, never more than were missing.
 */
export function unaccountedTimeWait(completed: number, delivered: number, lost: number): number {
	if (delivered > completed) return completed - delivered;
	return Math.max(0, completed - delivered - lost);
}
