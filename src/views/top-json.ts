/**
 * One `top --json` line per refresh: the Snapshot with names instead of ids, rounded for reading.
 * Schema in README.md ("top --json"). Pure: wall clock and cgroup names come in through the context.
 */
import { errnoName } from '../event/errno.js';
import type { DestinationRow, NamespaceRow, VictimRow } from '../model/port-rows.js';
import type { Row, Snapshot } from '../model/snapshot.js';
import { eventsLost, type DropCounts } from '../facts/losses.js';

export interface TopContext {
	/** Adds to CLOCK_MONOTONIC µs to give Unix epoch µs. */
	epochOffsetUs: number;
	cgroupPath: (id: number) => string | undefined;
	intervalMs: number;
	drops: DropCounts & { decodeErrors: number };
	/** Namespaces that could not be walked, with the reason. */
	unwalked: ReadonlyMap<number, string>;
	/** Who answered when not this process: "agent pid 1234, up 3.2 h". */
	source?: string;
	/** Socket walks (LiveFeed.walks); absent in tests that have none. */
	walks?: { inProgress: boolean; completed: number; lastMs: number | undefined; lastTime?: { readMs: number; drainMs: number; handleMs: number }; openOnly?: number; lastOpenOnly?: number; lastTable?: number };
}

const round1 = (n: number) => Math.round(n * 10) / 10;

export function topJson(s: Snapshot, ctx: TopContext): object {
	return {
		time: new Date((s.atUs + ctx.epochOffsetUs) / 1000).toISOString(),
		uptimeSeconds: round1(s.uptimeMs / 1000),
		by: s.by,
		sort: s.sort,
		intervalMs: ctx.intervalMs,
		source: ctx.source ?? 'standalone',
		namespaces: s.namespaces.map((n) => namespaceJson(n, ctx)),
		rows: s.rows.map((r) => rowJson(r, s, ctx)),
		destinations: s.destinations.map(destinationJson),
		victims: s.victims.map((v) => victimJson(v, s.atUs)),
		drops: { ...ctx.drops, lost: eventsLost(ctx.drops) },
		...(ctx.walks ? { walks: walksJson(ctx.walks) } : {}),
		overflow: s.overflow,
	};
}

/** The last pass's wall time, and where it went: reading the kernel, draining the ring, handling its sockets. */
function walksJson(w: NonNullable<TopContext['walks']>): object {
	const ms = (x: number | undefined) => (x === undefined ? null : Math.round(x));
	const t = w.lastTime;
	// Of the last pass, the namespaces read by open-socket walks (their open sockets alone: pipeline/open-walks.ts) and by walks of their table.
	const kinds = w.lastOpenOnly !== undefined ? { lastOpenOnly: w.lastOpenOnly, lastTable: w.lastTable ?? 0 } : {};
	return { inProgress: w.inProgress, completed: w.completed, lastMs: ms(w.lastMs), ...(t ? { lastReadMs: ms(t.readMs), lastDrainMs: ms(t.drainMs), lastHandleMs: ms(t.handleMs) } : {}), ...kinds, ...(w.openOnly !== undefined ? { openOnly: w.openOnly } : {}) };
}

export function topJsonLine(s: Snapshot, ctx: TopContext): string {
	return JSON.stringify(topJson(s, ctx));
}

function rowJson(r: Row, s: Snapshot, ctx: TopContext): object {
	const group: Record<string, unknown> = {};
	if (s.by === 'process') group.pid = r.pid;
	if (s.by === 'cgroup') group.cgroup = ctx.cgroupPath(r.cgroupId!) ?? r.cgroupId;
	if (r.workload !== undefined) group.workload = r.workload;
	if (s.by === 'netns') group.netns = r.netns;
	if (s.by === 'dest') group.dest = r.dest;
	const failures: Record<string, number> = {};
	for (const [errno, n] of Object.entries(r.connectFailures)) failures[errnoName(Number(errno)) ?? (errno === '0' ? 'none' : errno)] = n;
	return {
		...group,
		comm: r.comm,
		...(r.exited ? { exited: true } : {}),
		processes: r.processes,
		connectsPerSec: round1(r.connectsPerSec),
		acceptsPerSec: round1(r.acceptsPerSec),
		activeClosesPerSec: round1(r.activeClosesPerSec),
		timeWaitPerSec: round1(r.timeWaitPerSec),
		timeWait: r.timeWait,
		resetsPerSec: round1(r.resetsPerSec),
		connectFailuresPerSec: round1(r.connectFailuresPerSec),
		connectFailures: failures,
		bindFailures: r.bindFailures,
		side: r.side,
		lifetimeP50Ms: r.lifetimeP50Ms,
		lifetimeP99Ms: r.lifetimeP99Ms,
		...(r.lifetimeUpTo ? { lifetimeUpTo: true } : {}),
		topDest: r.topDest,
		...(r.likely ? { likely: r.likely.map((l) => ({ pid: l.pid, comm: l.comm, timeWait: l.timeWait, evidence: l.evidence, inferred: true })) } : {}),
	};
}

function victimJson(v: VictimRow, nowUs: number): object {
	return {
		pid: v.pid, comm: v.comm, netns: v.netns, call: v.call, errno: v.errno, target: v.target, failures: v.failures,
		lastAgoSeconds: round1((nowUs - v.lastUs) / 1_000_000),
		holders: v.holders, heldTimeWait: v.heldTimeWait,
	};
}

function destinationJson(d: DestinationRow): object {
	return {
		netns: d.netns, saddr: d.saddr, daddr: d.daddr, dport: d.dport,
		portsInUse: d.portsInUse, portsUsable: d.portsUsable,
		sustainableRate: round1(d.sustainableRate), currentRate: round1(d.currentRate),
		secondsToExhaustion: d.secondsToExhaustion, connectFailures: d.connectFailures,
	};
}

function namespaceJson(n: NamespaceRow, ctx: TopContext): object {
	const st = n.settings;
	return {
		netns: n.netns,
		name: n.name ?? null,
		timeWait: n.timeWait,
		timeWaitFrom: n.timeWaitFrom,
		walkedTimeWait: n.walkedTimeWait,
		walkedAgoMs: n.walkedAgoMs,
		...(ctx.unwalked.has(n.netns) ? { walkError: ctx.unwalked.get(n.netns) } : {}),
		maxTimeWaitBuckets: st?.maxTimeWaitBuckets ?? null,
		timeWaitOverflow: st?.timeWaitOverflow ?? null,
		timeWaitOverflowSinceStart: n.overflowSinceStart,
		portRange: st ? `${st.portRange.low}-${st.portRange.high}` : null,
		portsUsable: n.portsUsable,
		twReuse: st?.twReuse ?? null,
		finTimeoutSec: st?.finTimeoutSec ?? null,
	};
}
