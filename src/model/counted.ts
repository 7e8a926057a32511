/**
 * The kernel's counts taken into the model (docs/counting-in-the-kernel.md, step 3): a counts frame
 * of the flight recorder, key by key, as the events it counts would have been ingested
 * (ChurnModel.ingestCounts): the same owner and destination (the key names the task blame() names,
 * attribution.ts, and a server's key its service, not its peer), the same counters, the TIME_WAIT
 * held from the entries. So `report --last` and `top --replay` read the same model whether the
 * recorder kept records or counts. What the counts do not keep, and so the model cannot know:
 * - when in the reading's second each entry came: entries enter at the reading (they came in the
 *   second before it) and leave in the timer wheel's bucket their timers go into (kernel-facts §9,
 *   wheel.ts) where the wheel's clock is known (the agent reads it; a capture's header keeps it),
 *   else a TIME_WAIT length after the reading. Each goes into its own bucket, the kernel having
 *   counted how many went into odd ones (but a FIN_WAIT2 substate's where tcp_fin_timeout is not
 *   60 s, and a capture's in an earlier counters' layout: spread evenly over the time since the
 *   reading before);
 * - cookies: a walk cannot make these entries exact (reconcile.ts `countedFromUs`), and tcp_tw_reuse
 *   takeovers stay held until the entries expire (kernel-facts §1.3);
 * - a client socket's local port: its entries are taken to hold ephemeral ports (connect() without
 *   bind() picks from ip_local_port_range) and count in their destination's pool;
 * - lifetimes but as buckets (enum twt_lifetime_bound_ms): percentiles are the buckets' bounds;
 * - connections are counted at their start (a refused connect is one), not at the handshake's end.
 * Connect failures are not taken from counts: they flow as events (their errno and target).
 */
import { endpoint } from '../event/endpoint.js';
import { COUNT_COLUMN as K, LIFETIME_BOUNDS_US, type CountKey } from '../event/counts.js';
import type { Blame } from './attribution.js';
import { C, countEvent, countSecond, LIFETIME_MAX_US, ownerComm, recordLifetimes, type Destination, type Owner } from './owners.js';
import { TIME_WAIT_SECONDS } from './ports.js';
import type { ReconcileTarget } from './reconcile.js';

const US = 1_000_000;

/**
 * One key's differences (COUNT_COLUMN order), read at `atUs`, into the model's parts. `history`: from
 * before the span the model covers (a window's history, pipeline/recorder.ts HISTORY_US): only the
 * TIME_WAIT entries still held, not counted as made within it.
 */
export function ingestCounts(m: ReconcileTarget, key: CountKey, who: Pick<Blame, 'pid' | 'comm'>, delta: Float64Array, atUs: number, history = false): void {
	// The reading covers the second before it (a capture of counts says from when, CaptureReplay).
	m.countedFromUs ??= atUs - US;
	// Its entries came since the reading before, at most a second before (the agent reads every second, a frame is a second).
	if (m.countedReading?.atUs !== atUs) m.countedReading = { fromUs: Math.max(m.countedReading?.atUs ?? m.countedFromUs, atUs - US), atUs };
	const isServer = key.side === 'server';
	const { owner, dest } = ownerAndDestination(m, key, who, atUs);
	if (history) {
		addEntries(m, owner, dest, key.netns, delta, atUs);
		return;
	}
	const second = Math.floor(atUs / US);
	const connections = delta[K.connections]!;
	if (connections > 0) {
		countEvent(owner, isServer ? C.accepts : C.connects, second, connections);
		if (dest) countSecond(dest.connects, dest.slotSecond, 0, 1, second, connections), (dest.connectsTotal += connections), (dest.lastEventUs = atUs);
	}
	const timeWait = delta[K.timeWait]!;
	const finWait2 = delta[K.finWait2]!;
	if (timeWait + finWait2 > 0) {
		countEvent(owner, C.timeWaitEntries, second, timeWait + finWait2);
		// Counts have no active closes: a close that made a timewait socket is one (ModelOptions.closesFromTimeWait).
		countEvent(owner, C.activeCloses, second, timeWait + finWait2);
		addEntries(m, owner, dest, key.netns, delta, atUs);
	}
	if (delta[K.resets]! > 0) countEvent(owner, C.resets, second, delta[K.resets]!);
	let bucketed = 0;
	let bucketedUs = 0;
	for (let b = 0; b < LIFETIME_BOUNDS_US.length; b++) {
		const n = delta[K.lifetime + b]!;
		if (n > 0) recordLifetimes(owner, LIFETIME_BOUNDS_US[b]!, n), (bucketed += n), (bucketedUs += n * LIFETIME_BOUNDS_US[b]!);
	}
	// Lifetimes beyond the last bound have no bucket: recorded at their mean as far as the sum tells, at least that bound.
	const beyond = delta[K.lifetimeCount]! - bucketed;
	if (beyond > 0) {
		const lastBoundUs = LIFETIME_BOUNDS_US[LIFETIME_BOUNDS_US.length - 1]!;
		recordLifetimes(owner, Math.min(Math.max((delta[K.lifetimeSumUs]! - bucketedUs) / beyond, lastBoundUs), LIFETIME_MAX_US), beyond);
	}
	if (dest && dest.portsHeldOpen > 0) closedSinceWalk(m, dest, key.netns, delta, beyond, atUs);
}

/**
 * Each key's owner and destination as last resolved. A reading names the same keys as the one
 * before, and the agent hands out the same key object while it names it (event/counts.ts
 * CountKeyCache): found here, they cost no string keys (the peer's, the owner's, the destination's),
 * which were most of a reading's garbage. Checked against the model's tables, as RecentOwners is for
 * events: one the model no longer keeps is looked up again.
 */
const resolved = new WeakMap<CountKey, { m: ReconcileTarget; pid: number; comm: string; owner: Owner; dest: Destination | undefined }>();

function ownerAndDestination(m: ReconcileTarget, key: CountKey, who: Pick<Blame, 'pid' | 'comm'>, atUs: number): { owner: Owner; dest: Destination | undefined } {
	const known = resolved.get(key);
	if (known && known.m === m && known.pid === who.pid && known.comm === who.comm && m.owners.get(known.owner.key) === known.owner &&
		(!known.dest || m.destinations.get(known.dest.key) === known.dest)) {
		known.owner.lastEventUs = Math.max(known.owner.lastEventUs, atUs); // as m.owner() does
		return known;
	}
	const isServer = key.side === 'server';
	const peer = isServer ? `local ${endpoint(key.saddr, key.port)}` : endpoint(key.daddr, key.port);
	const owner = m.owner(who.pid, ownerComm(who as Blame, key.side), key.cgroupId, key.netns, key.side, peer, atUs);
	const dest = isServer ? undefined : m.destination(key.netns, key.saddr, key.daddr, key.port, atUs);
	// An owner or destination beyond the model's bounds is not kept: nor is it remembered here.
	if (m.owners.get(owner.key) === owner && (!dest || m.destinations.get(dest.key) === dest)) resolved.set(key, { m, pid: who.pid, comm: who.comm, owner, dest });
	return { owner, dest };
}

/**
 * Connections towards `dest` that ended in the reading and were open at the namespace's last walk:
 * that walk counted their ports as open (ChurnModel's closedSinceWalk, per event). A count has no
 * start times, but a lifetime's bucket whose lower edge is longer than the time since the walk
 * started before it; those in a bucket that straddles the walk are left open until the next walk.
 */
function closedSinceWalk(m: ReconcileTarget, dest: Destination, netns: number, delta: Float64Array, beyond: number, atUs: number): void {
	const walkedAtUs = m.netnsState(netns).walkedAtUs;
	if (walkedAtUs === undefined || atUs < walkedAtUs) return;
	const sinceWalkUs = atUs - walkedAtUs;
	let closed = LIFETIME_BOUNDS_US[LIFETIME_BOUNDS_US.length - 1]! >= sinceWalkUs ? beyond : 0;
	for (let b = 1; b < LIFETIME_BOUNDS_US.length; b++) if (LIFETIME_BOUNDS_US[b - 1]! >= sinceWalkUs) closed += delta[K.lifetime + b]!;
	dest.portsHeldOpen = Math.max(0, dest.portsHeldOpen - closed);
}

/**
 * The key's TIME_WAIT entries, held from the reading for their substate's length. As the kernel does,
 * none beyond the namespace's tcp_max_tw_buckets: `inet_twsk_alloc()` refuses a timewait socket while
 * that many are held, and the full socket closes the same way (kernel-facts §1.3: the transition looks
 * identical; only TcpExtTCPTimeWaitOverflow counts them), so the counters count an entry the kernel
 * never held. A model of events has walks to remove those; counts have only the cap.
 */
function addEntries(m: ReconcileTarget, owner: Owner, dest: Destination | undefined, netns: number, delta: Float64Array, atUs: number): void {
	const settings = m.netnsState(netns).settings;
	const finUs = (settings?.finTimeoutSec ?? TIME_WAIT_SECONDS) * US;
	let room = settings?.maxTimeWaitBuckets === undefined ? Infinity : Math.max(0, settings.maxTimeWaitBuckets - m.timeWait.countIn(netns));
	const timeWait = Math.min(delta[K.timeWait]!, room);
	room -= timeWait;
	const finWait2 = Math.min(delta[K.finWait2]!, room);
	// Each substate's timer (TCP_TIMEWAIT_LEN; tcp_fin_timeout for FIN_WAIT2, most of which the peer's FIN re-arms for
	// 60 s at once: kernel-facts §1.3) ends in the timer wheel's bucket (wheel.ts) where its clock is known; else its length after the reading.
	// The kernel counted each substate's entries into odd buckets of a 60 s timer's level; a FIN_WAIT2 one's own timer is
	// the namespace's tcp_fin_timeout, which the peer's FIN mostly replaces with 60 s at once (kernel-facts §1.3): its
	// bucket is known where the two agree.
	addHeld(m, owner, dest, netns, atUs, timeWait, TIME_WAIT_SECONDS * US, oddOf(delta, K.timeWait, K.timeWaitOdd, timeWait));
	addHeld(m, owner, dest, netns, atUs, finWait2, finUs, finUs === TIME_WAIT_SECONDS * US ? oddOf(delta, K.finWait2, K.finWait2Odd, finWait2) : undefined);
}

/** How many of the `held` entries of a column (fewer than counted where the cap refused some) went into odd buckets: the same share. */
function oddOf(delta: Float64Array, column: number, oddColumn: number, held: number): number {
	return held < delta[column]! ? Math.round((delta[oddColumn]! * held) / delta[column]!) : delta[oddColumn]!;
}

/** The wheel's buckets of one key's entries (TimeWaitWheel.split), reused from key to key and reading to reading. */
const parts: number[] = [];

/**
 * `n` entries of one substate, held `lengthUs` from the reading, or to the end of their timers' buckets;
 * `odd`: how many the kernel counted into odd buckets of a 60 s timer's level, where that is their timer.
 */
function addHeld(m: ReconcileTarget, owner: Owner, dest: Destination | undefined, netns: number, atUs: number, n: number, lengthUs: number, odd?: number): void {
	if (n <= 0) return;
	if (!m.wheel) {
		m.timeWait.addCounted(owner, dest, netns, atUs, atUs + lengthUs, n);
		return;
	}
	const { fromUs } = m.countedReading!;
	const count = odd !== undefined && m.wheel.oddCounted ? m.wheel.splitCounted(fromUs, atUs, n, odd, parts) : m.wheel.split(fromUs, atUs, n, parts, lengthUs / US);
	for (let i = 0; i < 2 * count; i += 2) m.timeWait.addCounted(owner, dest, netns, atUs, parts[i]!, parts[i + 1]!);
}
