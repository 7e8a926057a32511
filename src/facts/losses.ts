/**
 * What twtrace lost, by cause, as the kernel side counts it (bpf/twtrace.h, enum twt_counter) plus
 * records user space could not read; and how losses are added up wherever they are shown. Pure.
 */

export interface DropCounts {
	/** Events lost because the ring buffer was full. */
	ringFull: number;
	/**
	 * Sockets left unattributed because socket storage or the listeners map could not take an entry,
	 * and events left uncounted because the kernel's counters were full (counting in the kernel).
	 */
	mapFull: number;
	/**
	 * Runs of a program without a fallback (sys_exit: bind failures) the kernel skipped because it was
	 * already running on that CPU: lost.
	 */
	missedRuns: number;
	/** Nested transitions the kernel skipped for the primary program and the fallback handled: not lost. */
	nestedRecovered: number;
	/** time_wait/reset events whose socket had no known owner (it predates twtrace). */
	ownerMissing: number;
	/**
	 * Timewait sockets no tracepoint reported (the kernel ran no program for their entry into
	 * TIME_WAIT), found later by a lookup of a close waiting too long or by a walk: each was delivered
	 * as a recovered time_wait event, unless the ring was full (then also in ringFull).
	 */
	walkMissed: number;
	/** Active closes the `closing` map could not take: a missed time_wait of those goes unwitnessed. */
	unwitnessed: number;
}

/** The kernel's counters and the records user space could not decode. */
export type Losses = DropCounts & { decodeErrors: number };

/** Events that never reached user space or could not be read: map_full only loses an owner, not the event. */
export function eventsLost(d: Pick<DropCounts, 'ringFull' | 'missedRuns'> & { decodeErrors: number }): number {
	return d.ringFull + d.missedRuns + d.decodeErrors;
}

/** What a trace session counted by the time it stopped: its events, its losses, how long it ran. */
export interface SessionSummary extends DropCounts {
	events: number;
	decodeErrors: number;
	seconds: number;
}
