/**
 * Owners summed into groups (--by process, comm, cgroup, workload, netns, dest), and what a group
 * shows of its owners: the busiest name, the side that closes first, lifetimes, TIME_WAIT held over
 * the last minute, likely owners. Shared by the snapshot (top, doctor, serve) and the report. Pure.
 */
import type { Histogram } from 'hdr-histogram-js';
import { workloadOf } from '../facts/workload.js';
import { LIFETIME_BOUNDS_US } from '../event/counts.js';
import type { SideName } from '../event/kinds.js';
import type { Likely } from './likely.js';
import { C, HISTORY_SECONDS, newLifetimeHistogram, type CounterName, type Owner } from './owners.js';

export const GROUPINGS = ['process', 'comm', 'cgroup', 'workload', 'netns', 'dest'] as const;
export type Grouping = (typeof GROUPINGS)[number];

/** Which end of a group's connections closes first, so holds the TIME_WAIT; '-': none seen. */
export type ClosingSide = 'client' | 'server' | 'both' | '-';

/** The root cgroup's path: no workload. */
export const ROOT_CGROUP = '/';

/** The name a cgroup id is shown by: its workload (service, container, pod), else its path, else the id. */
export function workloadLabel(cgroupId: number, cgroupPath?: (id: number) => string | undefined): string {
	if (cgroupId === 0) return '(unknown)';
	return workloadOf(cgroupPath?.(cgroupId))?.name ?? `cgroup id ${cgroupId}`;
}

/** workloadLabel, remembered for one snapshot or report: a model holds thousands of owners of a few cgroups. */
export function workloadNamer(cgroupPath?: (id: number) => string | undefined): (cgroupId: number) => string {
	const memo = new Map<number, string>();
	return (id) => {
		let name = memo.get(id);
		if (name === undefined) memo.set(id, (name = workloadLabel(id, cgroupPath)));
		return name;
	};
}

export function groupKey(o: Owner, by: Grouping, workload: (cgroupId: number) => string = (id) => workloadLabel(id)): string {
	switch (by) {
		case 'process': return o.pid ? String(o.pid) : o.comm;
		case 'comm': return o.comm;
		case 'cgroup': return String(o.cgroupId);
		case 'workload': return workload(o.cgroupId);
		case 'netns': return String(o.netns);
		case 'dest': return o.peer;
	}
}

/** The value of `f` carrying the most activity (TIME_WAIT held, then events). */
export function busiest(owners: readonly Owner[], f: (o: Owner) => string): string {
	const weight = new Map<string, number>();
	for (const o of owners) {
		const w = o.timeWait * 1e6 + o.totals.reduce((a, b) => a + b, 0);
		weight.set(f(o), (weight.get(f(o)) ?? 0) + w);
	}
	let best = '';
	let bestWeight = -1;
	for (const [value, w] of weight) if (w > bestWeight) [best, bestWeight] = [value, w];
	return best;
}

export function errnoTotals(owners: readonly Owner[]): Record<string, number> {
	const out: Record<string, number> = {};
	for (const o of owners) for (const [errno, n] of o.connectErrnos) out[errno] = (out[errno] ?? 0) + n;
	return out;
}

/** TIME_WAIT is held by the end that closed first: the side of the group's TIME_WAIT entries, else of its active closes. */
export function closingSide(owners: readonly Owner[]): ClosingSide {
	const by = (counter: CounterName) => {
		const n: Record<SideName, number> = { client: 0, server: 0, unknown: 0 };
		for (const o of owners) n[o.side] += o.totals[C[counter]]! + (counter === 'timeWaitEntries' ? o.timeWait : 0);
		return n;
	};
	let n = by('timeWaitEntries');
	if (n.client + n.server === 0) n = by('activeCloses');
	const total = n.client + n.server;
	if (total === 0) return '-';
	if (n.client >= 0.9 * total) return 'client';
	if (n.server >= 0.9 * total) return 'server';
	return 'both';
}

/** The owners' connection lifetimes in one histogram (theirs, when only one has any); undefined when none. */
export function mergedLifetimes(owners: readonly Owner[]): Histogram | undefined {
	const withData = owners.filter((o) => o.lifetimes && o.lifetimes.totalCount > 0);
	if (withData.length <= 1) return withData[0]?.lifetimes;
	// Plain counts for the sum: adding a busy owner's thousands of buckets into a packed histogram
	// every refresh cost more than the refresh itself.
	const h = newLifetimeHistogram(32);
	for (const o of withData) h.add(o.lifetimes!);
	return h;
}

/** µs → ms with two decimals, as lifetimes are shown. */
export const lifetimeMs = (us: number): number => Math.round(us / 10) / 100;

/**
 * The lifetimes' p50 and p99, ms. `bucketed`: they came as the kernel's buckets (ChurnModel.fromCounts):
 * each is the bound of its bucket, and the row says so (`lifetimeUpTo`: at most that).
 */
export function lifetimePercentiles(owners: Owner[], bucketed = false): { lifetimeP50Ms: number | null; lifetimeP99Ms: number | null; lifetimeUpTo?: true } {
	const h = mergedLifetimes(owners);
	if (!h) return { lifetimeP50Ms: null, lifetimeP99Ms: null };
	const value = (us: number) => lifetimeMs(bucketed ? lifetimeBoundOf(us) : us);
	return { lifetimeP50Ms: value(h.getValueAtPercentile(50)), lifetimeP99Ms: value(h.getValueAtPercentile(99)), ...(bucketed ? { lifetimeUpTo: true as const } : {}) };
}

/** A lifetime recorded at a bucket's bound, as the histogram reads it back (to within its precision): that bound. */
export function lifetimeBoundOf(us: number): number {
	for (const bound of LIFETIME_BOUNDS_US) if (us <= bound * 1.01) return bound;
	return us;
}

export function history(owners: Owner[], nowSecond: number): number[] {
	const out = new Array<number>(HISTORY_SECONDS).fill(0);
	for (const o of owners) {
		for (let i = 0; i < HISTORY_SECONDS; i++) {
			out[i]! += o.history[(nowSecond - HISTORY_SECONDS + 1 + i) % HISTORY_SECONDS]!;
		}
	}
	return out;
}

/**
 * Likely owners of a group's sockets of unknown process, by `weight` (TIME_WAIT held now for top, the
 * most held at once for a report), the heaviest first; at most 3.
 */
export function likelyRows(likely: ReadonlyMap<Owner, Likely>, owners: readonly Owner[], weight: (o: Owner) => number): (Likely & { weight: number })[] {
	const byPid = new Map<number, Likely & { weight: number }>();
	for (const o of owners) {
		const l = likely.get(o);
		const w = weight(o);
		if (!l || w === 0) continue;
		const row = byPid.get(l.pid);
		if (row) row.weight += w;
		else byPid.set(l.pid, { ...l, weight: w });
	}
	return [...byPid.values()].sort((a, b) => b.weight - a.weight || a.pid - b.pid).slice(0, 3);
}
