/**
 * The churn model behind `top`, `serve`, `report` and `doctor`: the kernel's counts (counted.ts: top and
 * serve live, a window of counts replayed), events (failures always; every kind where records are
 * kept) and socket-table walks in, per-owner tallies out. Pure and deterministic: every method takes CLOCK_MONOTONIC µs from its
 * caller (events carry their own timestamps), so tests drive it with a synthetic clock.
 *
 * The unit of state is an *owner*: one (pid, comm, cgroup, netns, side, peer) combination. Groups
 * (--by process, comm, cgroup, netns, dest) are sums of owners, made at snapshot time, so the
 * grouping can change on a key press without losing history.
 *
 * TIME_WAIT held now is modelled from time_wait events (a TIME_WAIT-substate socket lives 60 s,
 * TCP_TIMEWAIT_LEN; a FIN_WAIT2-substate one tcp_fin_timeout, unless the peer's FIN turns it into
 * TIME_WAIT for another 60 s, which no tracepoint reports: kernel-facts §1.3) and made exact by
 * reconcile() (reconcile.ts), which takes an iter/tcp walk of a namespace: its timewait sockets,
 * their cookies (inherited from the original socket, §1.4) and their timers. The records it keeps
 * are in owners.ts; likely owners of sockets of unknown process in likely.ts.
 */
import { endpoint } from '../event/endpoint.js';
import type { CountKey } from '../event/counts.js';
import type { TwtEvent } from '../event/decode.js';
import type { SideName } from '../event/kinds.js';
import type { OpenSocket } from '../event/open-sockets.js';
import { TCP_LISTEN, TCP_TIME_WAIT } from '../event/sock.js';
import { DEFAULT_PORT_RANGE, inRange, usablePorts, type NetnsSettings, type PortRange } from '../facts/netns-settings.js';
import { blame, type Blame } from './attribution.js';
import { ingestCounts } from './counted.js';
import { TimeWaitWheel } from './wheel.js';
import type { WheelClock } from '../event/clock.js';
import { RecentOwners, type RecentKey, type RecentOwner } from './recent-owners.js';
import { likelyOwners, OpenSockets, type Likely } from './likely.js';
import {
	C, countEvent, countSecond, destKey, HISTORY_SECONDS, newDestination, newOwner, OTHER, ownerComm, recordLifetime,
	type Destination, type NamespaceTimeWait, type NetnsState, type Owner,
} from './owners.js';
import { TIME_WAIT_SECONDS } from './ports.js';
import { beginReconcile, type NetnsWalk, type ReconcileTarget, type WalkReconciler } from './reconcile.js';
import { TimeWaitPopulation } from './time-wait.js';
import { VictimTable } from './victims.js';

const US = 1_000_000;
export interface ModelOptions {
	/** Only owners with this comm (as --comm for trace). */
	comm?: string;
	/** Only sockets owned or closed by this pid: applied to sockets found by walks. */
	pid?: number;
	/** Only sockets with this local or remote port: applied to sockets found by walks. */
	port?: number;
	/** Only IPv4 or IPv6 sockets: applied to sockets found by walks (the kernel filters events). */
	family?: 4 | 6;
	maxOwners?: number;
	maxDestinations?: number;
	maxTimeWait?: number;
	/**
	 * active_close events are not asked for (top, serve: a record fewer per connection): count an
	 * active close when its socket enters TIME_WAIT instead.
	 */
	closesFromTimeWait?: boolean;
	/**
	 * Keep owners and destinations after they go idle (a report covers the whole capture). Off for
	 * `top`, which forgets what has been idle for two TIME_WAIT lengths; the maxOwners bound holds either way.
	 */
	keepIdle?: boolean;
}

export class ChurnModel {
	readonly #recent = new RecentOwners();
	readonly #key: RecentKey = { generation: 0, pid: 0, comm: '', cgroupId: 0, netns: 0, side: 'unknown', peerKind: 0, port: 0, saddr: '', daddr: '' };
	/** Bumped whenever an owner or a destination is forgotten: the recent cache must not hand it out. */
	#generation = 0;
	/** ingestOne() expires TIME_WAIT again once events reach this time. */
	#expireAtUs = 0;
	readonly startUs: number;
	readonly #options: ModelOptions;
	readonly owners = new Map<string, Owner>();
	readonly destinations = new Map<string, Destination>();
	readonly namespaces = new Map<number, NetnsState>();
	readonly timeWait: TimeWaitPopulation<Owner>;
	/** Owners not created because maxOwners was reached: their events went to the "(other)" owner. */
	ownersRefused = 0;
	/** connect() EADDRNOTAVAIL and bind() EADDRINUSE, per process and target. */
	readonly victims = new VictimTable();
	/** Who holds connections open to each destination, and listening sockets (the last open-socket walk): evidence for likely owners. */
	readonly openSockets = new OpenSockets();
	/**
	 * When the tracepoints were attached (CLOCK_MONOTONIC µs): a socket that entered TIME_WAIT after
	 * it with no event was lost, not older than twtrace. startUs until the caller says.
	 */
	attachedUs: number;
	#lastSampleSecond: number;
	/** What beginReconcile() reads and changes (reconcile.ts). */
	readonly #parts: ReconcileTarget;

	constructor(startUs: number, options: ModelOptions = {}) {
		this.startUs = startUs;
		this.attachedUs = startUs;
		this.#options = options;
		this.timeWait = new TimeWaitPopulation(options.maxTimeWait ?? 2_000_000);
		this.#lastSampleSecond = Math.floor(startUs / US);
		const model = this;
		this.#parts = {
			timeWait: this.timeWait, owners: this.owners, destinations: this.destinations, options, get attachedUs() { return model.attachedUs; },
			netnsState: (netns) => this.#netns(netns),
			owner: (...args) => this.#owner(...args),
			destination: (...args) => this.#destination(...args),
			holdsEphemeralPort: (netns, sport) => this.#holdsEphemeralPort(netns, sport),
			countedFromUs: undefined, countedReading: undefined, wheel: undefined,
		};
	}

	/**
	 * Events in ring order. Timestamps may lag the clock (a drained backlog); they are not reordered.
	 * TIME_WAIT that expired before the batch's first event goes first, so that counts and peaks do
	 * not depend on how often the caller ticks (a replay and a live run see the same batches).
	 */
	ingest(events: readonly TwtEvent[]): void {
		if (events.length) this.timeWait.expire(events[0]!.tsUs);
		for (const e of events) this.#ingestOne(e);
	}

	/**
	 * One event, for a reused view of ring memory (TraceSession onEach): nothing of `e` is kept.
	 * Expiry runs as the events' time advances, at most once a millisecond. Returns whom the event
	 * was blamed on, or undefined when the comm option left it out: the next consumer need not redo it.
	 */
	ingestOne(e: TwtEvent): Blame | undefined {
		const tsUs = e.tsUs;
		this.#expireBy(tsUs);
		return this.#ingestOne(e, tsUs);
	}

	/** Expires TIME_WAIT as the events' time reaches `us`, at most once a millisecond. */
	#expireBy(us: number): void {
		if (us < this.#expireAtUs) return;
		this.timeWait.expire(us);
		this.#expireAtUs = us + 1000;
	}

	#ingestOne(e: TwtEvent, tsUs = e.tsUs): Blame | undefined {
		// Counted by the kernel (countFrom): taken from its counts, never twice (an agent whose recorder keeps records gets them all).
		if (this.#parts.countedFromUs !== undefined && e.kind !== 'connect_fail' && e.kind !== 'bind_fail') return undefined;
		const who = blame(e);
		if (this.#options.comm !== undefined && who.comm !== this.#options.comm) return undefined;
		const isServer = e.side === 'server';
		const { owner, dest } = this.#ownerAndDestination(e, who, isServer, tsUs);
		owner.lastEventUs = Math.max(owner.lastEventUs, tsUs);
		const second = Math.floor(tsUs / US);
		switch (e.kind) {
			case 'connect':
				countEvent(owner, C.connects, second);
				if (dest) countSecond(dest.connects, dest.slotSecond, 0, 1, second), dest.connectsTotal++, (dest.lastEventUs = tsUs);
				break;
			case 'accept':
				countEvent(owner, C.accepts, second);
				break;
			case 'active_close':
				countEvent(owner, C.activeCloses, second);
				break;
			case 'time_wait': {
				countEvent(owner, C.timeWaitEntries, second);
				if (this.#options.closesFromTimeWait) countEvent(owner, C.activeCloses, second);
				// Lifetimes from the end of a connection, not from active_close: every consumer asks for
				// time_wait and reset, and the span is the same (bpf/twtrace.bpf.c fill_owner).
				recordLifetime(owner, e.lifetimeUs);
				// FIN_WAIT2 substate: tcp_fin_timeout, unless the peer's FIN re-arms it for 60 s.
				const settings = this.namespaces.get(e.netns)?.settings;
				// Substate TIME_WAIT: 60 s, then the timer wheel's rounding (twSlackMs), as the kernel runs it.
				const lifeUs = e.substate === TCP_TIME_WAIT ? TIME_WAIT_SECONDS * US + e.twSlackMs * 1000 : (settings?.finTimeoutSec ?? TIME_WAIT_SECONDS) * US;
				const pool = dest && this.#holdsEphemeralPort(e.netns, e.sport) ? dest : undefined;
				this.timeWait.add(e.cookie, owner, pool, e.netns, tsUs, tsUs + lifeUs);
				if (pool && pool.portsHeldOpen > 0) this.#closedSinceWalk(pool, e.netns, tsUs, e.lifetimeUs);
				break;
			}
			case 'reset':
				countEvent(owner, C.resets, second);
				recordLifetime(owner, e.lifetimeUs);
				if (dest && dest.portsHeldOpen > 0 && this.#holdsEphemeralPort(e.netns, e.sport)) this.#closedSinceWalk(dest, e.netns, tsUs, e.lifetimeUs);
				break;
			case 'connect_fail':
				countEvent(owner, C.connectFailures, second);
				owner.connectErrnos.set(e.err, (owner.connectErrnos.get(e.err) ?? 0) + 1);
				if (dest) dest.connectFailures++;
				this.victims.note(e, who.pid, owner.comm);
				break;
			case 'bind_fail':
				countEvent(owner, C.bindFailures, second);
				this.victims.note(e, who.pid, owner.comm);
				break;
		}
		return who;
	}

	/** Whether counts come from the kernel's counters (ingestCounts): lifetimes are then buckets. */
	get fromCounts(): boolean { return this.#parts.countedFromUs !== undefined; }

	/**
	 * Connections, TIME_WAIT entries from `us` on, resets and lifetimes come as counts (ingestCounts: a
	 * capture of them, or the agent reading the kernel's): walks leave those entries to the counts, and
	 * events of those kinds are not taken (only failures are).
	 */
	countFrom(us: number): void { this.#parts.countedFromUs ??= us; }

	/**
	 * The kernel's timer wheel clock (read_clock, or a capture's header): counted TIME_WAIT entries end
	 * in its buckets (wheel.ts); `oddCounted`: the counts say how many went into odd ones.
	 */
	setWheel(clock: WheelClock, oddCounted = true): void { this.#parts.wheel = new TimeWaitWheel(clock, oddCounted); }

	/** One key's counts from the kernel (a flight recorder's counts frame), as if its events came: counted.ts. */
	ingestCounts(key: CountKey, who: Pick<Blame, 'pid' | 'comm'>, delta: Float64Array, atUs: number, history = false): void {
		if (this.#options.comm !== undefined && who.comm !== this.#options.comm) return;
		this.#expireBy(atUs);
		ingestCounts(this.#parts, key, who, delta, atUs, history);
	}

	/**
	 * Makes the TIME_WAIT population of one namespace exactly what a walk found: timers from the
	 * kernel, sockets twtrace never saw enter (they predate it) owned by "(before start)" unless a
	 * listener owns their local port, and entries the walk did not find (expired early: tw_reuse,
	 * an RST, a tcp_max_tw_buckets overflow) removed.
	 */
	reconcile(walk: NetnsWalk): void {
		const r = this.beginReconcile(walk, walk.sockets.filter((s) => s.state === TCP_LISTEN).map((s) => s.sport));
		for (const s of walk.sockets) r.add(s);
		r.finish();
	}

	/**
	 * reconcile() a socket at a time, for a walk read in chunks while events keep arriving (a walk of
	 * millions of sockets must not stall the pipeline). Sockets may be reused objects: nothing keeps
	 * them. `listening`: ports known to listen before the walk reaches them (iter/tcp walks the
	 * listening hash before the established one, bpf_iter_tcp_batch, so its LISTEN sockets come first
	 * anyway). One walk at a time; finish() ends it.
	 */
	beginReconcile(walk: Omit<NetnsWalk, 'sockets'>, listening: Iterable<number> = []): WalkReconciler {
		return beginReconcile(this.#parts, walk, listening);
	}

	/**
	 * Advances time: expires TIME_WAIT entries, samples each owner's TIME_WAIT held for every whole
	 * second passed, and forgets owners and destinations idle for two TIME_WAIT lengths.
	 */
	tick(nowUs: number): void {
		this.timeWait.expire(nowUs);
		const second = Math.floor(nowUs / US);
		// Seconds between two ticks keep the value of the earlier one; the current second is rewritten
		// by every tick in it, so it ends up with its last value.
		const last = this.#lastSampleSecond;
		const from = Math.max(last + 1, second - HISTORY_SECONDS + 1);
		for (const o of this.owners.values()) {
			const carried = o.history[last % HISTORY_SECONDS]!;
			for (let s = from; s < second; s++) o.history[s % HISTORY_SECONDS] = carried;
			if (second >= last) o.history[second % HISTORY_SECONDS] = o.timeWait;
		}
		this.#lastSampleSecond = Math.max(this.#lastSampleSecond, second);
		if (this.#options.keepIdle) return;
		const idleBeforeUs = nowUs - 2 * TIME_WAIT_SECONDS * US;
		this.victims.forget(idleBeforeUs);
		for (const [key, o] of this.owners) {
			if (o.timeWait === 0 && o.lastEventUs < idleBeforeUs && o.lastChangeUs < idleBeforeUs) this.owners.delete(key), this.#generation++;
		}
		for (const [key, d] of this.destinations) {
			if (d.timeWait === 0 && d.portsHeldOpen === 0 && d.lastEventUs < idleBeforeUs) this.destinations.delete(key), this.#generation++;
		}
	}

	/** Takes a walk of the sockets processes hold open (tracer/holders.ts). */
	setOpenSockets(entries: readonly OpenSocket[], atUs: number): void {
		this.openSockets.update(entries, atUs, (netns, port) => this.#holdsEphemeralPort(netns, port) && !this.namespaces.get(netns)?.listeningPorts.has(port));
	}

	/**
	 * The likely owner of each owner whose process is unknown (its sockets predate twtrace, or their
	 * events were lost): for a client's sockets, who connects to the destination of its peer; for a
	 * server's, who holds the listening socket of its port (likely.ts); none when nobody does. Evidence only: never counted as that process's. One pass over the
	 * owners, whatever the number of unknown ones.
	 */
	likelyOwners(): Map<Owner, Likely> {
		return likelyOwners(this.owners.values(), this.openSockets);
	}

	/**
	 * Whether the model sees every socket of the namespaces it covers: no filter but the choice of
	 * namespaces (--comm, --pid, --port and --family leave sockets out). Then its counts are the
	 * namespaces' own.
	 */
	get seesEverySocket(): boolean {
		const o = this.#options;
		return o.comm === undefined && o.pid === undefined && o.port === undefined && o.family === undefined;
	}

	/**
	 * TIME_WAIT sockets in `netns` now, every process's: the population's count, made exact by each
	 * walk and kept by events and the kernel's timers in between, or from the kernel's counts (`from: 'model'`). A model that does
	 * not see every socket (seesEverySocket) has only the last walk's count, all processes
	 * (`from: 'walk'`, as old as the walk), or, before any walk, its own part.
	 */
	namespaceTimeWait(netns: number): NamespaceTimeWait {
		const walked = this.namespaces.get(netns)?.walkedTimeWait;
		if (this.seesEverySocket || walked === undefined) return { count: this.timeWait.countIn(netns), from: 'model' };
		return { count: walked, from: 'walk' };
	}

	/** The namespace's settings, or the kernel defaults before its first walk. */
	portRange(netns: number): PortRange {
		return this.namespaces.get(netns)?.settings?.portRange ?? DEFAULT_PORT_RANGE;
	}

	portsUsable(netns: number): number {
		const settings = this.namespaces.get(netns)?.settings;
		return usablePorts(settings?.portRange ?? DEFAULT_PORT_RANGE, settings?.reservedPorts);
	}

	#holdsEphemeralPort(netns: number, sport: number): boolean {
		return inRange(sport, this.portRange(netns));
	}

	/**
	 * A connection towards `dest` ended: if it was open at the namespace's last walk (it started
	 * before, or its start was not seen), that walk counted its port among the open ones; it is no
	 * longer open (it holds the port in TIME_WAIT now, counted there, or freed it by a reset).
	 * Callers check portsHeldOpen first: most destinations hold none open, and this is per event.
	 */
	#closedSinceWalk(dest: Destination, netns: number, tsUs: number, lifetimeUs: number): void {
		const walkedAtUs = this.namespaces.get(netns)?.walkedAtUs;
		if (walkedAtUs === undefined || tsUs < walkedAtUs) return;
		if (lifetimeUs <= 0 || tsUs - lifetimeUs < walkedAtUs) dest.portsHeldOpen--;
	}

	/** A namespace's settings known before any walk of it (a capture's header). */
	setSettings(netns: number, settings: NetnsSettings): void {
		this.#netns(netns).settings ??= settings;
	}

	/** Makes a namespace known (shown in snapshots) before any event or walk. */
	addNamespace(netns: number): void {
		this.#netns(netns);
	}

	#netns(netns: number): NetnsState {
		let ns = this.namespaces.get(netns);
		if (!ns) {
			ns = { netns, settings: undefined, walkedTimeWait: undefined, walkedAtUs: undefined, listeningPorts: new Set(), overflowAtFirstWalk: undefined };
			this.namespaces.set(netns, ns);
		}
		return ns;
	}

	#owner(pid: number, comm: string, cgroupId: number, netns: number, side: SideName, peer: string, nowUs: number): Owner {
		const key = `${pid}\0${comm}\0${cgroupId}\0${netns}\0${side}\0${peer}`;
		let o = this.owners.get(key);
		if (!o) {
			if (this.owners.size >= (this.#options.maxOwners ?? 20_000) && comm !== OTHER) {
				this.ownersRefused++;
				return this.#owner(0, OTHER, 0, 0, 'unknown', '', nowUs);
			}
			o = newOwner(key, { pid, comm, cgroupId, netns, side, peer }, nowUs);
			this.owners.set(key, o);
			this.#netns(netns);
		}
		o.lastEventUs = Math.max(o.lastEventUs, nowUs);
		return o;
	}

	/**
	 * The owner and destination an event counts against: a recent one's when the fields match
	 * (recent-owners.ts), else found by the string keys (which cost more than the rest of ingest).
	 */
	#ownerAndDestination(e: TwtEvent, who: Blame, isServer: boolean, tsUs: number): { owner: Owner; dest: Destination | undefined } {
		const peerKind = e.kind === 'bind_fail' ? 2 : isServer ? 1 : 0;
		const port = peerKind === 0 ? e.dport : e.sport;
		// One key object, refilled per event: a hit allocates nothing.
		const k = this.#key;
		k.generation = this.#generation, k.pid = who.pid, k.comm = who.comm, k.cgroupId = e.cgroupId, k.netns = e.netns;
		k.side = e.side, k.peerKind = peerKind, k.port = port, k.saddr = e.saddr, k.daddr = e.daddr;
		const r = this.#recent.find(k);
		if (r) return r;
		const peer = peerKind === 2 ? `bind ${endpoint(e.saddr, e.sport)}` : peerKind === 1 ? `local ${endpoint(e.saddr, e.sport)}` : endpoint(e.daddr, e.dport);
		const owner = this.#owner(who.pid, ownerComm(who, e.side), e.cgroupId, e.netns, e.side, peer, tsUs);
		const dest = peerKind === 0 ? this.#destination(e.netns, e.saddr, e.daddr, e.dport, tsUs) : undefined;
		// An owner or destination beyond the bounds is not kept: nor is it cached.
		const isKept = this.owners.get(owner.key) === owner && (!dest || this.destinations.get(dest.key) === dest);
		const entry: RecentOwner = { ...k, owner, dest };
		if (isKept) this.#recent.put(entry);
		return entry;
	}

	#destination(netns: number, saddr: string, daddr: string, dport: number, nowUs: number): Destination {
		const key = destKey(netns, saddr, daddr, dport);
		let d = this.destinations.get(key);
		if (!d) {
			d = newDestination(key, { netns, saddr, daddr, dport }, nowUs);
			// Beyond the bound the tally is used once and not kept: that destination is not listed.
			if (this.destinations.size < (this.#options.maxDestinations ?? 10_000)) this.destinations.set(key, d);
		}
		return d;
	}
}
