/**
 * What a pass of walks reads: which namespaces (namespacesToWalk), and whether a due walk of one is
 * needed or the kernel's own count shows the model is right (walkNeeded).
 *
 * A walk reads every socket of the namespace, in the kernel and again in JavaScript: at 900,000
 * TIME_WAIT about 4 s of CPU (bench/RESULTS.md, the soak), however little changed. The kernel keeps a
 * count of the namespace's timewait sockets (/proc/net/sockstat `tw`), read in O(1) before a walk's
 * iterator is created. When it equals the model's count (within what is in flight) and no setting changed
 * (TcpExtTCPTimeWaitOverflow among them), the walk is skipped: what a walk corrects shows in that
 * count first. Sockets the kernel never reported entering TIME_WAIT make it higher; tcp_tw_reuse
 * taking one over, an RST ending one early, or tcp_max_tw_buckets refusing one make it lower
 * (docs/kernel-facts.md, "What the kernel does not show"). What a count cannot show (as many of
 * one as of another, errors smaller than the tolerance, open connections held) is corrected by a
 * walk at least every FORCE_WALK_EVERY intervals. Pure.
 */
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { ChurnModel } from '../model/churn-model.js';
import type { WalkPeek } from '../tracer/namespaces.js';
import type { WalkTime } from './walk-reader.js';

export interface WalkStats {
	inProgress: boolean;
	/** Full passes over the namespaces of interest since start. */
	completed: number;
	/** Wall time of the last full pass, ms (the event loop ran between its chunks); undefined before the first. */
	lastMs: number | undefined;
	/** Of the last full pass: where its wall time went (the rest, other work between its chunks). */
	lastTime?: WalkTime;
	/** Due walks of a namespace not read: the kernel's count showed the model right (walkNeeded). */
	skipped: number;
	/** Walks of a namespace read as open-socket walks since start (open-walks.ts): its open sockets alone. */
	openOnly: number;
	/** Of the last full pass: namespaces read by open-socket walks, and by walks of their table. */
	lastOpenOnly?: number;
	lastTable?: number;
}

/** At most this many namespaces walked per pass: each costs a setns and a walk. */
export const MAX_WALKED_NAMESPACES = 16;

/** A namespace is walked at least every this many walk intervals, whatever the counts say. */
export const FORCE_WALK_EVERY = 10;

/**
 * How far the two counts may differ and still agree: sockets that entered TIME_WAIT between the
 * drain before the check and the kernel's count, and the expiry the model predicts within
 * milliseconds of the kernel's timer wheel (kernel-facts §9), at any rate: 64, plus 0.05 %.
 */
export function timeWaitTolerance(count: number): number {
	return 64 + Math.ceil(count / 2000);
}

export interface WalkCheck {
	/** The kernel's count, as the walk was opened (undefined: not known, walk). */
	kernelTimeWait: number | undefined;
	/** The model's count of the namespace now, its clock moved to now. */
	modelTimeWait: number;
	/**
	 * Entries the model expired within the last second (recent-expiries.ts): the kernel's timers, run
	 * from a softirq that falls behind under load, may not have ended them yet. The kernel's count may
	 * exceed the model's by that many and still agree.
	 */
	modelExpiredLately?: number;
	/**
	 * Counted entries (the agent's model from the kernel's counters) the model still holds that the
	 * kernel may have ended already: the kernel's count may be below the model's by that many.
	 */
	modelExpiringSoon?: number;
	/**
	 * The model holds what entered since counting began as the kernel's counts (ChurnModel.fromCounts),
	 * which no walk corrects (no cookies): a model above the kernel's count (tcp_tw_reuse takeovers,
	 * an RST ending a timewait socket early) is then no reason to read a walk, which would find the
	 * same next time. Step 6 (walks aggregated per destination in the kernel) would correct it.
	 */
	counted?: boolean;
	/** Whether the model holds every socket of the namespace (no filter but namespaces). */
	seesEverySocket: boolean;
	/** The settings at the namespace's last walk (undefined: never walked) and now. */
	settingsWalked: NetnsSettings | undefined;
	settingsNow: NetnsSettings;
	/** When the namespace was last walked (undefined: never), and now, µs on one clock. */
	walkedAtUs: number | undefined;
	nowUs: number;
	walkIntervalMs: number;
}

/** Whether to read the walk; false when the model is right by the kernel's count. */
export function walkNeeded(c: WalkCheck): boolean {
	if (c.kernelTimeWait === undefined || !c.seesEverySocket || !c.settingsWalked || c.walkedAtUs === undefined) return true;
	if (c.nowUs - c.walkedAtUs >= FORCE_WALK_EVERY * c.walkIntervalMs * 1000) return true;
	// Counts hold tcp_max_tw_buckets as the kernel does (counted.ts), and a walk could not correct them: overflows are no reason to walk.
	if (!sameSettings(c.settingsWalked, c.settingsNow, c.counted === true)) return true;
	const tolerance = timeWaitTolerance(c.kernelTimeWait);
	const diff = c.kernelTimeWait - c.modelTimeWait;
	return (diff < -tolerance - (c.modelExpiringSoon ?? 0) && !c.counted) || diff > tolerance + (c.modelExpiredLately ?? 0);
}

/**
 * How far a model of counted entries (model/counted.ts) runs from the kernel's timers. An entry read
 * at R came in the reading's interval before it (up to a second and a half when the upkeep runs
 * late) and is held from R to R + 60 s; the kernel ends it 60 s after it came plus the timer wheel's
 * slack (up to 2.048 s at HZ 250, 5.12 s at HZ 100: kernel-facts §9, which counts do not carry) plus
 * the timer softirq's lag (recent-expiries.ts), and the kernel's count holds entries since the last
 * reading too. So the kernel may hold an entry the model expired up to COUNTED_LATE_US ago, and end
 * one the model holds COUNTED_EARLY_US ahead.
 */
export const COUNTED_LATE_US = 7_000_000;
export const COUNTED_EARLY_US = 1_500_000;

/** The check of a due walk of `peek`'s namespace: the model's count (its clock moved to the peek) against the kernel's. */
export function walkCheckOf(model: ChurnModel, peek: WalkPeek, walkIntervalMs: number): WalkCheck {
	const ns = model.namespaces.get(peek.netns);
	const at = peek.takenAtUs;
	const counted = model.fromCounts;
	return {
		kernelTimeWait: peek.timeWaitKernel, modelTimeWait: model.timeWait.countIn(peek.netns), seesEverySocket: model.seesEverySocket,
		modelExpiredLately: model.timeWait.expired.since(peek.netns, at, counted ? COUNTED_LATE_US : undefined),
		modelExpiringSoon: counted ? model.timeWait.countedExpiring(peek.netns, at, at + COUNTED_EARLY_US) : 0, counted,
		settingsWalked: ns?.settings, settingsNow: peek.settings, walkedAtUs: ns?.walkedAtUs, nowUs: at, walkIntervalMs,
	};
}

function sameSettings(a: NetnsSettings, b: NetnsSettings, overflowAside: boolean): boolean {
	const text = (s: NetnsSettings) => JSON.stringify({ ...s, reservedPorts: [...s.reservedPorts].sort((x, y) => x - y), ...(overflowAside ? { timeWaitOverflow: 0 } : {}) });
	return text(a) === text(b);
}

/**
 * The namespaces asked for; else this one, those seen in events (the busiest first), then the
 * others in use on the host, which may hold TIME_WAIT sockets from before start.
 */
export function namespacesToWalk(model: ChurnModel, asked: readonly number[], home: number, discovered: readonly number[]): number[] {
	if (asked.length) return [...asked];
	const seen = [...model.namespaces.keys()].filter((n) => n !== home && n !== 0)
		.sort((a, b) => model.timeWait.countIn(b) - model.timeWait.countIn(a));
	return [...new Set([home, ...seen, ...discovered])].slice(0, MAX_WALKED_NAMESPACES);
}
