/**
 * The TIME_WAIT population: every timewait socket twtrace knows of, by cookie, with its owner and
 * when the kernel will end it. Entries come from time_wait events (modelled expiry), iter/tcp walks
 * (exact set and timers), and the kernel's counts (a slot per count: addCounted).
 *
 * Columnar, because an always-on agent holds millions of them (a namespace holds 2.7M at 45k
 * connections/s): one slot per socket across typed arrays, an open-addressing index by cookie, and
 * the expiry wheel as doubly linked lists threaded through the slots: 52 bytes per slot and 6 to 12
 * of index, reserved once at the bound and committed as used, so nothing is copied to grow; no
 * object per socket, nothing for the garbage collector to trace. Owners and port pools are objects
 * shared by many sockets; a slot refers to them by a small id (interned.ts).
 *
 * Expiry runs on one-millisecond wheel buckets, so a tick costs what expires and at most a
 * millisecond's entries more: never a bucket's whole list at every tick while its first entries fall
 * due (with one-second buckets whose expiries spread over the second, ticks once a millisecond
 * visited ~7M entries a second: the soak's creeping CPU, worse as the free list scattered the slots
 * across memory). A clock that jumps (a capture with far-future timestamps) costs the buckets that
 * exist, never a loop per millisecond. Pure.
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
	/** Timewait sockets by the second (CLOCK_MONOTONIC, rounded up) they expire in. */
	readonly expiring: SecondCounts;
	/** Timewait sockets by holder: who holds this pool's ports (a report's victims → offenders). */
	readonly holders: Map<TimeWaitHolder, number>;
}

import { Interned } from './interned.js';
import { CookieIndex, NOT_FOUND } from './cookie-index.js';
import { RecentExpiries } from './recent-expiries.js';
import { SecondCounts } from './second-counts.js';

const US = 1_000_000;
/** A wheel bucket's span: expiries in (b - 1, b] ms are in bucket b. */
const BUCKET_US = 1000;
const BUCKETS_PER_SECOND = US / BUCKET_US;
/** No slot: the end of a wheel list, a lookup that found nothing. */
const NONE = NOT_FOUND;
/** Bytes per slot in the columns: cookie, entered, expires (f64); bucket, holder, pool, netns, prev, next, walk mark (u32). */
export const COLUMN_BYTES_PER_SLOT = 3 * 8 + 7 * 4;
/**
 * A slot keeps its bucket modulo 2^32 (ms: 49.7 days, less than a host's uptime may be): every
 * linked entry's bucket lies in [#wheelFrom, #wheelFrom + 2^32), which recovers it (#bucketAt). An
 * expiry further ahead than that (no kernel timer is) is clamped to the window's end.
 */
const BUCKET_WINDOW = 2 ** 32;
/** Above this many milliseconds between the last expiry and now, expire() visits the buckets that exist, not each millisecond. */
const BUCKETS_SCANNED_MAX = 65_536;

export class TimeWaitPopulation<H extends TimeWaitHolder> {
	readonly #maxEntries: number;
	readonly #holders = new Interned<H>();
	readonly #pools = new Interned<PortPoolTally>();
	readonly #byNetns = new Map<number, number>();
	readonly expired = new RecentExpiries(); // what expire() removed lately: the kernel's timers may lag (walk-plan.ts)
	/** Wheel bucket (millisecond) → first slot of its list. */
	readonly #wheel = new Map<number, number>();
	/** Buckets below this have been expired. */
	#wheelFrom = 0;
	#size = 0;
	/** Slots in use or freed: the high-water mark; freed slots are chained through #next. */
	#used = 0;
	#freeHead = NONE;
	#walkMark = 0;
	/** The last cookie addCounted() gave: they count down from -1. */
	#countedCookie = 0;
	// Columns, maxEntries long, reserved once: typed arrays that large are committed by the kernel page
	// by page as slots are used (calloc'd, untouched pages cost no memory), so growing never copies
	// them; only the index grows (cookie-index.ts). A free slot has holder 0.
	#cookie = new Float64Array(0);
	#entered = new Float64Array(0);
	#expires = new Float64Array(0);
	#bucket = new Uint32Array(0);
	#holder = new Uint32Array(0);
	#pool = new Uint32Array(0);
	#netns = new Uint32Array(0);
	#prev = new Uint32Array(0);
	#next = new Uint32Array(0);
	/** The walk that last found the slot's socket; a counted slot's (cookie < 0, never found) count (#weight). */
	#mark = new Uint32Array(0);
	#index: CookieIndex;
	/** Entries refused because the population was at maxEntries. */
	refused = 0;
	/** Entries expire() looked at, since creation: what expiry costs (each at most once or twice when ticked once a millisecond). */
	expiryVisits = 0;

	constructor(maxEntries: number) {
		this.#maxEntries = maxEntries;
		this.#reserve(maxEntries);
		this.#index = new CookieIndex(this.#cookie);
	}

	/** Slots in use: sockets, or counts of them (addCounted). */
	get size(): number {
		return this.#size;
	}

	/** Bytes the columns and the index have committed: the slots ever used, and the whole index. */
	get bytes(): number {
		return this.#used * COLUMN_BYTES_PER_SLOT + this.#index.bytes;
	}

	has(cookie: number): boolean { return this.#index.find(cookie) !== NONE; }

	/** The holder of `cookie`'s entry, if any. */
	holderOf(cookie: number): H | undefined {
		const i = this.#index.find(cookie);
		return i === NONE ? undefined : this.#holders.get(this.#holder[i]!);
	}

	/** When `cookie`'s entry expires (CLOCK_MONOTONIC µs), if it exists. */
	expiryOf(cookie: number): number | undefined {
		const i = this.#index.find(cookie);
		return i === NONE ? undefined : this.#expires[i];
	}

	/** Timewait sockets known in `netns` now. */
	countIn(netns: number): number { return this.#byNetns.get(netns) ?? 0; }

	/** Adds a timewait socket, or moves an existing one to `holder`. False when full (counted in `refused`). */
	add(cookie: number, holder: H, pool: PortPoolTally | undefined, netns: number, enteredUs: number, expiresUs: number): boolean {
		return this.#add(cookie, holder, pool, netns, enteredUs, expiresUs, 1);
	}

	#add(cookie: number, holder: H, pool: PortPoolTally | undefined, netns: number, enteredUs: number, expiresUs: number, weight: number): boolean {
		let i = this.#index.find(cookie);
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
			this.refused += weight;
			return false;
		}
		// Nothing linked: the wheel may start at this entry's time (a host up for months, a capture's
		// clock), so that the bucket window (BUCKET_WINDOW) holds it.
		if (this.#size === 0) this.#wheelFrom = Math.max(this.#wheelFrom, Math.floor(enteredUs / BUCKET_US));
		if (this.#freeHead !== NONE) {
			i = this.#freeHead;
			this.#freeHead = this.#next[i]!;
		} else {
			i = this.#used++;
		}
		this.#size++;
		this.#cookie[i] = cookie;
		this.#index.insert(cookie, i);
		this.#entered[i] = enteredUs;
		this.#expires[i] = expiresUs;
		this.#bucket[i] = this.#bucketOf(expiresUs); // modulo 2^32
		this.#holder[i] = this.#holders.ref(holder);
		this.#pool[i] = this.#pools.ref(pool);
		this.#netns[i] = netns;
		this.#mark[i] = cookie < 0 ? weight : this.#walkMark;
		this.#byNetns.set(netns, (this.#byNetns.get(netns) ?? 0) + weight);
		this.#hold(i, enteredUs);
		this.#link(i);
		return true;
	}

	/**
	 * `n` timewait sockets known by a count of the kernel's (no cookie, no timer), entered and expiring
	 * together: one slot for all of them (the agent holds a slot per key and reading, not per socket).
	 * Its cookie is below 0, which no socket has (the kernel's count from 1, net/core/sock_diag.c): no
	 * walk finds or removes it (endWalk). Returns how many were added: none when full (`refused`).
	 */
	addCounted(holder: H, pool: PortPoolTally | undefined, netns: number, enteredUs: number, expiresUs: number, n: number): number {
		if (n <= 0) return 0;
		return this.#add(--this.#countedCookie, holder, pool, netns, enteredUs, expiresUs, n) ? n : 0;
	}

	/** Counted sockets (addCounted) of `netns` expiring in (fromUs, toUs]: O(the slots in that span of the wheel). */
	countedExpiring(netns: number, fromUs: number, toUs: number): number {
		let n = 0;
		for (let b = Math.max(Math.ceil(fromUs / BUCKET_US), this.#wheelFrom); b <= Math.ceil(toUs / BUCKET_US); b++) {
			for (let i = this.#wheel.get(b) ?? NONE; i !== NONE; i = this.#next[i]!) {
				if (this.#cookie[i]! < 0 && this.#netns[i] === netns && this.#expires[i]! > fromUs && this.#expires[i]! <= toUs) n += this.#weight(i);
			}
		}
		return n;
	}

	/** `cookie` no longer counts in its port pool (its port left the range: ip_local_port_range narrowed). */
	leavePool(cookie: number, nowUs: number): void {
		const i = this.#index.find(cookie);
		if (i === NONE || this.#pool[i] === 0) return;
		this.#unhold(i, nowUs);
		this.#pools.unref(this.#pool[i]!);
		this.#pool[i] = 0;
		this.#hold(i, nowUs);
	}

	/** Re-arms the expiry (a walk read the kernel's timer). */
	setExpiry(cookie: number, expiresUs: number): void {
		const i = this.#index.find(cookie);
		if (i !== NONE) this.#rearm(i, expiresUs);
	}

	#rearm(i: number, expiresUs: number): void {
		this.#expires[i] = expiresUs;
		const bucket = this.#bucketOf(expiresUs);
		const was = this.#bucketAt(i);
		if (bucket === was) return;
		const isSameSecond = Math.ceil(bucket / BUCKETS_PER_SECOND) === Math.ceil(was / BUCKETS_PER_SECOND);
		this.#unlink(i);
		if (!isSameSecond) this.#count(i, -1);
		this.#bucket[i] = bucket; // modulo 2^32
		if (!isSameSecond) this.#count(i, +1);
		this.#link(i);
	}

	delete(cookie: number, nowUs: number): void {
		const i = this.#index.find(cookie);
		if (i !== NONE) this.#remove(i, nowUs);
	}

	/** Removes every entry whose expiry is at or before `nowUs`. */
	expire(nowUs: number): void {
		const upTo = Math.ceil(nowUs / BUCKET_US);
		if (upTo < this.#wheelFrom) return;
		// Only the last bucket (the millisecond holding nowUs) may be partly due; an entry not due in
		// an earlier one was clamped to the bucket window's end, and is linked again further on.
		let ahead: number[] | undefined;
		if (upTo - this.#wheelFrom <= BUCKETS_SCANNED_MAX) {
			for (let b = this.#wheelFrom; b <= upTo; b++) ahead = this.#expireBucket(b, upTo, nowUs, ahead);
		} else {
			// A jump (a capture's far-future timestamp, a suspended host): visit what exists, in order.
			const buckets = [...this.#wheel.keys()].filter((b) => b <= upTo).sort((a, b) => a - b);
			for (const b of buckets) ahead = this.#expireBucket(b, upTo, nowUs, ahead);
		}
		this.#wheelFrom = Math.max(this.#wheelFrom, upTo);
		if (!ahead) return;
		for (const i of ahead) {
			this.#bucket[i] = this.#bucketOf(this.#expires[i]!);
			this.#count(i, this.#weight(i));
			this.#link(i);
		}
	}

	/** Removes bucket b's due entries; those not due in a bucket before upTo are unlinked into `ahead`, which it returns. */
	#expireBucket(b: number, upTo: number, nowUs: number, ahead: number[] | undefined): number[] | undefined {
		for (let i = this.#wheel.get(b) ?? NONE; i !== NONE;) {
			const next = this.#next[i]!;
			this.expiryVisits++;
			if (this.#expires[i]! <= nowUs) (this.expired.add(this.#netns[i]!, this.#expires[i]!, this.#weight(i)), this.#remove(i, nowUs));
			else if (b < upTo) (this.#unlink(i), this.#count(i, -this.#weight(i)), (ahead ??= []).push(i));
			i = next;
		}
		return ahead;
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
		const i = this.#index.find(cookie);
		if (i === NONE) return undefined;
		this.#mark[i] = this.#walkMark;
		if (expiresUs !== undefined) this.#rearm(i, expiresUs);
		return this.#holders.get(this.#holder[i]!);
	}

	/** Removes the entries of `netns` that entered before `takenAtUs` and the walk did not find (counted ones stay: addCounted). */
	endWalk(netns: number, takenAtUs: number): number {
		let removed = 0;
		for (let i = 0; i < this.#used; i++) {
			if (this.#holder[i] === 0 || this.#netns[i] !== netns || this.#cookie[i]! < 0) continue; // < 0: counted, no walk finds it
			if (this.#mark[i] !== this.#walkMark && this.#entered[i]! < takenAtUs) {
				this.#remove(i, takenAtUs);
				removed++;
			}
		}
		return removed;
	}

	#bucketOf(expiresUs: number): number {
		// An expiry already past (a late event, a timer at 0) goes into the next bucket checked.
		return Math.min(Math.max(Math.ceil(expiresUs / BUCKET_US), this.#wheelFrom), this.#wheelFrom + BUCKET_WINDOW - 1);
	}

	/** Slot i's bucket, whole: the one in [#wheelFrom, #wheelFrom + 2^32) that the stored 32 bits name. */
	#bucketAt(i: number): number {
		return this.#wheelFrom + ((this.#bucket[i]! - (this.#wheelFrom % BUCKET_WINDOW)) >>> 0);
	}

	#remove(i: number, nowUs: number): void {
		this.#unlink(i);
		this.#unhold(i, nowUs);
		this.#holders.unref(this.#holder[i]!);
		this.#pools.unref(this.#pool[i]!);
		this.#holder[i] = 0;
		this.#pool[i] = 0;
		const netns = this.#netns[i]!;
		this.#byNetns.set(netns, this.#byNetns.get(netns)! - this.#weight(i));
		this.#index.delete(this.#cookie[i]!);
		this.#next[i] = this.#freeHead;
		this.#freeHead = i;
		this.#size--;
	}

	#link(i: number): void {
		const b = this.#bucketAt(i);
		const head = this.#wheel.get(b) ?? NONE;
		this.#prev[i] = NONE;
		this.#next[i] = head;
		if (head !== NONE) this.#prev[head] = i;
		this.#wheel.set(b, i);
	}

	#unlink(i: number): void {
		const prev = this.#prev[i]!;
		const next = this.#next[i]!;
		if (next !== NONE) this.#prev[next] = prev;
		if (prev !== NONE) this.#next[prev] = next;
		else if (next !== NONE) this.#wheel.set(this.#bucketAt(i), next);
		else this.#wheel.delete(this.#bucketAt(i));
	}

	#hold(i: number, nowUs: number): void {
		const w = this.#weight(i);
		const holder = this.#holders.get(this.#holder[i]!)!;
		holder.timeWait += w;
		holder.peakTimeWait = Math.max(holder.peakTimeWait, holder.timeWait);
		holder.lastChangeUs = nowUs;
		const pool = this.#pools.get(this.#pool[i]!);
		if (pool) {
			pool.timeWait += w;
			pool.holders.set(holder, (pool.holders.get(holder) ?? 0) + w);
		}
		this.#count(i, w);
	}

	#unhold(i: number, nowUs: number): void {
		const w = this.#weight(i);
		const holder = this.#holders.get(this.#holder[i]!)!;
		holder.timeWait -= w;
		holder.lastChangeUs = nowUs;
		const pool = this.#pools.get(this.#pool[i]!);
		if (pool) {
			pool.timeWait -= w;
			const n = pool.holders.get(holder)! - w;
			if (n === 0) pool.holders.delete(holder);
			else pool.holders.set(holder, n);
		}
		this.#count(i, -w);
	}

	#count(i: number, delta: number): void {
		const pool = this.#pools.get(this.#pool[i]!);
		if (!pool) return;
		// ceil(ceil(x / 1000) / 1000) = ceil(x / 10^6): the second of the expiry, clamped as the bucket is.
		const second = Math.ceil(this.#bucketAt(i) / BUCKETS_PER_SECOND);
		pool.expiring.add(second, delta);
	}

	/** The columns, `capacity` slots each, allocated once. */
	#reserve(capacity: number): void {
		this.#cookie = new Float64Array(capacity);
		this.#entered = new Float64Array(capacity);
		this.#expires = new Float64Array(capacity);
		this.#bucket = new Uint32Array(capacity);
		this.#holder = new Uint32Array(capacity);
		this.#pool = new Uint32Array(capacity);
		this.#netns = new Uint32Array(capacity);
		this.#prev = new Uint32Array(capacity);
		this.#next = new Uint32Array(capacity);
		this.#mark = new Uint32Array(capacity);
	}

	/** The sockets slot i stands for: a counted slot's count, else 1. */
	#weight(i: number): number {
		return this.#cookie[i]! < 0 ? this.#mark[i]! : 1;
	}
}
