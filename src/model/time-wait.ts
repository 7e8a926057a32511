/**
 * The TIME_WAIT population: every timewait socket twtrace knows of, by cookie, with its owner and
 * when the kernel will end it. Entries come from time_wait events (modelled expiry) and from iter/tcp
 * walks (exact set and timers).
 *
 * Columnar, because an always-on agent holds millions of them (a namespace holds 2.7M at 45k
 * connections/s): one slot per socket across typed arrays, an open-addressing index by cookie, and
 * the expiry wheel as doubly linked lists threaded through the slots: 52 bytes per slot and 6 to 12
 * of index, reserved once at the bound and committed as used, so nothing is copied to grow; no
 * object per socket, nothing for the garbage collector to trace. Owners and port pools are objects
 * shared by many sockets; a slot refers to them by a small id (interned.ts).
 *
 * Expiry runs on one-second wheel buckets, so a tick costs only what expires; a clock that jumps
 * (a capture with far-future timestamps) costs the buckets that exist, never a loop per second. Pure.
 */

/** What a timewait socket is counted against: its owner, and the port pool it holds a port of. */
export interface TimeWaitHolder {
	timeWait: number;
	/** The most it ever held at once (a report's "peak TIME_WAIT held"). */
	peakTimeWait: number;
	lastChangeUs: number;
}

export interface PortPoolTally {
	timeWait: number;
	/** Timewait sockets by the wheel bucket (whole second, rounded up) they expire in. */
	readonly expiring: Map<number, number>;
	/** Timewait sockets by holder: who holds this pool's ports (a report's victims → offenders). */
	readonly holders: Map<TimeWaitHolder, number>;
}

import { Interned } from './interned.js';
import { RecentExpiries } from './recent-expiries.js';

const US = 1_000_000;
const NONE = 0xffff_ffff;
/** Bytes per slot in the columns: cookie, entered, expires (f64); bucket (i32); holder, pool, netns, prev, next, walk mark (u32). */
export const COLUMN_BYTES_PER_SLOT = 3 * 8 + 7 * 4;
/** The last wheel bucket (second) an Int32Array holds. */
const LAST_BUCKET = 2 ** 31 - 1;
/** The columns are reserved at the population's bound once: typed arrays that large are committed by the kernel
 * page by page as slots are used (calloc'd, untouched pages cost no memory), so growing never copies them.
 * Only the index grows, doubling, when it would be more than this full. */
const INDEX_LOAD = 2 / 3;
/** The first index: a population holding a few sockets costs a few kilobytes. */
const FIRST_INDEX_SLOTS = 2048;
/** Above this many seconds between the last expiry and now, expire() visits buckets, not seconds. */
const SECONDS_SCANNED_MAX = 4096;

export class TimeWaitPopulation<H extends TimeWaitHolder> {
	readonly #maxEntries: number;
	readonly #holders = new Interned<H>();
	readonly #pools = new Interned<PortPoolTally>();
	readonly #byNetns = new Map<number, number>();
	readonly expired = new RecentExpiries(); // what expire() removed lately: the kernel's timers may lag (walk-plan.ts)
	/** Wheel bucket (second) → first slot of its list. */
	readonly #wheel = new Map<number, number>();
	/**
	 * Wheel bucket → the earliest expiry linked into it (not lowered again when that entry leaves):
	 * before it, the bucket that holds "now" needs no scan. The kernel's timers fire in 2 s steps at
	 * HZ 250 (kernel-facts §9), so a bucket's entries mostly share one expiry.
	 */
	readonly #wheelMin = new Map<number, number>();
	/** Buckets below this have been expired. */
	#wheelFrom = 0;
	#size = 0;
	/** Slots in use or freed: the high-water mark; freed slots are chained through #next. */
	#used = 0;
	#freeHead = NONE;
	#walkMark = 0;
	// Columns, maxEntries long (committed as used: see INDEX_LOAD's comment). A free slot has holder 0.
	#cookie = new Float64Array(0);
	#entered = new Float64Array(0);
	#expires = new Float64Array(0);
	#bucket = new Int32Array(0);
	#holder = new Uint32Array(0);
	#pool = new Uint32Array(0);
	#netns = new Uint32Array(0);
	#prev = new Uint32Array(0);
	#next = new Uint32Array(0);
	#mark = new Uint32Array(0);
	/** Open addressing (linear probing) by cookie: slot + 1, 0 empty. A power of two, at most INDEX_LOAD full. */
	#index = new Uint32Array(0);
	/** Entries refused because the population was at maxEntries. */
	refused = 0;

	constructor(maxEntries: number) {
		this.#maxEntries = maxEntries;
		this.#reserve(maxEntries);
		this.#index = new Uint32Array(FIRST_INDEX_SLOTS);
	}

	get size(): number {
		return this.#size;
	}

	/** Bytes the columns and the index have committed: the slots ever used, and the whole index. */
	get bytes(): number {
		return this.#used * COLUMN_BYTES_PER_SLOT + this.#index.byteLength;
	}

	has(cookie: number): boolean {
		return this.#find(cookie) !== NONE;
	}

	/** The holder of `cookie`'s entry, if any. */
	holderOf(cookie: number): H | undefined {
		const i = this.#find(cookie);
		return i === NONE ? undefined : this.#holders.get(this.#holder[i]!);
	}

	/** When `cookie`'s entry expires (CLOCK_MONOTONIC µs), if it exists. */
	expiryOf(cookie: number): number | undefined {
		const i = this.#find(cookie);
		return i === NONE ? undefined : this.#expires[i];
	}

	/** Timewait sockets known in `netns` now. */
	countIn(netns: number): number {
		return this.#byNetns.get(netns) ?? 0;
	}

	/** Adds a timewait socket, or moves an existing one to `holder`. False when full (counted in `refused`). */
	add(cookie: number, holder: H, pool: PortPoolTally | undefined, netns: number, enteredUs: number, expiresUs: number): boolean {
		let i = this.#find(cookie);
		if (i !== NONE) {
			this.#unhold(i, enteredUs);
			this.#holders.unref(this.#holder[i]!);
			this.#pools.unref(this.#pool[i]!);
			this.#holder[i] = this.#holders.ref(holder);
			this.#pool[i] = this.#pools.ref(pool);
			this.#hold(i, enteredUs);
			this.setExpiry(cookie, expiresUs);
			return true;
		}
		if (this.#size >= this.#maxEntries) {
			this.refused++;
			return false;
		}
		if ((this.#size + 1) > this.#index.length * INDEX_LOAD) this.#growIndex();
		if (this.#freeHead !== NONE) {
			i = this.#freeHead;
			this.#freeHead = this.#next[i]!;
		} else {
			i = this.#used++;
		}
		this.#size++;
		this.#cookie[i] = cookie;
		this.#entered[i] = enteredUs;
		this.#expires[i] = expiresUs;
		this.#bucket[i] = this.#bucketOf(expiresUs);
		this.#holder[i] = this.#holders.ref(holder);
		this.#pool[i] = this.#pools.ref(pool);
		this.#netns[i] = netns;
		this.#mark[i] = this.#walkMark;
		this.#insertIndex(cookie, i);
		this.#byNetns.set(netns, (this.#byNetns.get(netns) ?? 0) + 1);
		this.#hold(i, enteredUs);
		this.#link(i);
		return true;
	}

	/** `cookie` no longer counts in its port pool (its port left the range: ip_local_port_range narrowed). */
	leavePool(cookie: number, nowUs: number): void {
		const i = this.#find(cookie);
		if (i === NONE || this.#pool[i] === 0) return;
		this.#unhold(i, nowUs);
		this.#pools.unref(this.#pool[i]!);
		this.#pool[i] = 0;
		this.#hold(i, nowUs);
	}

	/** Re-arms the expiry (a walk read the kernel's timer). */
	setExpiry(cookie: number, expiresUs: number): void {
		const i = this.#find(cookie);
		if (i !== NONE) this.#rearm(i, expiresUs);
	}

	#rearm(i: number, expiresUs: number): void {
		this.#expires[i] = expiresUs;
		const bucket = this.#bucketOf(expiresUs);
		if (bucket === this.#bucket[i]) return;
		this.#unlink(i);
		this.#count(i, -1);
		this.#bucket[i] = bucket;
		this.#count(i, +1);
		this.#link(i);
	}

	delete(cookie: number, nowUs: number): void {
		const i = this.#find(cookie);
		if (i !== NONE) this.#remove(i, nowUs);
	}

	/** Removes every entry whose expiry is at or before `nowUs`. */
	expire(nowUs: number): void {
		const upTo = Math.ceil(nowUs / US);
		if (upTo < this.#wheelFrom) return;
		const buckets: number[] = [];
		if (upTo - this.#wheelFrom <= SECONDS_SCANNED_MAX) {
			for (let b = this.#wheelFrom; b <= upTo; b++) if (this.#wheel.has(b)) buckets.push(b);
		} else {
			// A jump (a capture's far-future timestamp, a suspended host): visit what exists.
			for (const b of this.#wheel.keys()) if (b <= upTo) buckets.push(b);
			buckets.sort((a, b) => a - b);
		}
		for (const b of buckets) {
			const isWholeBucketDue = b * US <= nowUs;
			if (!isWholeBucketDue && nowUs < this.#wheelMin.get(b)!) continue;
			let i = this.#wheel.get(b) ?? NONE;
			while (i !== NONE) {
				const next = this.#next[i]!;
				if (isWholeBucketDue || this.#expires[i]! <= nowUs) (this.expired.add(this.#netns[i]!, this.#expires[i]!), this.#remove(i, nowUs));
				i = next;
			}
		}
		this.#wheelFrom = Math.min(Math.max(this.#wheelFrom, upTo), LAST_BUCKET);
	}

	/**
	 * A walk of `netns` starts: entries it finds are marked with seenHolder(); endWalk() then removes
	 * those of that namespace it did not find that entered before the walk started.
	 */
	beginWalk(): void {
		this.#walkMark = (this.#walkMark + 1) >>> 0 || 1;
	}

	/**
	 * The current walk found `cookie`, whose timer fires at `expiresUs` (undefined: unknown): the
	 * entry's holder, or undefined when there is no such entry. One lookup: a walk does this for
	 * every timewait socket.
	 */
	seenHolder(cookie: number, expiresUs?: number): H | undefined {
		const i = this.#find(cookie);
		if (i === NONE) return undefined;
		this.#mark[i] = this.#walkMark;
		if (expiresUs !== undefined) this.#rearm(i, expiresUs);
		return this.#holders.get(this.#holder[i]!);
	}

	/** Removes the entries of `netns` that entered before `takenAtUs` and the walk did not find. */
	endWalk(netns: number, takenAtUs: number): number {
		let removed = 0;
		for (let i = 0; i < this.#used; i++) {
			if (this.#holder[i] === 0 || this.#netns[i] !== netns) continue;
			if (this.#mark[i] !== this.#walkMark && this.#entered[i]! < takenAtUs) {
				this.#remove(i, takenAtUs);
				removed++;
			}
		}
		return removed;
	}

	#bucketOf(expiresUs: number): number {
		// An expiry already past (a late event, a timer at 0) goes into the next bucket checked.
		// Clamped to what an Int32Array holds: a bucket 68 years of uptime away is as good as never.
		return Math.min(Math.max(Math.ceil(expiresUs / US), this.#wheelFrom), LAST_BUCKET);
	}

	#remove(i: number, nowUs: number): void {
		this.#unlink(i);
		this.#unhold(i, nowUs);
		this.#holders.unref(this.#holder[i]!);
		this.#pools.unref(this.#pool[i]!);
		this.#holder[i] = 0;
		this.#pool[i] = 0;
		const netns = this.#netns[i]!;
		this.#byNetns.set(netns, this.#byNetns.get(netns)! - 1);
		this.#deleteIndex(this.#cookie[i]!);
		this.#next[i] = this.#freeHead;
		this.#freeHead = i;
		this.#size--;
	}

	#link(i: number): void {
		const b = this.#bucket[i]!;
		const head = this.#wheel.get(b) ?? NONE;
		this.#prev[i] = NONE;
		this.#next[i] = head;
		if (head !== NONE) this.#prev[head] = i;
		else this.#wheelMin.delete(b);
		this.#wheel.set(b, i);
		const min = this.#wheelMin.get(b);
		if (min === undefined || this.#expires[i]! < min) this.#wheelMin.set(b, this.#expires[i]!);
	}

	#unlink(i: number): void {
		const prev = this.#prev[i]!;
		const next = this.#next[i]!;
		if (next !== NONE) this.#prev[next] = prev;
		if (prev !== NONE) this.#next[prev] = next;
		else if (next !== NONE) this.#wheel.set(this.#bucket[i]!, next);
		else this.#wheel.delete(this.#bucket[i]!), this.#wheelMin.delete(this.#bucket[i]!);
	}

	#hold(i: number, nowUs: number): void {
		const holder = this.#holders.get(this.#holder[i]!)!;
		holder.timeWait++;
		holder.peakTimeWait = Math.max(holder.peakTimeWait, holder.timeWait);
		holder.lastChangeUs = nowUs;
		const pool = this.#pools.get(this.#pool[i]!);
		if (pool) {
			pool.timeWait++;
			pool.holders.set(holder, (pool.holders.get(holder) ?? 0) + 1);
		}
		this.#count(i, +1);
	}

	#unhold(i: number, nowUs: number): void {
		const holder = this.#holders.get(this.#holder[i]!)!;
		holder.timeWait--;
		holder.lastChangeUs = nowUs;
		const pool = this.#pools.get(this.#pool[i]!);
		if (pool) {
			pool.timeWait--;
			const n = pool.holders.get(holder)! - 1;
			if (n === 0) pool.holders.delete(holder);
			else pool.holders.set(holder, n);
		}
		this.#count(i, -1);
	}

	#count(i: number, delta: number): void {
		const pool = this.#pools.get(this.#pool[i]!);
		if (!pool) return;
		const bucket = this.#bucket[i]!;
		const n = (pool.expiring.get(bucket) ?? 0) + delta;
		if (n === 0) pool.expiring.delete(bucket);
		else pool.expiring.set(bucket, n);
	}

	// ---- the index -------------------------------------------------------------------------------

	#slotOf(cookie: number): number {
		// Cookies are a counter (net/core/sock_diag.c): mix both halves so that consecutive ones spread.
		let h = Math.imul((cookie >>> 0) ^ Math.imul(Math.floor(cookie / 0x1_0000_0000), 0x9e3779b1), 0x85ebca6b);
		h ^= h >>> 13;
		h = Math.imul(h, 0xc2b2ae35);
		h ^= h >>> 16;
		return h & (this.#index.length - 1);
	}

	#find(cookie: number): number {
		const mask = this.#index.length - 1;
		for (let s = this.#slotOf(cookie); ; s = (s + 1) & mask) {
			const v = this.#index[s]!;
			if (v === 0) return NONE;
			if (this.#cookie[v - 1] === cookie) return v - 1;
		}
	}

	#insertIndex(cookie: number, i: number): void {
		const mask = this.#index.length - 1;
		let s = this.#slotOf(cookie);
		while (this.#index[s] !== 0) s = (s + 1) & mask;
		this.#index[s] = i + 1;
	}

	/** Backward-shift deletion: no tombstones, so lookups never slow down with churn. */
	#deleteIndex(cookie: number): void {
		const mask = this.#index.length - 1;
		let s = this.#slotOf(cookie);
		for (; this.#index[s] !== 0; s = (s + 1) & mask) if (this.#cookie[this.#index[s]! - 1] === cookie) break;
		if (this.#index[s] === 0) return;
		let hole = s;
		for (let j = (hole + 1) & mask; this.#index[j] !== 0; j = (j + 1) & mask) {
			const home = this.#slotOf(this.#cookie[this.#index[j]! - 1]!);
			// Move j into the hole unless its home lies cyclically in (hole, j].
			const isBetween = hole <= j ? hole < home && home <= j : hole < home || home <= j;
			if (!isBetween) {
				this.#index[hole] = this.#index[j]!;
				hole = j;
			}
		}
		this.#index[hole] = 0;
	}

	/** The columns, `capacity` slots each, allocated once. */
	#reserve(capacity: number): void {
		this.#cookie = new Float64Array(capacity);
		this.#entered = new Float64Array(capacity);
		this.#expires = new Float64Array(capacity);
		this.#bucket = new Int32Array(capacity);
		this.#holder = new Uint32Array(capacity);
		this.#pool = new Uint32Array(capacity);
		this.#netns = new Uint32Array(capacity);
		this.#prev = new Uint32Array(capacity);
		this.#next = new Uint32Array(capacity);
		this.#mark = new Uint32Array(capacity);
	}

	/** Twice the index, every entry hashed into it again; the columns stay where they are. */
	#growIndex(): void {
		this.#index = new Uint32Array(this.#index.length * 2);
		for (let i = 0; i < this.#used; i++) if (this.#holder[i] !== 0) this.#insertIndex(this.#cookie[i]!, i);
	}
}
