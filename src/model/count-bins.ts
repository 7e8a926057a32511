/**
 * The kernel's counters second by second (docs/counting-in-the-kernel.md, "What user space would
 * do"): each reading of the current generation is subtracted from the one before, key by key, and
 * the differences go into a ring of BINS one-second bins per key. From the bins, the TIME_WAIT held
 * now: the entries of the last TIME_WAIT length, by substate, right to within a bin at each end
 * (where a per-socket model is exact). O(keys) a reading, never the event rate. Pure: seconds come in.
 */
import { COUNT_COLUMN as C, COUNT_COLUMNS, type CountTable } from '../event/counts.js';

/** Seconds of history per key: more than the longest TIME_WAIT length the bins answer for. */
export const BINS = 64;

/** How long an entry of each substate is held, in whole seconds (the wheel's slack included). */
export interface HeldLengths {
	/** Substate TIME_WAIT: 60 s plus the timer wheel's slack (kernel-facts §9). */
	timeWaitS: number;
	/**
	 * Substate FIN_WAIT2: the namespace's tcp_fin_timeout, as the per-socket model takes it (a peer's
	 * FIN that comes later re-arms the timer for 60 s with no tracepoint: kernel-facts §1.3).
	 */
	finWait2S: number;
}

interface KeyBins {
	/** The key's counters at the last reading of the current generation (0 after a retire). */
	last: Float64Array;
	/** TIME_WAIT and FIN_WAIT2 entries per second, interleaved: bin s at [2 (s % BINS)], [2 (s % BINS) + 1]. */
	entries: Float64Array;
	/** The last second written (bins after it, up to a reading's, are cleared when it comes). */
	head: number;
}

/** A key's counts since the reading before, in COUNT_COLUMN order; reused: keep nothing of it. */
export type DeltaVisitor = (key: string, delta: Float64Array) => void;

export class CountBins {
	readonly #keys = new Map<string, KeyBins>();
	readonly #delta = new Float64Array(COUNT_COLUMNS);

	/** Keys kept: those counted in the current generation, or within the last BINS seconds. */
	get size(): number {
		return this.#keys.size;
	}

	/**
	 * A reading of the current generation at `second` (whole seconds of the kernel's clock, rising):
	 * its differences from the reading before go into the bin of `second`, and to `onDelta`, key by
	 * key (those that changed): what cumulative counters built on the kernel's add.
	 */
	observe(second: number, current: CountTable, onDelta?: DeltaVisitor): void {
		for (const [key, row] of current.rows) this.#add(key, row, second, onDelta);
	}

	/**
	 * The final counts of the generation just retired (read after the flip, before the first
	 * reading of the new one): their last differences, then every key starts again from 0. Keys with
	 * nothing in their bins any more are forgotten here, when no reading can still refer to them.
	 */
	retire(second: number, final: CountTable, onDelta?: DeltaVisitor): void {
		this.observe(second, final, onDelta);
		for (const [key, k] of this.#keys) {
			k.last.fill(0);
			if (second - k.head >= BINS) this.#keys.delete(key);
		}
	}

	/** TIME_WAIT sockets of `key` held at `second`: the entries younger than their substate's length. */
	held(key: string, second: number, lengths: HeldLengths): number {
		const k = this.#keys.get(key);
		return k ? heldIn(k, second, lengths) : 0;
	}

	/** Calls `visit` with each key's held count at `second` (keys holding none included). */
	forEachHeld(second: number, lengths: HeldLengths, visit: (key: string, held: number) => void): void {
		for (const [key, k] of this.#keys) visit(key, heldIn(k, second, lengths));
	}

	#add(key: string, row: Float64Array, second: number, onDelta: DeltaVisitor | undefined): void {
		let k = this.#keys.get(key);
		if (!k) this.#keys.set(key, (k = { last: new Float64Array(COUNT_COLUMNS), entries: new Float64Array(2 * BINS), head: second }));
		roll(k, second);
		const at = 2 * (second % BINS);
		k.entries[at]! += row[C.timeWait]! - k.last[C.timeWait]!;
		k.entries[at + 1]! += row[C.finWait2]! - k.last[C.finWait2]!;
		if (onDelta) {
			const delta = this.#delta;
			let changed = false;
			for (let c = 0; c < COUNT_COLUMNS; c++) changed = (delta[c] = row[c]! - k.last[c]!) !== 0 || changed;
			if (changed) onDelta(key, delta);
		}
		k.last.set(row);
	}
}

/** Clears the bins of the seconds after the key's head up to `second`: nothing was counted in them. */
function roll(k: KeyBins, second: number): void {
	if (second <= k.head) return;
	if (second - k.head >= BINS) k.entries.fill(0);
	else for (let s = k.head + 1; s <= second; s++) k.entries.fill(0, 2 * (s % BINS), 2 * (s % BINS) + 2);
	k.head = second;
}

function heldIn(k: KeyBins, second: number, lengths: HeldLengths): number {
	if (lengths.timeWaitS > BINS || lengths.finWait2S > BINS) throw new RangeError(`the bins hold ${BINS} s`);
	let held = 0;
	// A bin holds what entered in the second before its reading: held while younger than the length.
	for (let s = second - Math.max(lengths.timeWaitS, lengths.finWait2S) + 1; s <= Math.min(second, k.head); s++) {
		if (s < 0 || k.head - s >= BINS) continue;
		const at = 2 * (s % BINS);
		if (second - s < lengths.timeWaitS) held += k.entries[at]!;
		if (second - s < lengths.finWait2S) held += k.entries[at + 1]!;
	}
	return held;
}
