/**
 * The numbers `twtrace serve` exports, kept in the model's units (µs, counts): per (comm, cgroup)
 * group cumulative counters and a connection lifetime histogram, fed by the kernel's counters
 * (observeCounts) or by events (observeOne: failures always, the rest without them); TIME_WAIT held per
 * group, the worst destinations and the namespaces, read from the ChurnModel at scrape time.
 *
 * Counters live here rather than in the ChurnModel because Prometheus counters must only go up:
 * the model forgets idle owners (two TIME_WAIT lengths), which would make a sum of its totals
 * fall. Groups are bounded by a SeriesTable. Pure: time comes in.
 */
import type { TwtEvent } from '../event/decode.js';
import { errnoName } from '../event/errno.js';
import { COUNT_COLUMN as K, LIFETIME_BOUNDS_US, type CountKey } from '../event/counts.js';
import { blame, type Blame } from './attribution.js';
import { BEFORE_START, destKey, LISTENER_BEFORE_START, LOST, ownerComm, type Owner } from './owners.js';
import type { ChurnModel } from './churn-model.js';
import { SeriesTable, type Series } from './series.js';
import { portFailure } from './victims.js';
import { workloadOf } from '../facts/workload.js';
import { destinationRows, namespaceRows, type DestinationRow, type NamespaceRow } from './port-rows.js';

/** The lifetime histogram's bounds: the kernel's counters' (enum twt_lifetime_bound_ms), for the views. */
export { LIFETIME_BOUNDS_US };

/** Slots of a group's counters. Lifetime buckets are not cumulative here (the view sums them). */
export const SLOT = {
	connects: 0,
	accepts: 1,
	timeWaitEntries: 2,
	resets: 3,
	lifetimeSumUs: 4,
	lifetimeCount: 5,
	lifetimeBuckets: 6,
} as const;
const WIDTH = SLOT.lifetimeBuckets + LIFETIME_BOUNDS_US.length;

export interface GroupLabels {
	comm: string;
	cgroup: string;
	/** The cgroup's workload (systemd unit, container, pod), "" when it is none of them. */
	workload: string;
}

/** The label value of the group every group without a series of its own is summed into. */
export const OTHER_LABEL = 'other';

export interface GroupSample {
	labels: GroupLabels;
	/** Copies of the cumulative counters (SLOT order) and failures keyed "connect EADDRNOTAVAIL" / "bind EADDRINUSE". */
	counts: Float64Array;
	failures: ReadonlyMap<string, number>;
	/** TIME_WAIT sockets held now. */
	timeWait: number;
}

/** Failures for want of a port, by victim and target: the link from an alert to the pool that ran dry. */
export interface PortFailureSample {
	comm: string;
	call: 'connect' | 'bind';
	errno: string;
	netns: number;
	/** connect: the destination; bind: the requested local address and port; "other" past the bound. */
	addr: string;
	port: string;
	failures: number;
}

export interface MetricsData {
	groups: GroupSample[];
	/** TIME_WAIT of unknown process by the comm of its likely owner (inferred; at most MAX_LIKELY_COMMS). */
	likely: { comm: string; timeWait: number }[];
	portFailures: PortFailureSample[];
	destinations: DestinationRow[];
	/**
	 * Who holds each listed destination's ports in TIME_WAIT: its MAX_HOLDERS_PER_DESTINATION largest
	 * groups (the groups' own labels: "other" past the series bound), so an alert on a destination can
	 * name its offender.
	 */
	holders: { destination: DestinationRow; labels: GroupLabels; timeWait: number }[];
	namespaces: NamespaceRow[];
	/** TIME_WAIT sockets the model did not track (its bound): the gauges undercount by this many. */
	timeWaitUntracked: number;
	seriesRemoved: { idle: number; displaced: number };
}

export interface ChurnMetricsOptions {
	maxSeries: number;
	/** A group idle this long (no events, no TIME_WAIT held) loses its series. */
	idleUs: number;
	/** A cgroup id's label value, asked once per group. */
	cgroupLabel: (cgroupId: number) => string;
	/** Only events blamed on this comm (as the model's option). */
	comm?: string;
	/** (victim, target) pairs with port-failure series of their own; the rest are summed as addr="other". */
	maxFailureSeries?: number;
}

export interface CollectOptions {
	nowUs: number;
	rateWindowUs: number;
	maxDestinations: number;
	maxNamespaces: number;
}

export class ChurnMetrics {
	readonly #table: SeriesTable<GroupLabels>;
	readonly #comm: string | undefined;
	#last: { comm: string; cgroupId: number; series: Series<GroupLabels> } | undefined;
	/**
	 * Port failures by (victim comm, call, errno, netns, target). A counter series must never vanish
	 * or fall, so a pair keeps its series for good once it has one; past the bound new pairs are
	 * summed into addr="other" (failures are rare; a bound of pairs is reached only by a storm).
	 */
	readonly #portFailures = new Map<string, PortFailureSample>();
	readonly #maxFailureSeries: number;

	constructor(options: ChurnMetricsOptions) {
		this.#comm = options.comm;
		this.#maxFailureSeries = options.maxFailureSeries ?? 100;
		this.#table = new SeriesTable<GroupLabels>({
			maxSeries: options.maxSeries,
			width: WIDTH,
			idleUs: options.idleUs,
			labelsOf: (key) => {
				const [comm, cgroupId] = splitKey(key);
				// A process really named "other" must not merge with the bucket (same labels, one series).
				const cgroup = options.cgroupLabel(cgroupId);
				const w = workloadOf(cgroup.startsWith('/') ? cgroup : undefined);
				return { comm: comm === OTHER_LABEL ? `${comm}_` : comm || '(unknown)', cgroup, workload: w && w.kind !== 'cgroup' ? w.name : '' };
			},
			otherLabels: { comm: OTHER_LABEL, cgroup: OTHER_LABEL, workload: OTHER_LABEL },
			// Sockets of unknown process: one series each, beside the --max-series of real groups.
			reserved: (key) => isUnknownProcess(splitKey(key)[0]),
		});
	}

	/** Groups with a series of their own now (not counting "other"). */
	get groups(): number {
		return this.#table.size;
	}

	/**
	 * Counts a batch of events; the hot path. Consecutive events mostly belong to one group: the last
	 * group's series is reused without building its key (until tick(), which may remove series).
	 */
	observe(events: readonly TwtEvent[]): void {
		for (const e of events) this.observeOne(e);
	}

	/**
	 * One event; nothing of `e` is kept (a reused view of ring memory is fine). `blamed`: whom the
	 * model blamed it on, having applied the same comm filter (ChurnModel.ingestOne), so as not to redo it.
	 */
	observeOne(e: TwtEvent, blamed?: Blame): void {
		const who = blamed ?? blame(e);
		if (blamed === undefined && this.#comm !== undefined && who.comm !== this.#comm) return;
		const comm = ownerComm(who, e.side);
		const tsUs = e.tsUs;
		// Only an event with no process can be of an unknown-process group: no string compares per event otherwise.
		const cgroupId = who.pid === 0 && isUnknownProcess(comm) ? 0 : e.cgroupId;
		let s: Series<GroupLabels>;
		const last = this.#last;
		if (last && last.comm === comm && last.cgroupId === cgroupId) {
			s = last.series;
			s.window++;
			if (tsUs > s.lastActiveUs) s.lastActiveUs = tsUs;
		} else {
			s = this.#table.seriesFor(groupKey(comm, cgroupId), tsUs);
			// "other" tallies each event's group as a candidate: only a real series is remembered.
			this.#last = s === this.#table.other ? undefined : { comm, cgroupId, series: s };
		}
		const c = s.counts;
		switch (e.kind) {
			case 'connect': c[SLOT.connects]!++; break;
			case 'accept': c[SLOT.accepts]!++; break;
			// Lifetimes from the end of a connection: serve does not ask for active_close (COMMAND_KINDS).
			case 'time_wait': c[SLOT.timeWaitEntries]!++, observeLifetime(c, e.lifetimeUs); break;
			case 'reset': c[SLOT.resets]!++, observeLifetime(c, e.lifetimeUs); break;
			case 'connect_fail': countFailure(s, 'connect', e.err), this.#countPortFailure(e, comm); break;
			case 'bind_fail': countFailure(s, 'bind', e.err), this.#countPortFailure(e, comm); break;
		}
	}

	/**
	 * What the kernel counted for one key since the reading before (serve counts in the kernel:
	 * pipeline/count-reader.ts), into its group as observeOne counts the same events: connections by
	 * side (counted at their start), TIME_WAIT entries of both substates, resets, lifetimes. `blamed`:
	 * the task the key blames (bpf/twtrace.bpf.c blamed_id_of(), as blame()), NO_TASK when none.
	 * Failures are not taken from here: they flow as events, each with its errno and target.
	 */
	observeCounts(blamed: { pid: number; comm: string }, key: Pick<CountKey, 'cgroupId' | 'side'>, delta: Float64Array, nowUs: number): void {
		if (this.#comm !== undefined && blamed.comm !== this.#comm) return;
		const comm = ownerComm(blamed as Blame, key.side);
		const cgroupId = blamed.pid === 0 && isUnknownProcess(comm) ? 0 : key.cgroupId;
		const entries = delta[K.timeWait]! + delta[K.finWait2]!;
		const events = delta[K.connections]! + entries + delta[K.resets]!;
		if (events === 0) return;
		const c = this.#table.seriesFor(groupKey(comm, cgroupId), nowUs, events).counts;
		if (key.side === 'client') c[SLOT.connects]! += delta[K.connections]!;
		else if (key.side === 'server') c[SLOT.accepts]! += delta[K.connections]!;
		c[SLOT.timeWaitEntries]! += entries;
		c[SLOT.resets]! += delta[K.resets]!;
		c[SLOT.lifetimeSumUs]! += delta[K.lifetimeSumUs]!;
		c[SLOT.lifetimeCount]! += delta[K.lifetimeCount]!;
		for (let i = 0; i < LIFETIME_BOUNDS_US.length; i++) c[SLOT.lifetimeBuckets + i]! += delta[K.lifetime + i]!;
	}

	#countPortFailure(e: TwtEvent, comm: string): void {
		const f = portFailure(e);
		if (!f) return;
		const connect = f.call === 'connect';
		let addr = connect ? e.daddr : e.saddr;
		let port = String(connect ? e.dport : e.sport);
		let key = `${comm}\0${f.call}\0${e.netns}\0${addr}\0${port}`;
		if (!this.#portFailures.has(key) && this.#portFailures.size >= this.#maxFailureSeries) {
			[addr, port] = [OTHER_LABEL, OTHER_LABEL];
			key = `${OTHER_LABEL}\0${f.call}`;
			comm = OTHER_LABEL;
		}
		let sample = this.#portFailures.get(key);
		if (!sample) this.#portFailures.set(key, (sample = { comm: comm || '(unknown)', call: f.call, errno: f.errno, netns: addr === OTHER_LABEL ? 0 : e.netns, addr, port, failures: 0 }));
		sample.failures++;
	}

	/** Once a second: ranks groups by activity, ages out departed ones, promotes busy ones from "other". */
	tick(model: ChurnModel, nowUs: number): void {
		this.#last = undefined; // its series may go now
		this.#holdings(model, nowUs);
		this.#table.tick(nowUs);
	}

	/** What a scrape shows now; marks it as seen (a later removal folds only what came after). */
	collect(model: ChurnModel, opts: CollectOptions): MetricsData {
		const held = this.#holdings(model, opts.nowUs);
		const groups: GroupSample[] = [];
		for (const s of this.#table.series()) {
			groups.push({ labels: s.labels, counts: s.counts.slice(), failures: new Map(s.keyed), timeWait: held.get(s) ?? 0 });
		}
		this.#table.markScraped();
		const destinations = destinationRows(model, opts.nowUs, opts.rateWindowUs).slice(0, opts.maxDestinations);
		return {
			groups,
			portFailures: [...this.#portFailures.values()].map((f) => ({ ...f })),
			likely: likelyByComm(model),
			destinations,
			holders: destinations.flatMap((row) => this.#holdersOf(model, row, opts.nowUs)),
			namespaces: namespaceRows(model, opts.nowUs).slice(0, opts.maxNamespaces),
			timeWaitUntracked: model.timeWait.refused,
			seriesRemoved: { ...this.#table.removed },
		};
	}

	/** The groups holding `row`'s ports in TIME_WAIT, the most first. */
	#holdersOf(model: ChurnModel, row: DestinationRow, nowUs: number): MetricsData['holders'] {
		const d = model.destinations.get(destKey(row.netns, row.saddr, row.daddr, row.dport));
		if (!d) return [];
		const bySeries = new Map<Series<GroupLabels>, number>();
		for (const [holder, n] of d.holders) {
			const o = holder as Owner;
			const s = this.#table.peek(groupKey(o.comm, isUnknownProcess(o.comm) ? 0 : o.cgroupId), nowUs);
			bySeries.set(s, (bySeries.get(s) ?? 0) + n);
		}
		return [...bySeries].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).slice(0, MAX_HOLDERS_PER_DESTINATION)
			.map(([s, timeWait]) => ({ destination: row, labels: s.labels, timeWait }));
	}

	/** TIME_WAIT held per series now, from the model's owners; sets each series' `holding`. */
	#holdings(model: ChurnModel, nowUs: number): Map<Series<GroupLabels>, number> {
		const held = new Map<Series<GroupLabels>, number>();
		for (const o of model.owners.values()) {
			if (o.timeWait === 0) continue;
			const s = this.#table.peek(groupKey(o.comm, isUnknownProcess(o.comm) ? 0 : o.cgroupId), nowUs);
			held.set(s, (held.get(s) ?? 0) + o.timeWait);
		}
		for (const s of this.#table.series()) s.holding = held.get(s) ?? 0;
		return held;
	}
}

/** "(before start)" and "(events lost)": no process to group by, whatever cgroup the socket was in. */
function isUnknownProcess(comm: string): boolean {
	return comm === BEFORE_START || comm === LOST || comm === LISTENER_BEFORE_START;
}

function groupKey(comm: string, cgroupId: number): string {
	return `${comm}\0${cgroupId}`;
}

function splitKey(key: string): [string, number] {
	const at = key.lastIndexOf('\0');
	return [key.slice(0, at), Number(key.slice(at + 1))];
}

function observeLifetime(c: Float64Array, lifetimeUs: number): void {
	if (lifetimeUs <= 0) return; // the start was not seen (as the model)
	c[SLOT.lifetimeSumUs]! += lifetimeUs;
	c[SLOT.lifetimeCount]!++;
	for (let i = 0; i < LIFETIME_BOUNDS_US.length; i++) {
		if (lifetimeUs <= LIFETIME_BOUNDS_US[i]!) {
			c[SLOT.lifetimeBuckets + i]!++;
			return;
		}
	}
}

function countFailure(s: Series<GroupLabels>, call: 'connect' | 'bind', err: number): void {
	const key = `${call} ${errnoName(err) ?? String(err)}`;
	s.keyed.set(key, (s.keyed.get(key) ?? 0) + 1);
}

/** Holders exported per destination: enough to name the offender, and series stay few. */
const MAX_HOLDERS_PER_DESTINATION = 3;

/** Likely owners exported at most, by comm: inferred series stay few. */
const MAX_LIKELY_COMMS = 20;

function likelyByComm(model: ChurnModel): { comm: string; timeWait: number }[] {
	const byComm = new Map<string, number>();
	for (const [o, likely] of model.likelyOwners()) {
		if (o.timeWait > 0) byComm.set(likely.comm, (byComm.get(likely.comm) ?? 0) + o.timeWait);
	}
	return [...byComm].sort((a, b) => b[1] - a[1]).slice(0, MAX_LIKELY_COMMS).map(([comm, timeWait]) => ({ comm, timeWait }));
}
