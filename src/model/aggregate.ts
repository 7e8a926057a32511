/**
 * The churn model behind `top` (and later `report` and `serve`): events and socket-table walks in,
 * per-owner tallies out. Pure and deterministic: every method takes CLOCK_MONOTONIC µs from its
 * caller (events carry their own timestamps), so tests drive it with a synthetic clock.
 *
 * The unit of state is an *owner*: one (pid, comm, cgroup, netns, side, peer) combination. Groups
 * (--by process, comm, cgroup, netns, dest) are sums of owners, made at snapshot time, so the
 * grouping can change on a key press without losing history.
 *
 * TIME_WAIT held now is modelled from time_wait events (a TIME_WAIT-substate socket lives 60 s,
 * TCP_TIMEWAIT_LEN; a FIN_WAIT2-substate one tcp_fin_timeout, unless the peer's FIN turns it into
 * TIME_WAIT for another 60 s, which no tracepoint reports: kernel-facts §1.3) and made exact by
 * reconcile(), which takes an iter/tcp walk of a namespace: its timewait sockets, their cookies
 * (inherited from the original socket, §1.4) and their timers.
 */
import { endpoint, parseEndpoint } from '../event/endpoint.js';
import * as hdr from 'hdr-histogram-js';
import type { TwtEvent } from '../event/decode.js';
import type { SideName } from '../event/kinds.js';
import { TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_TIME_WAIT, type SocketEntry } from '../event/sock.js';
import { blame, type Blame } from './attribution.js';
import { DEFAULT_PORT_RANGE, inRange, TIME_WAIT_SECONDS, usablePorts, type PortRange } from './ports.js';
import { TimeWaitPopulation, type PortPoolTally, type TimeWaitHolder } from './time-wait.js';
import { VictimTable } from './victims.js';
import { likelyListener, likelyOwner, OpenHolders, type Likely } from './likely.js';
import type { HolderEntry } from '../event/holders.js';

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

/** Per network namespace settings that change the arithmetic (read by the host probe). */
export interface NetnsSettings {
	portRange: PortRange;
	reservedPorts: ReadonlySet<number>;
	maxTimeWaitBuckets?: number;
	finTimeoutSec: number;
	twReuse?: number;
	/** tcp_tw_reuse_delay (Linux 6.13+): a TIME_WAIT socket is reused only after this many ms. */
	twReuseDelayMs?: number;
	/** tcp_tw_recycle: present only on kernels before 4.12. */
	twRecycle?: number;
	timestamps?: number;
	/** TcpExtTCPTimeWaitOverflow: timewait sockets the kernel did not create (tcp_max_tw_buckets). */
	timeWaitOverflow?: number;
}

/** One walk of a namespace's socket table. */
export interface NetnsWalk {
	netns: number;
	/** When the walk started (CLOCK_MONOTONIC µs): entries that came later are not in it. */
	takenAtUs: number;
	sockets: readonly SocketEntry[];
	settings: NetnsSettings;
	/** The process that called listen() on (netns, port), when known. */
	listenerOwner?: (port: number) => { pid: number; comm: string } | undefined;
}

/** One walk being reconciled a socket at a time (ChurnModel.beginReconcile). */
export interface WalkReconciler {
	add(socket: SocketEntry): void;
	finish(): void;
}

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
	/** model: now (exact at each walk, kept by events since); walk: the last walk's (a filtered model). */
	from: 'model' | 'walk';
}

export const BEFORE_START = '(before start)';
/**
 * Holds TIME_WAIT sockets a walk found that entered TIME_WAIT after twtrace attached, yet reached
 * it by no event: their events were lost (ring full). Never counted as "(before start)".
 */
export const LOST = '(events lost)';
/**
 * A socket's TIME_WAIT entry is dated from its timer (expiry - its length); the timer wheel fires
 * up to ~0.5 s late (kernel-facts §9): entries this close to the attach are given the benefit of the doubt.
 */
const ENTRY_DATING_SLACK_US = 2 * 1_000_000;
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

const LIFETIME_MAX_US = 24 * 3600 * US;
/** Lifetimes an owner records in a packed histogram before it gets a plain one. */
const PACKED_LIFETIMES_MAX = 4096;

/** Slots of the recent (owner, destination) cache: a power of two. */
const RECENT_SLOTS = 256;

interface RecentOwner {
	/** ChurnModel.#generation when cached: owners and destinations removed since make it stale. */
	generation: number;
	pid: number;
	comm: string;
	cgroupId: number;
	netns: number;
	side: SideName;
	peerKind: number;
	port: number;
	saddr: string;
	daddr: string;
	owner: Owner;
	dest: Destination | undefined;
}

export class ChurnModel {
	readonly #recent: (RecentOwner | undefined)[] = new Array(RECENT_SLOTS);
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
	/** Who holds connections open to each destination (the last holder walk): evidence for likely owners. */
	readonly openHolders = new OpenHolders();
	/**
	 * When the tracepoints were attached (CLOCK_MONOTONIC µs): a socket that entered TIME_WAIT after
	 * it with no event was lost, not older than twtrace. startUs until the caller says.
	 */
	attachedUs: number;
	#lastSampleSecond: number;

	constructor(startUs: number, options: ModelOptions = {}) {
		this.startUs = startUs;
		this.attachedUs = startUs;
		this.#options = options;
		this.timeWait = new TimeWaitPopulation(options.maxTimeWait ?? 2_000_000);
		this.#lastSampleSecond = Math.floor(startUs / US);
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
		if (tsUs >= this.#expireAtUs) {
			this.timeWait.expire(tsUs);
			this.#expireAtUs = tsUs + 1000;
		}
		return this.#ingestOne(e, tsUs);
	}

	#ingestOne(e: TwtEvent, tsUs = e.tsUs): Blame | undefined {
		const who = blame(e);
		if (this.#options.comm !== undefined && who.comm !== this.#options.comm) return undefined;
		const isServer = e.side === 'server';
		const { owner, dest } = this.#ownerAndDestination(e, who, isServer, tsUs);
		owner.lastEventUs = Math.max(owner.lastEventUs, tsUs);
		const second = Math.floor(tsUs / US);
		switch (e.kind) {
			case 'connect':
				this.#count(owner, C.connects, second);
				if (dest) countSecond(dest.connects, dest.slotSecond, 0, 1, second), dest.connectsTotal++, (dest.lastEventUs = tsUs);
				break;
			case 'accept':
				this.#count(owner, C.accepts, second);
				break;
			case 'active_close':
				this.#count(owner, C.activeCloses, second);
				break;
			case 'time_wait': {
				this.#count(owner, C.timeWaitEntries, second);
				if (this.#options.closesFromTimeWait) this.#count(owner, C.activeCloses, second);
				// Lifetimes from the end of a connection, not from active_close: every consumer asks for
				// time_wait and reset, and the span is the same (bpf/twtrace.bpf.c fill_owner).
				this.#recordLifetime(owner, e.lifetimeUs);
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
				this.#count(owner, C.resets, second);
				this.#recordLifetime(owner, e.lifetimeUs);
				if (dest && dest.portsHeldOpen > 0 && this.#holdsEphemeralPort(e.netns, e.sport)) this.#closedSinceWalk(dest, e.netns, tsUs, e.lifetimeUs);
				break;
			case 'connect_fail':
				this.#count(owner, C.connectFailures, second);
				owner.connectErrnos.set(e.err, (owner.connectErrnos.get(e.err) ?? 0) + 1);
				if (dest) dest.connectFailures++;
				this.victims.note(e, who.pid, owner.comm);
				break;
			case 'bind_fail':
				this.#count(owner, C.bindFailures, second);
				this.victims.note(e, who.pid, owner.comm);
				break;
		}
		return who;
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
		const ns = this.#netns(walk.netns);
		const previousRange = ns.settings?.portRange;
		// A narrowed range: TIME_WAIT sockets on ports now outside it no longer count in their pools.
		const rangeChanged = previousRange !== undefined && (previousRange.low !== walk.settings.portRange.low || previousRange.high !== walk.settings.portRange.high);
		ns.settings = walk.settings; // the port range decides which sockets hold ephemeral ports
		ns.overflowAtFirstWalk ??= walk.settings.timeWaitOverflow;
		const listeningPorts = new Set(listening);
		const openByDest = new Map<string, number>();
		const unknownPeers = new Map<string, { owner: Owner; pool: Destination | undefined } | null>();
		let timeWait = 0;
		const { pid, port, family } = this.#options;
		// Who listens on a port, when twtrace saw the listen() (looked up once per port and walk: the
		// lookup reads a BPF map).
		const listeners = new Map<number, { pid: number; comm: string } | undefined>();
		const listenerOf = (sport: number) => {
			if (!listeners.has(sport)) listeners.set(sport, walk.listenerOwner?.(sport));
			return listeners.get(sport);
		};
		this.timeWait.beginWalk();
		const add = (s: SocketEntry): void => {
			if (s.state === TCP_TIME_WAIT) timeWait++;
			if (s.state === TCP_LISTEN) listeningPorts.add(s.sport);
			if (port !== undefined && s.sport !== port && s.dport !== port) return;
			if (family !== undefined && s.family !== family) return;
			if (s.state === TCP_LISTEN || s.state === TCP_NEW_SYN_RECV) return;
			const isServer = listeningPorts.has(s.sport);
			if (s.state !== TCP_TIME_WAIT) {
				if (!isServer && this.#holdsEphemeralPort(walk.netns, s.sport)) {
					const key = destKey(walk.netns, s.saddr, s.daddr, s.dport);
					openByDest.set(key, (openByDest.get(key) ?? 0) + 1);
				}
				return;
			}
			const expiresUs = s.expiresUs > 0 ? s.expiresUs : undefined;
			const known = this.timeWait.seenHolder(s.cookie, expiresUs);
			if (known) {
				if (rangeChanged && !this.#holdsEphemeralPort(walk.netns, s.sport)) this.timeWait.leavePool(s.cookie, walk.takenAtUs);
				// Counted as of unknown process when an earlier walk found it (nobody listened on its port
				// then, or twtrace had not seen the listen()): a process seen calling listen() on that port
				// since owns it, as it owns every socket found on a port it listens on.
				const listener = isServer && known.pid === 0 && (known.comm === BEFORE_START || known.comm === LOST) ? listenerOf(s.sport) : undefined;
				if (listener && (pid === undefined || listener.pid === pid) && (this.#options.comm === undefined || listener.comm === this.#options.comm)) {
					const owner = this.#owner(listener.pid, listener.comm, 0, walk.netns, 'server', `local ${endpoint(s.saddr, s.sport)}`, walk.takenAtUs);
					this.timeWait.add(s.cookie, owner, undefined, walk.netns, walk.takenAtUs, this.timeWait.expiryOf(s.cookie)!);
				}
				return;
			}
			// Not seen entering TIME_WAIT: owned by its listener; else older than twtrace ("(before
			// start)"), or, when its timer says it entered after the attach, its events were lost.
			const lifeUs = s.substate === TCP_TIME_WAIT ? TIME_WAIT_SECONDS * US : (ns.settings?.finTimeoutSec ?? TIME_WAIT_SECONDS) * US;
			const lost = expiresUs !== undefined && expiresUs - lifeUs > this.attachedUs + ENTRY_DATING_SLACK_US;
			// Such sockets come by the thousand towards one peer: their owner and port pool are looked
			// up once per peer and walk, by the raw address words, without formatting addresses.
			const holdsPort = !isServer && this.#holdsEphemeralPort(walk.netns, s.sport);
			const peerKey = isServer ? `s ${s.sport} ${s.addressKey('saddr')} ${lost}` : `c ${s.dport} ${s.addressKey('daddr')} ${s.addressKey('saddr')} ${holdsPort} ${lost}`;
			let found = unknownPeers.get(peerKey);
			if (!found) {
				const listener = isServer ? listenerOf(s.sport) : undefined;
				const comm = listener?.comm ?? (lost ? LOST : BEFORE_START);
				const isWanted = (pid === undefined || listener?.pid === pid) && (this.#options.comm === undefined || comm === this.#options.comm);
				found = isWanted ? {
					owner: this.#owner(listener?.pid ?? 0, comm, 0, walk.netns, isServer ? 'server' : 'unknown',
						isServer ? `local ${endpoint(s.saddr, s.sport)}` : endpoint(s.daddr, s.dport), walk.takenAtUs),
					pool: holdsPort ? this.#destination(walk.netns, s.saddr, s.daddr, s.dport, walk.takenAtUs) : undefined,
				} : null;
				unknownPeers.set(peerKey, found);
			}
			if (!found) return;
			// add() marks it seen by this walk.
			this.timeWait.add(s.cookie, found.owner, found.pool, walk.netns, walk.takenAtUs, expiresUs ?? walk.takenAtUs + TIME_WAIT_SECONDS * US);
		};
		const finish = (): void => {
			ns.listeningPorts = listeningPorts;
			this.timeWait.endWalk(walk.netns, walk.takenAtUs);
			for (const d of this.destinations.values()) {
				if (d.netns === walk.netns) d.portsHeldOpen = 0;
			}
			for (const [key, n] of openByDest) {
				const [, saddr, daddr, dport] = key.split(' ');
				this.#destination(walk.netns, saddr!, daddr!, Number(dport), walk.takenAtUs).portsHeldOpen = n;
			}
			ns.walkedTimeWait = timeWait;
			ns.walkedAtUs = walk.takenAtUs;
		};
		return { add, finish };
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

	/**
	 * Who holds ports towards daddr:dport in `netns` now (any source address): TIME_WAIT sockets per
	 * owner, most first. A connect() that failed with EADDRNOTAVAIL failed against these.
	 */
	holdersOfDestination(netns: number, daddr: string, dport: number): Map<Owner, number> {
		const out = new Map<Owner, number>();
		for (const d of this.destinations.values()) {
			if (d.netns !== netns || d.daddr !== daddr || d.dport !== dport) continue;
			for (const [holder, n] of d.holders) out.set(holder as Owner, (out.get(holder as Owner) ?? 0) + n);
		}
		return out;
	}

	/**
	 * Who holds local port `port` of `netns` in TIME_WAIT now: servers whose accepted connections on
	 * it closed first, and, for an ephemeral port (or port 0: any ephemeral port), the clients
	 * holding ports of the range. A bind() that failed with EADDRINUSE failed against these.
	 */
	holdersOfLocalPort(netns: number, port: number): Map<Owner, number> {
		const out = new Map<Owner, number>();
		const ephemeral = port === 0 || this.#holdsEphemeralPort(netns, port);
		for (const o of this.owners.values()) {
			if (o.netns !== netns || o.timeWait === 0) continue;
			const onPort = o.side === 'server' && o.peer.endsWith(`:${port}`);
			if (onPort || (ephemeral && o.side !== 'server')) out.set(o, o.timeWait);
		}
		return out;
	}

	/** Takes a walk of the sockets processes hold open (tracer/holders.ts). */
	setOpenHolders(entries: readonly HolderEntry[], atUs: number): void {
		this.openHolders.update(entries, atUs, (netns, port) => this.#holdsEphemeralPort(netns, port) && !this.namespaces.get(netns)?.listeningPorts.has(port));
	}

	/**
	 * The likely owner of each owner whose process is unknown (its sockets predate twtrace, or their
	 * events were lost): for a client's sockets, who connects to the destination of its peer; for a
	 * server's, who holds the listening socket of its port (likely.ts); none when nobody does. Evidence only: never counted as that process's. One pass over the
	 * owners, whatever the number of unknown ones.
	 */
	likelyOwners(): Map<Owner, Likely> {
		const unknown: Owner[] = [];
		const unknownServers: Owner[] = [];
		const attemptsByPeer = new Map<string, { pid: number; comm: string; attempts: number }[]>();
		for (const o of this.owners.values()) {
			const isUnknown = o.pid === 0 && (o.comm === BEFORE_START || o.comm === LOST);
			if (isUnknown && o.peer.startsWith('local ')) unknownServers.push(o);
			if (o.side === 'server' || o.peer.startsWith('local ') || o.peer.startsWith('bind ')) continue;
			if (o.pid === 0) {
				if (isUnknown) unknown.push(o);
				continue;
			}
			const key = `${o.netns} ${o.peer}`;
			let list = attemptsByPeer.get(key);
			if (!list) attemptsByPeer.set(key, (list = []));
			list.push({ pid: o.pid, comm: o.comm, attempts: o.totals[C.connects]! + o.totals[C.connectFailures]! });
		}
		const out = new Map<Owner, Likely>();
		for (const o of unknown) {
			const { addr, port } = parseEndpoint(o.peer);
			const likely = likelyOwner(o.netns, addr, port, this.openHolders, attemptsByPeer.get(`${o.netns} ${o.peer}`) ?? []);
			if (likely) out.set(o, likely);
		}
		// A server's, on a port whose listener twtrace did not see open: who holds that listening socket.
		for (const o of unknownServers) {
			const { addr, port } = parseEndpoint(o.peer.slice('local '.length));
			const likely = likelyListener(o.netns, addr, port, this.openHolders);
			if (likely) out.set(o, likely);
		}
		return out;
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
	 * walk and kept by events and the kernel's timers in between (`from: 'model'`). A model that does
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

	/** Events per second of `counter` in per-second slots, over at least the last `windowUs` (at most RATE_SECONDS). */
	static rate(counts: Uint32Array, slotSecond: Float64Array, width: number, counter: number, nowUs: number, windowUs: number, startUs: number): number {
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
			o = {
				key, pid, comm, cgroupId, netns, side, peer,
				counts: new Uint32Array(RATE_SECONDS * COUNTERS.length),
				slotSecond: new Float64Array(RATE_SECONDS).fill(-1),
				totals: new Float64Array(COUNTERS.length),
				connectErrnos: new Map(),
				history: new Uint32Array(HISTORY_SECONDS),
				lifetimes: undefined,
				timeWait: 0,
				peakTimeWait: 0,
				lastChangeUs: nowUs,
				lastEventUs: nowUs,
			};
			this.owners.set(key, o);
			this.#netns(netns);
		}
		o.lastEventUs = Math.max(o.lastEventUs, nowUs);
		return o;
	}

	/**
	 * The owner and destination an event counts against. Most events repeat the fields of a recent
	 * one (a churner talks to a few destinations): those are found in a small direct-mapped cache by
	 * comparing fields, without building the string keys (which cost more than the rest of ingest).
	 */
	#ownerAndDestination(e: TwtEvent, who: Blame, isServer: boolean, tsUs: number): { owner: Owner; dest: Destination | undefined } {
		const peerKind = e.kind === 'bind_fail' ? 2 : isServer ? 1 : 0;
		const port = peerKind === 0 ? e.dport : e.sport;
		const slot = ((who.pid * 31 + port * 7 + e.netns + peerKind) >>> 0) & (RECENT_SLOTS - 1);
		const r = this.#recent[slot];
		if (r && r.generation === this.#generation && r.pid === who.pid && r.port === port && r.netns === e.netns && r.peerKind === peerKind &&
			r.cgroupId === e.cgroupId && r.side === e.side && r.comm === who.comm && r.saddr === e.saddr && (peerKind !== 0 || r.daddr === e.daddr)) {
			return r;
		}
		const peer = peerKind === 2 ? `bind ${endpoint(e.saddr, e.sport)}` : peerKind === 1 ? `local ${endpoint(e.saddr, e.sport)}` : endpoint(e.daddr, e.dport);
		const owner = this.#owner(who.pid, ownerComm(who, e.side), e.cgroupId, e.netns, e.side, peer, tsUs);
		const dest = peerKind === 0 ? this.#destination(e.netns, e.saddr, e.daddr, e.dport, tsUs) : undefined;
		// An owner or destination beyond the bounds is not kept: nor is it cached.
		const isKept = this.owners.get(owner.key) === owner && (!dest || this.destinations.get(dest.key) === dest);
		const entry: RecentOwner = { generation: this.#generation, pid: who.pid, comm: who.comm, cgroupId: e.cgroupId, netns: e.netns, side: e.side, peerKind, port, saddr: e.saddr, daddr: e.daddr, owner, dest };
		if (isKept) this.#recent[slot] = entry;
		return entry;
	}

	#destination(netns: number, saddr: string, daddr: string, dport: number, nowUs: number): Destination {
		const key = destKey(netns, saddr, daddr, dport);
		let d = this.destinations.get(key);
		if (!d) {
			d = { key, netns, saddr, daddr, dport, portsHeldOpen: 0, timeWait: 0, expiring: new Map(), holders: new Map(), connects: new Uint32Array(RATE_SECONDS), slotSecond: new Float64Array(RATE_SECONDS).fill(-1), connectsTotal: 0, connectFailures: 0, lastEventUs: nowUs };
			// Beyond the bound the tally is used once and not kept: that destination is not listed.
			if (this.destinations.size < (this.#options.maxDestinations ?? 10_000)) this.destinations.set(key, d);
		}
		return d;
	}

	#count(o: Owner, counter: number, second: number): void {
		countSecond(o.counts, o.slotSecond, counter, COUNTERS.length, second);
		o.totals[counter]!++;
	}

	#recordLifetime(o: Owner, lifetimeUs: number): void {
		if (lifetimeUs <= 0) return; // the start was not seen
		o.lifetimes ??= newLifetimeHistogram();
		// Packed arrays keep a quiet owner's histogram small but cost ~10x per value: a busy owner's
		// moves to plain 32-bit counts (16 KB), the same buckets, so the percentiles do not change.
		if (o.lifetimes.totalCount === PACKED_LIFETIMES_MAX) {
			const plain = newLifetimeHistogram(32);
			plain.add(o.lifetimes);
			o.lifetimes = plain;
		}
		o.lifetimes.recordValue(Math.min(lifetimeUs, LIFETIME_MAX_US));
	}
}

/** Connection lifetimes in µs, 1 µs to 24 h, 2 significant digits, packed (small while sparse). */
export function newLifetimeHistogram(bitBucketSize: 'packed' | 32 = 'packed'): hdr.Histogram {
	return hdr.build({ bitBucketSize, lowestDiscernibleValue: 1, highestTrackableValue: LIFETIME_MAX_US, numberOfSignificantValueDigits: 2 });
}

function destKey(netns: number, saddr: string, daddr: string, dport: number): string {
	return `${netns} ${saddr} ${daddr} ${dport}`;
}

/** Adds one to `counter` in the slot of `second`, clearing the slot when it held an older second. */
function countSecond(counts: Uint32Array, slotSecond: Float64Array, counter: number, width: number, second: number): void {
	const slot = second % RATE_SECONDS;
	if (slotSecond[slot] !== second) {
		if (slotSecond[slot]! > second) return; // older than the ring: too late to count in a rate
		counts.fill(0, slot * width, slot * width + width);
		slotSecond[slot] = second;
	}
	counts[slot * width + counter]!++;
}
