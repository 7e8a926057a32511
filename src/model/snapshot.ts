/**
 * The immutable Snapshot every view of `top` consumes: owners summed into groups (--by), sorted,
 * with rates over a window; the most constrained destinations with their headroom; and the
 * namespaces' TIME_WAIT totals and settings. Pure: the model and the time come in.
 */
import type { SideName } from '../event/kinds.js';
import { C, ChurnModel, COUNTERS, HISTORY_SECONDS, newLifetimeHistogram, type CounterName, type Destination, type NamespaceTimeWait, type NetnsSettings, type Owner } from './aggregate.js';
import type { Histogram } from 'hdr-histogram-js';
import { secondsToExhaustion, sustainableRate } from './ports.js';
import type { VictimEntry } from './victims.js';
import type { Likely } from './likely.js';
import { workloadOf } from './workload.js';
import { destinationKey, destinationMatches, isNarrowing, netnsMatches, ownerMatches, victimMatches, type ViewFilter } from './view-filter.js';

export const GROUPINGS = ['process', 'comm', 'cgroup', 'workload', 'netns', 'dest'] as const;
export type Grouping = (typeof GROUPINGS)[number];

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
	side: 'client' | 'server' | 'both' | '-';
	/** Grouping by process: the process has exited (its TIME_WAIT outlives it by up to 60 s). */
	exited?: boolean;
	lifetimeP50Ms: number | null;
	lifetimeP99Ms: number | null;
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

export interface DestinationRow {
	netns: number;
	saddr: string;
	daddr: string;
	dport: number;
	portsInUse: number;
	portsUsable: number;
	/** Ports in use / usable, 0..1. */
	usedRatio: number;
	/** Free ports / usable, 0..1: (usable - in use) / usable, not 1 - usedRatio, which prints 0.30000000000000004. */
	headroomRatio: number;
	/** New connections per second it sustains: usable / 60 s. */
	sustainableRate: number;
	/** New connections per second now. */
	currentRate: number;
	/** At the current rate; null when it is sustainable. */
	secondsToExhaustion: number | null;
	connectFailures: number;
}

export interface NamespaceRow {
	netns: number;
	/** Its name: /run/netns/NAME's NAME, or the workload of a process in it; set by the pipeline. */
	name?: string;
	/** TIME_WAIT sockets in the namespace, every process's (ChurnModel.namespaceTimeWait). */
	timeWait: number;
	/** `model`: now; `walk`: at the last walk, walkedAgoMs ago (a filtered model sees only part of the namespace). */
	timeWaitFrom: NamespaceTimeWait['from'];
	/** The last walk's count (all owners), and its age. */
	walkedTimeWait: number | null;
	walkedAgoMs: number | null;
	settings: NetnsSettings | null;
	portsUsable: number | null;
	/** TIME_WAIT sockets the kernel did not create (tcp_max_tw_buckets) since the first walk; null before it. */
	overflowSinceStart: number | null;
}

/** Who holds ports a victim needed: TIME_WAIT sockets per process, now. */
export interface HolderRow {
	pid: number;
	comm: string;
	timeWait: number;
	/** When the holder's process is unknown: who likely owns those sockets, and why. */
	likely?: Likely;
}

/** A process whose connect() or bind() failed for want of a port in the victim window. */
export interface VictimRow extends Omit<VictimEntry, 'addr' | 'port'> {
	/** The holders of that pool's ports, the most first (at most MAX_HOLDERS). */
	holders: HolderRow[];
	/** TIME_WAIT held in that pool by all holders. */
	heldTimeWait: number;
}

/** How a process holding ports is named wherever victims are shown: "comm (pid N)", or the comm alone. */
export function holderLabel(h: { pid: number; comm: string; likely?: Likely }): string {
	const name = h.pid ? `${h.comm} (pid ${h.pid})` : h.comm;
	return h.likely ? `${name} (likely ${h.likely.comm}, pid ${h.likely.pid})` : name;
}

/** Victims whose last failure is at most this old are shown. */
export const VICTIM_WINDOW_US = 60 * 1_000_000;
const MAX_HOLDERS = 3;

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

const ROOT_CGROUP = '/';

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
	const rate = (o: Owner, name: CounterName) => ChurnModel.rate(o.counts, o.slotSecond, W, C[name], nowUs, opts.rateWindowUs, model.startUs);
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
			...lifetimePercentiles(g.owners),
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
export function closingSide(owners: readonly Owner[]): Row['side'] {
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

function lifetimePercentiles(owners: Owner[]): { lifetimeP50Ms: number | null; lifetimeP99Ms: number | null } {
	const h = mergedLifetimes(owners);
	if (!h) return { lifetimeP50Ms: null, lifetimeP99Ms: null };
	return { lifetimeP50Ms: lifetimeMs(h.getValueAtPercentile(50)), lifetimeP99Ms: lifetimeMs(h.getValueAtPercentile(99)) };
}

function history(owners: Owner[], nowSecond: number): number[] {
	const out = new Array<number>(HISTORY_SECONDS).fill(0);
	for (const o of owners) {
		for (let i = 0; i < HISTORY_SECONDS; i++) {
			out[i]! += o.history[(nowSecond - HISTORY_SECONDS + 1 + i) % HISTORY_SECONDS]!;
		}
	}
	return out;
}

/** Destinations with ports in use or connects in the rate window, the least headroom first. */
export function destinationRows(model: ChurnModel, nowUs: number, rateWindowUs: number, wanted?: (d: Destination) => boolean): DestinationRow[] {
	const nowSecond = Math.floor(nowUs / US);
	const rows: DestinationRow[] = [];
	for (const d of model.destinations.values()) {
		if (wanted && !wanted(d)) continue;
		const portsUsable = model.portsUsable(d.netns);
		const portsInUse = d.portsHeldOpen + d.timeWait;
		if (portsInUse === 0 && d.connects.every((n) => n === 0)) continue;
		const currentRate = ChurnModel.rate(d.connects, d.slotSecond, 1, 0, nowUs, rateWindowUs, model.startUs);
		const timeWaitSecondsLeft = new Map<number, number>();
		for (const [bucket, n] of d.expiring) timeWaitSecondsLeft.set(Math.max(0, bucket - nowSecond), n);
		const ns = model.namespaces.get(d.netns);
		const cap = ns?.settings?.maxTimeWaitBuckets;
		const timeWaitElsewhere = model.namespaceTimeWait(d.netns).count - d.timeWait;
		const maxTimeWait = cap === undefined ? undefined : Math.max(0, cap - Math.max(0, timeWaitElsewhere));
		const seconds = secondsToExhaustion({ portsUsable, portsHeldOpen: d.portsHeldOpen, timeWaitSecondsLeft, ratePerSec: currentRate, maxTimeWait });
		rows.push({
			netns: d.netns, saddr: d.saddr, daddr: d.daddr, dport: d.dport,
			portsInUse, portsUsable,
			usedRatio: portsUsable > 0 ? Math.min(1, portsInUse / portsUsable) : 1,
			headroomRatio: portsUsable > 0 ? Math.max(0, portsUsable - portsInUse) / portsUsable : 0,
			sustainableRate: sustainableRate(portsUsable),
			currentRate,
			secondsToExhaustion: seconds === undefined ? null : Math.round(seconds * 10) / 10,
			connectFailures: d.connectFailures,
		});
	}
	return rows.sort((a, b) => b.usedRatio - a.usedRatio || (a.secondsToExhaustion ?? Infinity) - (b.secondsToExhaustion ?? Infinity) || b.currentRate - a.currentRate);
}

/** Every namespace known, the most TIME_WAIT first. */
export function namespaceRows(model: ChurnModel, nowUs: number): NamespaceRow[] {
	return [...model.namespaces.values()].map((ns) => {
		const timeWait = model.namespaceTimeWait(ns.netns);
		return {
			netns: ns.netns,
			timeWait: timeWait.count,
			timeWaitFrom: timeWait.from,
			walkedTimeWait: ns.walkedTimeWait ?? null,
			walkedAgoMs: ns.walkedAtUs === undefined ? null : Math.round((nowUs - ns.walkedAtUs) / 1000),
			settings: ns.settings ?? null,
			portsUsable: ns.settings ? model.portsUsable(ns.netns) : null,
			overflowSinceStart: ns.settings ? (ns.settings.timeWaitOverflow ?? 0) - (ns.overflowAtFirstWalk ?? 0) : null,
		};
	}).sort((a, b) => b.timeWait - a.timeWait || a.netns - b.netns);
}

/** Victims since `sinceUs`, each with who holds the ports it needed now (ChurnModel.holdersOf…). */
export function victimRows(model: ChurnModel, sinceUs: number, likelyByOwner = model.likelyOwners(), wanted?: (v: VictimEntry) => boolean): VictimRow[] {
	return model.victims.since(sinceUs).filter((v) => !wanted || wanted(v)).map(({ addr, port, ...v }) => {
		const held = v.call === 'connect' ? model.holdersOfDestination(v.netns, addr, port) : model.holdersOfLocalPort(v.netns, port);
		const byProcess = new Map<string, HolderRow>();
		let heldTimeWait = 0;
		for (const [o, n] of held) {
			heldTimeWait += n;
			const likely = likelyByOwner.get(o);
			const key = `${o.pid} ${o.comm} ${likely?.pid ?? ''}`;
			const h: HolderRow = byProcess.get(key) ?? { pid: o.pid, comm: o.comm, timeWait: 0, ...(likely ? { likely } : {}) };
			h.timeWait += n;
			byProcess.set(key, h);
		}
		const holders = [...byProcess.values()].sort((a, b) => b.timeWait - a.timeWait || a.comm.localeCompare(b.comm)).slice(0, MAX_HOLDERS);
		return { ...v, holders, heldTimeWait };
	});
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

/** Marks rows of processes that no longer run (`runs(pid)` false). Grouping by process only. */
export function markExited(s: Snapshot, runs: (pid: number) => boolean): void {
	if (s.by !== 'process') return;
	for (const r of s.rows) if (r.pid && !runs(r.pid)) r.exited = true;
}
