/**
 * Makes a Report from the same model `top` runs. The builder follows the model batch by batch (a
 * replayed capture or a live run give it the same batches, so the same report): it samples each
 * group's TIME_WAIT held and connect rate once per second of event time for the peaks, and links
 * each EADDRNOTAVAIL and EADDRINUSE to the owners that held the ports at that moment.
 */
import { advise } from '../advice/advice.js';
import type { TwtEvent } from '../event/decode.js';
import { endpoint } from '../event/endpoint.js';
import { errnoName } from '../event/errno.js';
import type { NetnsSettings } from '../facts/netns-settings.js';
import type { ChurnModel } from '../model/churn-model.js';
import { busiest, closingSide, errnoTotals, groupKey, likelyRows, lifetimeBoundOf, lifetimeMs, mergedLifetimes, workloadLabel, workloadNamer, type Grouping } from '../model/groups.js';
import { C, destKey, type Owner } from '../model/owners.js';
import { holdersOfDestination, holdersOfLocalPort } from '../model/port-holders.js';
import { sustainableRate } from '../model/ports.js';
import { portFailure, type PortFailure } from '../model/victims.js';
import { labelOf, summarize, type DestinationSummary, type NamespaceSummary, type Offender, type Report, type Victim } from './report.js';
import { TimelineRecorder } from './timeline.js';

const US = 1_000_000;
/** Victim entries kept (distinct process × failure × target); beyond it failures are only counted. */
const MAX_VICTIMS = 1000;
/** Offenders and destinations the timeline plots. */
const PLOTTED_OFFENDERS = 8;
const PLOTTED_DESTINATIONS = 3;

interface VictimAcc {
	v: Omit<Victim, 'heldBy' | 'first' | 'last'> & { firstUs: number; lastUs: number };
	heldBy: Map<Owner, number>;
}

export class ReportBuilder {
	readonly model: ChurnModel;
	readonly #by: Grouping;
	readonly #workload: (cgroupId: number) => string;
	readonly #peakHeld = new Map<string, number>();
	readonly #peakRate = new Map<string, number>();
	readonly #lastConnects = new Map<string, number>();
	readonly #destPeakInUse = new Map<string, number>();
	readonly #destPeakRate = new Map<string, number>();
	readonly #destLastConnects = new Map<string, number>();
	readonly #victims = new Map<string, VictimAcc>();
	readonly #firstOverflow = new Map<number, number>();
	readonly #lastOverflow = new Map<number, number>();
	readonly #peakNamespace = new Map<number, number>();
	readonly #timeline = new TimelineRecorder();
	#victimsRefused = 0;
	/** Port failures whose holders are asked at the next reading of counts (afterCounts). */
	#pending: TwtEvent[] = [];
	#sampledSecond = -1;
	#events = 0;
	#walks = 0;

	/** `cgroupPath`: for --by workload (groups are formed as events arrive, so it is known from the start). */
	constructor(model: ChurnModel, by: Grouping, cgroupPath?: (id: number) => string | undefined) {
		this.#workload = workloadNamer(cgroupPath);
		this.model = model;
		this.#by = by;
	}

	/** After the model ingested `events`. */
	afterEvents(events: readonly TwtEvent[]): void {
		if (events.length === 0) return;
		this.#events += events.length;
		// With counts, the entries of the failure's second come with the next reading: who held the
		// ports is asked then (afterCounts), not before the entries that took them are known.
		if (this.model.fromCounts) this.#pending.push(...events.filter((e) => portFailure(e)));
		else this.#linkFailures(events);
		const second = Math.floor(events[events.length - 1]!.tsUs / US);
		if (second > this.#sampledSecond) this.#sample(second);
	}

	/** Links each port failure of `events` to the owners holding the ports of its target then. */
	#linkFailures(events: readonly TwtEvent[]): void {
		const holders = new Map<string, Map<Owner, number>>();
		for (const e of events) {
			const failure = portFailure(e);
			if (!failure) continue;
			const key = `${e.netns} ${failure.call} ${failure.target}`;
			let held = holders.get(key);
			if (!held) {
				held = failure.call === 'connect' ? holdersOfDestination(this.model, e.netns, e.daddr, e.dport) : holdersOfLocalPort(this.model, e.netns, e.sport);
				holders.set(key, held);
			}
			this.#victim(e, failure, held);
		}
	}

	/** After the model took the kernel's counts read at `atUs` (a counts frame). */
	afterCounts(atUs: number): void {
		const due = this.#pending.filter((e) => e.tsUs < atUs);
		if (due.length) this.#pending = this.#pending.filter((e) => e.tsUs >= atUs), this.#linkFailures(due);
		const second = Math.floor(atUs / US);
		if (second > this.#sampledSecond) this.#sample(second);
	}

	/** After the model reconciled a walk of `netns`. */
	afterWalk(netns: number, settings: NetnsSettings, takenAtUs: number): void {
		this.#walks++;
		const overflow = settings.timeWaitOverflow ?? 0;
		if (!this.#firstOverflow.has(netns)) this.#firstOverflow.set(netns, overflow);
		this.#lastOverflow.set(netns, overflow);
		this.#sampleNamespace(netns);
		this.#sample(Math.floor(takenAtUs / US));
	}

	/** The report at `endUs` (CLOCK_MONOTONIC µs: the capture's end, or now). */
	build(ctx: {
		endUs: number; epochOffsetUs: number; top: number; source: Report['source']; complete: boolean; incomplete?: string;
		losses: Omit<Report['losses'], 'ownersMerged' | 'timeWaitUntracked'>; cgroupPath: (id: number) => string | undefined;
	}): Report {
		const model = this.model;
		model.tick(ctx.endUs);
		this.#linkFailures(this.#pending.splice(0));
		this.#sample(Math.floor(ctx.endUs / US) + 1);
		const seconds = Math.max((ctx.endUs - model.startUs) / US, 1e-3);
		const groups = new Map<string, Owner[]>();
		for (const o of model.owners.values()) {
			const key = groupKey(o, this.#by, this.#workload);
			const g = groups.get(key);
			if (g) g.push(o);
			else groups.set(key, [o]);
		}
		const total = (os: readonly Owner[], c: number) => os.reduce((s, o) => s + o.totals[c]!, 0);
		const allTimeWait = total([...model.owners.values()], C.timeWaitEntries);
		const rows = [...groups.entries()].map(([key, os]) => ({ key, os, tw: total(os, C.timeWaitEntries), held: os.reduce((s, o) => s + o.timeWait, 0) }))
			.filter((g) => g.tw > 0 || g.held > 0 || total(g.os, C.connects) + total(g.os, C.accepts) > 0)
			.sort((a, b) => b.tw - a.tw || (this.#peakHeld.get(b.key) ?? 0) - (this.#peakHeld.get(a.key) ?? 0) || b.held - a.held || a.key.localeCompare(b.key));

		const rankOf = new Map<Owner, number>();
		rows.forEach((g, i) => g.os.forEach((o) => rankOf.set(o, i + 1)));
		const victims = this.#victimList(rankOf, ctx.epochOffsetUs);
		const victimsByRank = new Map<number, number>();
		for (const v of victims) for (const h of v.heldBy) if (h.offenderRank) victimsByRank.set(h.offenderRank, (victimsByRank.get(h.offenderRank) ?? 0) + v.failures);

		const likelyByOwner = model.likelyOwners();
		const destinations = this.#destinations();
		const namespaces = this.#namespaces();
		const offenders: Offender[] = rows.slice(0, ctx.top).map((g, i) => {
			const first = g.os[0]!;
			const connections = total(g.os, C.connects) + total(g.os, C.accepts);
			const timeWaitEntries = g.tw;
			const side = closingSide(g.os);
			const peers = new Map<string, { timeWaitEntries: number; connections: number }>();
			for (const o of g.os) {
				if (o.peer.startsWith('bind ') || o.peer === '') continue;
				const p = peers.get(o.peer) ?? { timeWaitEntries: 0, connections: 0 };
				p.timeWaitEntries += o.totals[C.timeWaitEntries]!;
				p.connections += o.totals[C.connects]! + o.totals[C.accepts]!;
				peers.set(o.peer, p);
			}
			const topDestinations = [...peers.entries()].map(([peer, p]) => ({ peer, ...p }))
				.sort((a, b) => b.timeWaitEntries - a.timeWaitEntries || b.connections - a.connections || a.peer.localeCompare(b.peer)).slice(0, 3);
			const netns = busiest(g.os, (o) => String(o.netns));
			const dest = destinations.find((d) => String(d.netns) === netns && topDestinations[0]?.peer === endpoint(d.daddr, d.dport));
			const lifetimeMs = lifetimes(g.os, model.fromCounts);
			const connectRateAvg = total(g.os, C.connects) / seconds;
			const offender: Omit<Offender, 'advice'> = {
				rank: i + 1,
				key: g.key,
				pid: this.#by === 'process' && first.pid ? first.pid : null,
				comm: busiest(g.os, (o) => o.comm),
				processes: new Set(g.os.filter((o) => o.pid).map((o) => o.pid)).size,
				cgroupId: this.#by === 'process' || this.#by === 'cgroup' ? Number(busiest(g.os, (o) => String(o.cgroupId))) : null,
				cgroup: null,
				workload: null,
				netns: Number(netns),
				side,
				connections,
				timeWaitEntries,
				timeWaitShare: allTimeWait > 0 ? timeWaitEntries / allTimeWait : 0,
				peakTimeWait: Math.max(this.#peakHeld.get(g.key) ?? 0, g.held),
				timeWaitAtEnd: g.held,
				resets: total(g.os, C.resets),
				connectFailures: namedErrnos(errnoTotals(g.os)),
				bindFailures: total(g.os, C.bindFailures),
				connectRateAvg: round1(connectRateAvg),
				connectRatePeak: round1(Math.max(this.#peakRate.get(g.key) ?? 0, connectRateAvg)),
				lifetimeMs,
				topDestinations,
			};
			if (offender.cgroupId !== null) offender.cgroup = ctx.cgroupPath(offender.cgroupId) ?? null;
			const cgroupId = Number(busiest(g.os, (o) => String(o.cgroupId)));
			const named = this.#by === 'workload' ? g.key : cgroupId !== 0 && this.#by !== 'netns' && this.#by !== 'dest' ? workloadLabel(cgroupId, ctx.cgroupPath) : null;
			offender.workload = named === '/' ? null : named; // the root cgroup is no workload
			const likely = likelyRows(likelyByOwner, g.os, (o) => o.peakTimeWait).map(({ weight, ...l }) => ({ ...l, peakTimeWait: weight, inferred: true as const }));
			if (likely.length) offender.likely = likely;
			const ns = namespaces.find((n) => n.netns === offender.netns);
			const advice = advise({
				label: labelOf(offender, this.#by),
				side,
				connections,
				timeWaitEntries,
				peakTimeWait: offender.peakTimeWait,
				connectRateAvg: offender.connectRateAvg,
				connectRatePeak: offender.connectRatePeak,
				lifetimeP50Ms: lifetimeMs?.p50 ?? null,
				lifetimeUpTo: lifetimeMs?.upTo === true,
				destination: dest && { label: endpoint(dest.daddr, dest.dport), peakPortsInUse: dest.peakPortsInUse, portsUsable: dest.portsUsable },
				victimFailures: victimsByRank.get(i + 1) ?? 0,
				bindFailures: offender.bindFailures,
				seconds,
			}, ns?.settings ?? undefined, ns?.timeWaitOverflow ?? 0);
			return { ...offender, advice };
		});

		const owners = [...model.owners.values()];
		const report: Report = {
			source: { ...ctx.source, seconds: round1(seconds) },
			complete: ctx.complete,
			...(ctx.incomplete ? { incomplete: ctx.incomplete } : {}),
			by: this.#by,
			totals: {
				events: this.#events,
				connections: total(owners, C.connects) + total(owners, C.accepts),
				timeWaitEntries: allTimeWait,
				connectFailures: namedErrnos(errnoTotals(owners)),
				bindFailures: total(owners, C.bindFailures),
				walks: this.#walks,
			},
			losses: { ...ctx.losses, ownersMerged: model.ownersRefused, timeWaitUntracked: model.timeWait.refused + this.#victimsRefused },
			offenders,
			victims,
			destinations: destinations.slice(0, 10),
			namespaces,
			summary: '',
			timeline: this.#timeline.build(ctx.epochOffsetUs,
				offenders.filter((o) => o.peakTimeWait > 0).slice(0, PLOTTED_OFFENDERS).map((o) => ({ key: o.key, rank: o.rank, label: labelOf(o, this.#by) })),
				destinations.slice(0, PLOTTED_DESTINATIONS).map((d) => ({
					key: destKey(d.netns, d.saddr, d.daddr, d.dport),
					label: `${d.saddr} → ${endpoint(d.daddr, d.dport)}`,
					firstFailureSecond: this.#firstFailureSecond(d.netns, endpoint(d.daddr, d.dport)),
				}))),
		};
		report.summary = summarize(report);
		return report;
	}

	#victim(e: TwtEvent, { call, errno, target }: PortFailure, held: Map<Owner, number>): void {
		this.#timeline.failure(Math.floor(e.tsUs / US), `${call} ${target} ${errno}`);
		const key = `${e.pid} ${e.comm} ${e.netns} ${call} ${target}`;
		let acc = this.#victims.get(key);
		if (!acc) {
			if (this.#victims.size >= MAX_VICTIMS) {
				this.#victimsRefused++;
				return;
			}
			acc = {
				v: { pid: e.pid, comm: e.comm, netns: e.netns, call, errno, target, failures: 0, firstUs: e.tsUs, lastUs: e.tsUs },
				heldBy: new Map(),
			};
			this.#victims.set(key, acc);
		}
		acc.v.failures++;
		acc.v.lastUs = Math.max(acc.v.lastUs, e.tsUs);
		// The most each owner held at any of the failures.
		for (const [o, n] of held) if (n > (acc.heldBy.get(o) ?? 0)) acc.heldBy.set(o, n);
	}

	/** When connect() first failed with EADDRNOTAVAIL towards `target` in `netns`, if it did. */
	#firstFailureSecond(netns: number, target: string): number | undefined {
		let firstUs = Infinity;
		for (const { v } of this.#victims.values()) if (v.netns === netns && v.call === 'connect' && v.target === target) firstUs = Math.min(firstUs, v.firstUs);
		return Number.isFinite(firstUs) ? Math.floor(firstUs / US) : undefined;
	}

	#victimList(rankOf: Map<Owner, number>, epochOffsetUs: number): Victim[] {
		const iso = (us: number) => new Date(Math.floor((us + epochOffsetUs) / 1000)).toISOString();
		return [...this.#victims.values()].sort((a, b) => b.v.failures - a.v.failures || a.v.firstUs - b.v.firstUs).map(({ v, heldBy }) => {
			const byLabel = new Map<string, { offenderRank: number | null; label: string; portsHeld: number }>();
			for (const [o, n] of heldBy) {
				const rank = rankOf.get(o) ?? null;
				const label = o.pid ? `${o.comm} (pid ${o.pid})` : o.comm;
				const h = byLabel.get(label) ?? { offenderRank: rank, label, portsHeld: 0 };
				h.portsHeld += n;
				byLabel.set(label, h);
			}
			const { firstUs, lastUs, ...rest } = v;
			return { ...rest, first: iso(firstUs), last: iso(lastUs), heldBy: [...byLabel.values()].sort((a, b) => b.portsHeld - a.portsHeld || a.label.localeCompare(b.label)).slice(0, 5) };
		});
	}

	/** Per-second peaks: TIME_WAIT held and connect rate per group, ports in use and rate per destination. */
	#sample(second: number): void {
		const elapsed = this.#sampledSecond < 0 ? 1 : Math.max(1, second - this.#sampledSecond);
		this.#sampledSecond = Math.max(this.#sampledSecond, second);
		const held = new Map<string, number>();
		const connects = new Map<string, number>();
		for (const o of this.model.owners.values()) {
			const key = groupKey(o, this.#by, this.#workload);
			held.set(key, (held.get(key) ?? 0) + o.timeWait);
			connects.set(key, (connects.get(key) ?? 0) + o.totals[C.connects]!);
		}
		for (const [key, n] of held) if (n > (this.#peakHeld.get(key) ?? 0)) this.#peakHeld.set(key, n);
		this.#timeline.sampleHeld(second, held);
		for (const netns of this.model.namespaces.keys()) this.#sampleNamespace(netns);
		for (const [key, n] of connects) {
			const rate = (n - (this.#lastConnects.get(key) ?? 0)) / elapsed;
			if (rate > (this.#peakRate.get(key) ?? 0)) this.#peakRate.set(key, rate);
			this.#lastConnects.set(key, n);
		}
		for (const d of this.model.destinations.values()) {
			const inUse = d.timeWait + d.portsHeldOpen;
			if (inUse > (this.#destPeakInUse.get(d.key) ?? 0)) this.#destPeakInUse.set(d.key, inUse);
			this.#timeline.sampleDestination(second, d.key, inUse, this.model.namespaces.get(d.netns)?.settings ? this.model.portsUsable(d.netns) : undefined);
			const rate = (d.connectsTotal - (this.#destLastConnects.get(d.key) ?? 0)) / elapsed;
			this.#destLastConnects.set(d.key, d.connectsTotal);
			if (rate > (this.#destPeakRate.get(d.key) ?? 0)) this.#destPeakRate.set(d.key, rate);
		}
	}

	#destinations(): DestinationSummary[] {
		const out: DestinationSummary[] = [];
		for (const d of this.model.destinations.values()) {
			const usable = this.model.portsUsable(d.netns);
			out.push({
				netns: d.netns, saddr: d.saddr, daddr: d.daddr, dport: d.dport,
				connects: d.connectsTotal,
				peakPortsInUse: this.#destPeakInUse.get(d.key) ?? 0,
				portsUsable: usable,
				sustainableRate: round1(sustainableRate(usable)),
				peakConnectRate: round1(this.#destPeakRate.get(d.key) ?? 0),
				connectFailures: d.connectFailures,
			});
		}
		return out.sort((a, b) => b.peakPortsInUse / b.portsUsable - a.peakPortsInUse / a.portsUsable || b.connects - a.connects || a.daddr.localeCompare(b.daddr));
	}

	#namespaces(): NamespaceSummary[] {
		return [...this.model.namespaces.values()].filter((ns) => ns.netns !== 0).map((ns) => {
			const now = this.model.namespaceTimeWait(ns.netns);
			return {
				netns: ns.netns,
				settings: ns.settings ?? null,
				timeWaitAtEnd: now.count,
				peakTimeWait: Math.max(this.#peakNamespace.get(ns.netns) ?? 0, now.count),
				timeWaitFrom: now.from,
				walked: ns.walkedAtUs !== undefined,
				timeWaitOverflow: (this.#lastOverflow.get(ns.netns) ?? 0) - (this.#firstOverflow.get(ns.netns) ?? 0),
			};
		}).sort((a, b) => b.peakTimeWait - a.peakTimeWait || a.netns - b.netns);
	}

	#sampleNamespace(netns: number): void {
		const n = this.model.namespaceTimeWait(netns).count;
		if (n > (this.#peakNamespace.get(netns) ?? 0)) this.#peakNamespace.set(netns, n);
	}
}

/** `bucketed`: the lifetimes came as the kernel's buckets (ChurnModel.ingestCounts): each value is a bucket's bound. */
function lifetimes(owners: readonly Owner[], bucketed: boolean): Offender['lifetimeMs'] {
	const h = mergedLifetimes(owners);
	if (!h) return null;
	// HdrHistogram reads a value back as the highest of its sub-bucket (2 digits): the bound itself is the truth here.
	const value = (us: number) => lifetimeMs(bucketed ? lifetimeBoundOf(us) : us);
	const at = (p: number) => value(h.getValueAtPercentile(p));
	return { p50: at(50), p90: at(90), p99: at(99), max: value(h.maxValue), ...(bucketed ? { upTo: true as const } : {}) };
}

/** The bucket bound a recorded bound reads back as (within HdrHistogram's 1 % of it). */
function namedErrnos(byNumber: Record<string, number>): Record<string, number> {
	const out: Record<string, number> = {};
	for (const [n, count] of Object.entries(byNumber)) out[errnoName(Number(n)) ?? `errno ${n}`] = count;
	return out;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
