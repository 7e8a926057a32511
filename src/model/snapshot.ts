/**
 * The immutable Snapshot every view of `top` consumes: owners summed into groups (--by, groups.ts),
 * sorted, with rates over a window; the most constrained destinations with their headroom, the
 * namespaces' TIME_WAIT totals and settings, and the victims (port-rows.ts); narrowed to a view
 * (view-filter.ts) when asked. Pure: the model and the time come in.
 */
import type { ChurnModel } from './churn-model.js';
import {
	busiest, closingSide, errnoTotals, groupKey, history, lifetimePercentiles, likelyRows, ROOT_CGROUP, workloadNamer,
	type ClosingSide, type Grouping,
} from './groups.js';
import type { Likely } from './likely.js';
import { C, COUNTERS, perSecond, type CounterName, type Owner } from './owners.js';
import { destinationRows, namespaceRows, VICTIM_WINDOW_US, victimRows, type DestinationRow, type NamespaceRow, type VictimRow } from './port-rows.js';
import { destinationKey, destinationMatches, isNarrowing, netnsMatches, ownerMatches, victimMatches, type ViewFilter } from './view-filter.js';

export const SORT_KEYS = ['timeWait', 'timeWaitPerSec', 'connectsPerSec', 'resetsPerSec', 'connectFailuresPerSec'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export interface Row {
	/** Identifies the group within its grouping. */
	key: string;
	/** Grouping by process: the process id (0: not known). */
	pid?: number;
	/** The command name; with several in the group, the busiest one. */
	comm: string;
	cgroupId?: number;
	netns?: number;
	dest?: string;
	/** The workload (systemd unit, container, pod) of the group's busiest cgroup, when known. */
	workload?: string;
	/** Processes in the group. */
	processes: number;
	connectsPerSec: number;
	acceptsPerSec: number;
	activeClosesPerSec: number;
	timeWaitPerSec: number;
	resetsPerSec: number;
	connectFailuresPerSec: number;
	/** TIME_WAIT sockets held now. */
	timeWait: number;
	/** Since start. */
	connectFailures: Record<string, number>;
	bindFailures: number;
	/** Which end closes first, so holds the TIME_WAIT: client, server, both, or '-' (none seen). */
	side: ClosingSide;
	/** Grouping by process: the process has exited (its TIME_WAIT outlives it by up to 60 s). */
	exited?: boolean;
	lifetimeP50Ms: number | null;
	lifetimeP99Ms: number | null;
	/** The lifetimes came as the kernel's buckets (the agent's model, a window of counts): each is at most that. */
	lifetimeUpTo?: true;
	/** Peer with the most TIME_WAIT held (or connections): "daddr:dport", or "local saddr:sport" for a server. */
	topDest: string;
	/** TIME_WAIT held at the end of each of the last 60 seconds, oldest first. */
	history: number[];
	/**
	 * For sockets whose process is unknown ("(before start)", "(events lost)"): who likely owns how
	 * many of them, and why. Inferred: part of timeWait above, never of another row's.
	 */
	likely?: LikelyRow[];
}

export interface LikelyRow extends Likely {
	timeWait: number;
}

export interface Snapshot {
	/** CLOCK_MONOTONIC µs of the snapshot. */
	atUs: number;
	uptimeMs: number;
	by: Grouping;
	sort: SortKey;
	rows: Row[];
	destinations: DestinationRow[];
	namespaces: NamespaceRow[];
	/** Failures for want of a port in the last minute, the most first. */
	victims: VictimRow[];
	/** Owners merged into "(other)" and TIME_WAIT entries not tracked, because of the memory bounds. */
	overflow: { owners: number; timeWait: number };
}

export interface SnapshotOptions {
	by: Grouping;
	sort: SortKey;
	nowUs: number;
	/** Window of the rates. */
	rateWindowUs: number;
	/** Case-insensitive substring of comm, pid, dest or cgroup; empty: all. */
	filter?: string;
	/** The tracing filters, applied to a model built without them (the agent's): view-filter.ts. */
	view?: ViewFilter;
	/** cgroup id → path, for filtering by cgroup path. */
	cgroupPath?: (id: number) => string | undefined;
	maxRows?: number;
	maxDestinations?: number;
	maxVictims?: number;
}

const US = 1_000_000;
const W = COUNTERS.length;

interface Acc {
	owners: Owner[];
}

export function snapshot(model: ChurnModel, opts: SnapshotOptions): Snapshot {
	const { nowUs, by } = opts;
	const groups = new Map<string, Acc>();
	const needle = opts.filter?.toLowerCase() ?? '';
	const workload = workloadNamer(opts.cgroupPath);
	const likelyByOwner = model.likelyOwners();
	const view = isNarrowing(opts.view) ? opts.view : undefined;
	/** With a view that names a process: the destinations its owners use. */
	const usedBy = new Set<string>();
	for (const o of model.owners.values()) {
		if (view && !ownerMatches(view, o)) continue;
		if (view) usedBy.add(destinationKey(o.netns, o.peer));
		if (needle && !matches(o, needle, opts.cgroupPath, workload)) continue;
		const key = groupKey(o, by, workload);
		const g = groups.get(key);
		if (g) g.owners.push(o);
		else groups.set(key, { owners: [o] });
	}
	const rate = (o: Owner, name: CounterName) => perSecond(o.counts, o.slotSecond, W, C[name], nowUs, opts.rateWindowUs, model.startUs);
	const rows: Row[] = [];
	const sampleSecond = Math.floor(nowUs / US);
	for (const [key, g] of groups) {
		const sum = (f: (o: Owner) => number) => g.owners.reduce((s, o) => s + f(o), 0);
		const row: Row = {
			key,
			comm: busiest(g.owners, (o) => o.comm),
			processes: new Set(g.owners.filter((o) => o.pid).map((o) => o.pid)).size,
			connectsPerSec: sum((o) => rate(o, 'connects')),
			acceptsPerSec: sum((o) => rate(o, 'accepts')),
			activeClosesPerSec: sum((o) => rate(o, 'activeCloses')),
			timeWaitPerSec: sum((o) => rate(o, 'timeWaitEntries')),
			resetsPerSec: sum((o) => rate(o, 'resets')),
			connectFailuresPerSec: sum((o) => rate(o, 'connectFailures')),
			timeWait: sum((o) => o.timeWait),
			connectFailures: errnoTotals(g.owners),
			bindFailures: sum((o) => o.totals[C['bindFailures']]!),
			side: closingSide(g.owners),
			...lifetimePercentiles(g.owners, model.fromCounts),
			topDest: busiest(g.owners.filter((o) => !o.peer.startsWith('bind ')), (o) => o.peer),
			history: history(g.owners, sampleSecond),
		};
		const likely = likelyRows(likelyByOwner, g.owners, (o) => o.timeWait).map(({ weight, ...l }) => ({ ...l, timeWait: weight }));
		if (likely.length) row.likely = likely;
		const first = g.owners[0]!;
		const cgroupId = Number(busiest(g.owners, (o) => String(o.cgroupId)));
		const named = by === 'workload' ? key : cgroupId !== 0 && by !== 'netns' && by !== 'dest' ? workload(cgroupId) : undefined;
		if (named !== undefined && named !== ROOT_CGROUP) row.workload = named; // the root cgroup is no workload
		if (by === 'process') row.pid = first.pid;
		if (by === 'cgroup') row.cgroupId = first.cgroupId;
		if (by === 'netns') row.netns = first.netns;
		if (by === 'dest') row.dest = first.peer;
		rows.push(row);
	}
	const sortKey = opts.sort;
	rows.sort((a, b) => b[sortKey] - a[sortKey] || b.timeWait - a.timeWait || b.timeWaitPerSec - a.timeWaitPerSec || a.key.localeCompare(b.key));

	return {
		atUs: nowUs,
		uptimeMs: (nowUs - model.startUs) / 1000,
		by,
		sort: sortKey,
		rows: rows.slice(0, opts.maxRows ?? 200),
		destinations: destinationRows(model, nowUs, opts.rateWindowUs, view && ((d) => destinationMatches(view, d, usedBy))).slice(0, opts.maxDestinations ?? 10),
		namespaces: namespaceRows(model, nowUs).filter((ns) => !view || netnsMatches(view, ns.netns)),
		victims: victimRows(model, nowUs - VICTIM_WINDOW_US, likelyByOwner, view && ((v) => victimMatches(view, v))).slice(0, opts.maxVictims ?? 10),
		overflow: { owners: model.ownersRefused, timeWait: model.timeWait.refused },
	};
}

function matches(o: Owner, needle: string, cgroupPath: ((id: number) => string | undefined) | undefined, workload: (id: number) => string): boolean {
	return o.comm.toLowerCase().includes(needle) || String(o.pid) === needle || o.peer.toLowerCase().includes(needle) ||
		(cgroupPath?.(o.cgroupId) ?? '').toLowerCase().includes(needle) || workload(o.cgroupId).toLowerCase().includes(needle);
}

/** Marks rows of processes that no longer run (`runs(pid)` false). Grouping by process only. */
export function markExited(s: Snapshot, runs: (pid: number) => boolean): void {
	if (s.by !== 'process') return;
	for (const r of s.rows) if (r.pid && !runs(r.pid)) r.exited = true;
}
