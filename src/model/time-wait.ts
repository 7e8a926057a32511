/**
 * The TIME_WAIT population: every timewait socket twtrace knows of, by cookie, with its owner and
 * when it expires. Entries come from time_wait events (modelled expiry) and from iter/tcp walks
 * (exact set and timers); expiry runs on a timing wheel of one-second buckets, so each tick costs
 * only what expires. Pure: time is passed in.
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

export interface TimeWaitEntry<H extends TimeWaitHolder> {
	holder: H;
	pool: PortPoolTally | undefined;
	netns: number;
	/** CLOCK_MONOTONIC µs: when it entered TIME_WAIT (or was first seen by a walk). */
	enteredUs: number;
	expiresUs: number;
	bucket: number;
}

const US = 1_000_000;

export class TimeWaitPopulation<H extends TimeWaitHolder> {
	readonly #entries = new Map<number, TimeWaitEntry<H>>();
	readonly #wheel = new Map<number, number[]>();
	readonly #byNetns = new Map<number, number>();
	readonly #maxEntries: number;
	/** Buckets below this have been expired. */
	#wheelFrom = 0;
	/** Entries refused because the population was at maxEntries. */
	refused = 0;

	constructor(maxEntries: number) {
		this.#maxEntries = maxEntries;
	}

	get size(): number {
		return this.#entries.size;
	}

	get(cookie: number): TimeWaitEntry<H> | undefined {
		return this.#entries.get(cookie);
	}

	/** Timewait sockets known in `netns` now. */
	countIn(netns: number): number {
		return this.#byNetns.get(netns) ?? 0;
	}

	/** Adds a timewait socket, or moves an existing one to `holder`. False when full (counted in `refused`). */
	add(cookie: number, holder: H, pool: PortPoolTally | undefined, netns: number, enteredUs: number, expiresUs: number): boolean {
		const existing = this.#entries.get(cookie);
		if (existing) {
			this.#unhold(existing, enteredUs);
			existing.holder = holder;
			existing.pool = pool;
			this.#hold(existing, enteredUs);
			this.setExpiry(cookie, expiresUs);
			return true;
		}
		if (this.#entries.size >= this.#maxEntries) {
			this.refused++;
			return false;
		}
		const entry: TimeWaitEntry<H> = { holder, pool, netns, enteredUs, expiresUs, bucket: this.#bucketOf(expiresUs) };
		this.#entries.set(cookie, entry);
		this.#byNetns.set(netns, (this.#byNetns.get(netns) ?? 0) + 1);
		this.#hold(entry, enteredUs);
		this.#schedule(cookie, entry.bucket);
		return true;
	}

	/** Re-arms the expiry (a walk read the kernel's timer). */
	setExpiry(cookie: number, expiresUs: number): void {
		const e = this.#entries.get(cookie);
		if (!e) return;
		const bucket = this.#bucketOf(expiresUs);
		e.expiresUs = expiresUs;
		if (bucket === e.bucket) return;
		this.#count(e.pool, e.bucket, -1);
		e.bucket = bucket;
		this.#count(e.pool, bucket, +1);
		this.#schedule(cookie, bucket);
	}

	delete(cookie: number, nowUs: number): void {
		const e = this.#entries.get(cookie);
		if (!e) return;
		this.#entries.delete(cookie);
		this.#byNetns.set(e.netns, this.#byNetns.get(e.netns)! - 1);
		this.#unhold(e, nowUs);
		// Its wheel slot is skipped later: the cookie no longer maps to an entry with that bucket.
	}

	/** Removes every entry whose expiry is at or before `nowUs`. */
	expire(nowUs: number): void {
		const upTo = Math.ceil(nowUs / US);
		for (let b = this.#wheelFrom; b <= upTo; b++) {
			const cookies = this.#wheel.get(b);
			if (!cookies) continue;
			const isWholeBucketDue = b * US <= nowUs;
			const kept: number[] = [];
			for (const cookie of cookies) {
				const e = this.#entries.get(cookie);
				if (!e || e.bucket !== b) continue;
				if (isWholeBucketDue || e.expiresUs <= nowUs) this.delete(cookie, nowUs);
				else kept.push(cookie);
			}
			if (kept.length) this.#wheel.set(b, kept);
			else this.#wheel.delete(b);
		}
		this.#wheelFrom = Math.max(this.#wheelFrom, upTo);
	}

	/** Cookies of the entries in `netns` that entered before `beforeUs`. */
	*cookiesIn(netns: number, beforeUs: number): IterableIterator<number> {
		for (const [cookie, e] of this.#entries) if (e.netns === netns && e.enteredUs < beforeUs) yield cookie;
	}

	#bucketOf(expiresUs: number): number {
		// An expiry already past (a late event, a timer at 0) goes into the next bucket checked.
		return Math.max(Math.ceil(expiresUs / US), this.#wheelFrom);
	}

	#schedule(cookie: number, bucket: number): void {
		const list = this.#wheel.get(bucket);
		if (list) list.push(cookie);
		else this.#wheel.set(bucket, [cookie]);
	}

	#hold(e: TimeWaitEntry<H>, nowUs: number): void {
		e.holder.timeWait++;
		e.holder.peakTimeWait = Math.max(e.holder.peakTimeWait, e.holder.timeWait);
		e.holder.lastChangeUs = nowUs;
		if (e.pool) {
			e.pool.timeWait++;
			e.pool.holders.set(e.holder, (e.pool.holders.get(e.holder) ?? 0) + 1);
		}
		this.#count(e.pool, e.bucket, +1);
	}

	#unhold(e: TimeWaitEntry<H>, nowUs: number): void {
		e.holder.timeWait--;
		e.holder.lastChangeUs = nowUs;
		if (e.pool) {
			e.pool.timeWait--;
			const n = e.pool.holders.get(e.holder)! - 1;
			if (n === 0) e.pool.holders.delete(e.holder);
			else e.pool.holders.set(e.holder, n);
		}
		this.#count(e.pool, e.bucket, -1);
	}

	#count(pool: PortPoolTally | undefined, bucket: number, delta: number): void {
		if (!pool) return;
		const n = (pool.expiring.get(bucket) ?? 0) + delta;
		if (n === 0) pool.expiring.delete(bucket);
		else pool.expiring.set(bucket, n);
	}
}
