/**
 * How many TIME_WAIT entries the model expired lately in each namespace, by their expiry time: what
 * the kernel may not have expired yet. The model removes an entry at its timer's expiry exactly; the
 * kernel's timer runs from the timer softirq, which falls behind under load (at 15,000 expiries/s the
 * kernel's count was seen 1,096 and 5,288 above the model's, and equal at the next check: a lag of up to
 * about 350 ms); a model of counted entries runs seconds from them (walk-plan.ts COUNTED_LATE_US).
 * Slots of 100 ms per namespace: bounded, O(1) per expiry. Pure.
 */
const SLOT_US = 100_000;
/** Kept: the longest span asked (walk-plan.ts COUNTED_LATE_US) and a slot. */
const SLOTS = 71;

/** The span counted unless asked for another: one second. */
export const RECENT_EXPIRY_US = 1_000_000;

export class RecentExpiries {
	readonly #byNetns = new Map<number, { slot: Float64Array; count: Uint32Array }>();

	/** The model expired `n` entries of `netns` whose timer fired at `expiresUs`. */
	add(netns: number, expiresUs: number, n = 1): void {
		let t = this.#byNetns.get(netns);
		if (!t) this.#byNetns.set(netns, (t = { slot: new Float64Array(SLOTS).fill(-1), count: new Uint32Array(SLOTS) }));
		const key = Math.floor(expiresUs / SLOT_US);
		const s = key % SLOTS;
		if (t.slot[s] !== key) {
			if (t.slot[s]! > key) return; // older than the slots kept
			t.slot[s] = key;
			t.count[s] = 0;
		}
		t.count[s]! += n;
	}

	/** Entries of `netns` expired with a timer within `spanUs` (at most 7 s) before `nowUs`. */
	since(netns: number, nowUs: number, spanUs = RECENT_EXPIRY_US): number {
		const t = this.#byNetns.get(netns);
		if (!t) return 0;
		const from = Math.floor((nowUs - Math.min(spanUs, (SLOTS - 1) * SLOT_US)) / SLOT_US);
		let n = 0;
		for (let s = 0; s < SLOTS; s++) if (t.slot[s]! >= from) n += t.count[s]!;
		return n;
	}
}
