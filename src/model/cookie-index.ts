/**
 * The TIME_WAIT population's index by socket cookie (time-wait.ts): open addressing with linear
 * probing over slot numbers, the cookies themselves read from the population's column (no copy).
 * Backward-shift deletion leaves no tombstones, so lookups never slow down with churn. Pure.
 */

/** Returned by find() for a cookie not in the index. */
export const NOT_FOUND = 0xffff_ffff;
/** The index doubles when it would be more than this full. */
const INDEX_LOAD = 2 / 3;
/** The first index: a population holding a few sockets costs a few kilobytes. */
const FIRST_INDEX_SLOTS = 2048;

export class CookieIndex {
	/** The population's cookie column: slot → cookie. */
	readonly #cookie: Float64Array;
	/** Slot + 1, 0 empty. A power of two long, at most INDEX_LOAD full. */
	#index = new Uint32Array(FIRST_INDEX_SLOTS);
	#size = 0;

	constructor(cookies: Float64Array) {
		this.#cookie = cookies;
	}

	get bytes(): number {
		return this.#index.byteLength;
	}

	/** The slot holding `cookie`, or NOT_FOUND. */
	find(cookie: number): number {
		const mask = this.#index.length - 1;
		for (let s = this.#slotOf(cookie); ; s = (s + 1) & mask) {
			const v = this.#index[s]!;
			if (v === 0) return NOT_FOUND;
			if (this.#cookie[v - 1] === cookie) return v - 1;
		}
	}

	/** Indexes slot `i`, whose cookie is `cookie` (not indexed yet). */
	insert(cookie: number, i: number): void {
		if ((this.#size + 1) > this.#index.length * INDEX_LOAD) {
			// Twice as large, every slot of the old index hashed into it again.
			const old = this.#index;
			this.#index = new Uint32Array(old.length * 2);
			for (const v of old) if (v !== 0) this.#place(this.#cookie[v - 1]!, v - 1);
		}
		this.#place(cookie, i);
		this.#size++;
	}

	delete(cookie: number): void {
		const mask = this.#index.length - 1;
		let s = this.#slotOf(cookie);
		for (; this.#index[s] !== 0; s = (s + 1) & mask) if (this.#cookie[this.#index[s]! - 1] === cookie) break;
		if (this.#index[s] === 0) return;
		this.#size--;
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

	#place(cookie: number, i: number): void {
		const mask = this.#index.length - 1;
		let s = this.#slotOf(cookie);
		while (this.#index[s] !== 0) s = (s + 1) & mask;
		this.#index[s] = i + 1;
	}

	#slotOf(cookie: number): number {
		// Cookies are a counter (net/core/sock_diag.c): mix both halves so that consecutive ones spread.
		let h = Math.imul((cookie >>> 0) ^ Math.imul(Math.floor(cookie / 0x1_0000_0000), 0x9e3779b1), 0x85ebca6b);
		h ^= h >>> 13;
		h = Math.imul(h, 0xc2b2ae35);
		h ^= h >>> 16;
		return h & (this.#index.length - 1);
	}
}
