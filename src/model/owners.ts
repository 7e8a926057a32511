/**
 * What the churn model counts against: an *owner* is one (pid, comm, cgroup, netns, side, peer)
 * combination with its per-second counters, lifetimes and TIME_WAIT held; a *destination* is a port
 * pool (netns, saddr, daddr, dport) with its ports in use; a namespace's state is what its last
 * walk said. Plain records and the constants and helpers that read them; ChurnModel
 * (churn-model.ts) keeps them up to date. Pure.
 */
import * as hdr from 'hdr-histogram-js';
import type { SideName } from '../event/kinds.js';
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { Blame } from './attribution.js';
import type { PortPoolTally, TimeWaitHolder } from './time-wait.js';
import { SecondCounts } from './second-counts.js';

const US = 1_000_000;
/** Seconds of per-second counts kept for rates: the longest rate window. */
export const RATE_SECONDS = 16;
/** Seconds of TIME_WAIT-held history kept per owner (the sparkline). */
export const HISTORY_SECONDS = 60;

/** Counted per owner and per second. */
export const COUNTERS = ['connects', 'accepts', 'activeCloses', 'timeWaitEntries', 'resets', 'connectFailures', 'bindFailures'] as const;
export type CounterName = (typeof COUNTERS)[number];
/** Index of each counter in COUNTERS. */
export const C = Object.fromEntries(COUNTERS.map((name, i) => [name, i])) as Record<CounterName, number>;

export interface Owner extends TimeWaitHolder {
	readonly key: string;
	readonly pid: number;
	comm: string;
	readonly cgroupId: number;
	readonly netns: number;
	readonly side: SideName;
	/** "daddr:dport" for outgoing connections; "local saddr:sport" for accepted ones. */
	readonly peer: string;
	/** counts[slot * COUNTERS.length + counter], slot = second % RATE_SECONDS. */
	readonly counts: Uint32Array;
	readonly slotSecond: Float64Array;
	readonly totals: Float64Array;
	readonly connectErrnos: Map<number, number>;
	/** TIME_WAIT held at the end of each second, slot = second % HISTORY_SECONDS. */
	readonly history: Uint32Array;
	lifetimes: hdr.Histogram | undefined;
	/** Whether `lifetimes` holds plain counts (lifetimesFor moved it off packed ones). */
	lifetimesPlain: boolean;
	lastEventUs: number;
}

export interface Destination extends PortPoolTally {
	readonly key: string;
	readonly netns: number;
	readonly saddr: string;
	readonly daddr: string;
	readonly dport: number;
	/** Sockets towards it that hold an ephemeral port and are not timewait, at the last walk. */
	portsHeldOpen: number;
	readonly connects: Uint32Array;
	readonly slotSecond: Float64Array;
	/** Since it was first seen. */
	connectsTotal: number;
	connectFailures: number;
	lastEventUs: number;
}

export interface NetnsState {
	netns: number;
	settings: NetnsSettings | undefined;
	/** Timewait sockets in the namespace at the last walk, all owners (before filters). */
	walkedTimeWait: number | undefined;
	walkedAtUs: number | undefined;
	/** Local ports of its listeners at the last walk. */
	listeningPorts: Set<number>;
	/** TcpExtTCPTimeWaitOverflow at the first walk: overflow since start is the increase over it. */
	overflowAtFirstWalk: number | undefined;
}

/** ChurnModel.namespaceTimeWait: a namespace's TIME_WAIT count, and where it comes from. */
export interface NamespaceTimeWait {
	count: number;
	/** model: now (the kernel's counts and walks, or events and walks); walk: the last walk's (a filtered model). */
	from: 'model' | 'walk';
}

export const BEFORE_START = '(before start)';
/**
 * Holds TIME_WAIT sockets a walk found that entered TIME_WAIT after twtrace attached, yet reached
 * it by no event: their events were lost (ring full). Never counted as "(before start)".
 */
export const LOST = '(events lost)';
export const OTHER = '(other)';

/**
 * Connections accepted (since start) on a listener older than twtrace, not yet closed by a known
 * process: nobody to blame (the accept completes in softirq), but not "(before start)" either.
 */
export const LISTENER_BEFORE_START = '(listener before start)';

/**
 * The comm an owner is known by: events with no process to blame are from sockets older than
 * twtrace, or, on the server side, from connections accepted on a listener older than it.
 */
export function ownerComm(who: Blame, side?: SideName): string {
	return who.comm || (who.pid ? '' : side === 'server' ? LISTENER_BEFORE_START : BEFORE_START);
}

/** An owner whose process is not known: its sockets predate twtrace, or their events were lost. */
export function isUnknownOwner(o: { pid: number; comm: string }): boolean {
	return o.pid === 0 && (o.comm === BEFORE_START || o.comm === LOST);
}

/** Lifetimes are recorded up to this (a day); longer ones count as this. */
export const LIFETIME_MAX_US = 24 * 3600 * US;

/** Connection lifetimes in µs, 1 µs to 24 h, 2 significant digits, packed (small while sparse). */
export function newLifetimeHistogram(bitBucketSize: 'packed' | 32 = 'packed'): hdr.Histogram {
	return hdr.build({ bitBucketSize, lowestDiscernibleValue: 1, highestTrackableValue: LIFETIME_MAX_US, numberOfSignificantValueDigits: 2 });
}

export function destKey(netns: number, saddr: string, daddr: string, dport: number): string {
	return `${netns} ${saddr} ${daddr} ${dport}`;
}

/** Adds `n` (one) to `counter` in the slot of `second`, clearing the slot when it held an older second. */
export function countSecond(counts: Uint32Array, slotSecond: Float64Array, counter: number, width: number, second: number, n = 1): void {
	const slot = second % RATE_SECONDS;
	if (slotSecond[slot] !== second) {
		if (slotSecond[slot]! > second) return; // older than the ring: too late to count in a rate
		counts.fill(0, slot * width, slot * width + width);
		slotSecond[slot] = second;
	}
	counts[slot * width + counter]! += n;
}

/** A new owner, counting nothing yet. */
export function newOwner(key: string, who: Pick<Owner, 'pid' | 'comm' | 'cgroupId' | 'netns' | 'side' | 'peer'>, nowUs: number): Owner {
	return {
		key, ...who,
		counts: new Uint32Array(RATE_SECONDS * COUNTERS.length),
		slotSecond: new Float64Array(RATE_SECONDS).fill(-1),
		totals: new Float64Array(COUNTERS.length),
		connectErrnos: new Map(),
		history: new Uint32Array(HISTORY_SECONDS),
		lifetimes: undefined,
		lifetimesPlain: false,
		timeWait: 0,
		peakTimeWait: 0,
		lastChangeUs: nowUs,
		lastEventUs: nowUs,
	};
}

/** A new destination (port pool), holding nothing yet. */
export function newDestination(key: string, where: Pick<Destination, 'netns' | 'saddr' | 'daddr' | 'dport'>, nowUs: number): Destination {
	return {
		key, ...where, portsHeldOpen: 0, timeWait: 0, expiring: new SecondCounts(), holders: new Map(),
		connects: new Uint32Array(RATE_SECONDS), slotSecond: new Float64Array(RATE_SECONDS).fill(-1), connectsTotal: 0, connectFailures: 0, lastEventUs: nowUs,
	};
}

/** One more `counter` event of `o` in `second` (`n` more: a count of the kernel's). */
export function countEvent(o: Owner, counter: number, second: number, n = 1): void {
	countSecond(o.counts, o.slotSecond, counter, COUNTERS.length, second, n);
	o.totals[counter]! += n;
}

/** Lifetimes an owner records in a packed histogram before it gets a plain one. */
const PACKED_LIFETIMES_MAX = 4096;

/** Records a connection's lifetime in its owner's histogram (none when its start was not seen). */
export function recordLifetime(o: Owner, lifetimeUs: number): void {
	if (lifetimeUs <= 0) return; // the start was not seen
	lifetimesFor(o, 1).recordValue(Math.min(lifetimeUs, LIFETIME_MAX_US));
}

/**
 * Records `n` lifetimes of at most `boundUs` (a bucket of the kernel's histogram, which keeps no
 * more): percentiles read from them are the buckets' bounds.
 */
export function recordLifetimes(o: Owner, boundUs: number, n: number): void {
	if (n > 0) lifetimesFor(o, n).recordValueWithCount(Math.min(boundUs, LIFETIME_MAX_US), n);
}

/**
 * Moving a histogram from packed to plain counts reads each of its ~4,000 buckets through the packed
 * array's index, about 0.8 ms, and owners that count alike cross PACKED_LIFETIMES_MAX together: the
 * soak's 64 destinations, each an owner, did at 18 s, one reading of the counters then held the event
 * loop 80 to 100 ms and a scrape waited for it (docs/counting-in-the-kernel.md). At most
 * MOVES_PER_WINDOW move in MOVE_WINDOW_MS, in the whole process (the cost is the event loop's); the
 * others stay packed a little longer, which costs only time per value (the same buckets: the
 * percentiles do not change, so neither does anything a view shows or a replay computes).
 */
const MOVE_WINDOW_MS = 50;
const MOVES_PER_WINDOW = 4;
let moveWindowStartMs = -Infinity;
let movesInWindow = 0;

function mayMove(): boolean {
	const nowMs = performance.now();
	if (nowMs - moveWindowStartMs >= MOVE_WINDOW_MS) [moveWindowStartMs, movesInWindow] = [nowMs, 0];
	return movesInWindow++ < MOVES_PER_WINDOW;
}

/**
 * The owner's histogram, to take `n` more values. Packed arrays keep a quiet owner's histogram small
 * but cost ~10x per value: one about to pass PACKED_LIFETIMES_MAX moves to plain 32-bit counts (16 KB)
 * when mayMove() lets it.
 */
function lifetimesFor(o: Owner, n: number): hdr.Histogram {
	if (o.lifetimesPlain) return o.lifetimes!;
	const packed = o.lifetimes;
	if (packed && packed.totalCount + n < PACKED_LIFETIMES_MAX) return packed;
	if (!packed && n < PACKED_LIFETIMES_MAX) return (o.lifetimes = newLifetimeHistogram('packed'));
	if (packed && !mayMove()) return packed;
	const h = newLifetimeHistogram(32);
	if (packed) h.add(packed);
	o.lifetimesPlain = true;
	return (o.lifetimes = h);
}

/** Events per second of `counter` in per-second slots, over at least the last `windowUs` (at most RATE_SECONDS). */
export function perSecond(counts: Uint32Array, slotSecond: Float64Array, width: number, counter: number, nowUs: number, windowUs: number, startUs: number): number {
	// Whole seconds from the one the window starts in: the span is between windowUs and windowUs + 1 s.
	const nowSecond = Math.floor(nowUs / US);
	const firstSecond = Math.max(Math.floor((nowUs - windowUs) / US), nowSecond - RATE_SECONDS + 1);
	let sum = 0;
	for (let slot = 0; slot < RATE_SECONDS; slot++) {
		const s = slotSecond[slot]!;
		if (s >= firstSecond && s <= nowSecond) sum += counts[slot * width + counter]!;
	}
	const spanUs = nowUs - Math.max(firstSecond * US, startUs);
	return spanUs > 0 ? (sum * US) / spanUs : 0;
}
