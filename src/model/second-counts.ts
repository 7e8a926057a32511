/**
 * Counts by whole second, for seconds that arrive roughly rising and leave within a window: a port
 * pool's TIME_WAIT sockets by the second they expire in (60 s and a timer-wheel bucket ahead when they
 * enter, gone when they expire). Kept in a ring of RING seconds from `#from`, which moves on over
 * seconds that hold nothing; a second the ring cannot hold (far ahead of seconds still held, or left
 * behind by the ring) goes to a map. A map alone, a key added and one deleted every second, rebuilt
 * its table as the deletions piled up: garbage that outlived V8's young generation every minute, per
 * destination (docs/counting-in-the-kernel.md, "What fed the old space"). The ring allocates nothing.
 */

/** Seconds the ring holds: more than TIME_WAIT's 60 s and the wheel's slack ahead, with room behind for expiries not yet run. */
export const RING_SECONDS = 128;

export class SecondCounts {
	readonly #ring = new Float64Array(RING_SECONDS);
	/** The ring's first second: it holds [#from, #from + RING_SECONDS), second s at s mod RING_SECONDS. */
	#from = 0;
	/** Slots of the ring holding a count other than 0. */
	#held = 0;
	/** Seconds outside the ring. */
	readonly #outside = new Map<number, number>();

	/** Seconds holding a count other than 0. */
	get size(): number {
		return this.#held + this.#outside.size;
	}

	/** Seconds kept outside the ring (0 while the seconds move as TIME_WAIT's do). */
	get outside(): number {
		return this.#outside.size;
	}

	get(second: number): number {
		return this.#inRing(second) ? this.#ring[slot(second)]! : this.#outside.get(second) ?? 0;
	}

	/** Adds `delta` (negative: removes) to `second`'s count. */
	add(second: number, delta: number): void {
		if (second >= this.#from + RING_SECONDS) this.#moveOn(second - RING_SECONDS + 1);
		if (this.#inRing(second)) {
			const i = slot(second);
			const before = this.#ring[i]!;
			const after = before + delta;
			this.#ring[i] = after;
			if (before === 0 && after !== 0) this.#held++;
			else if (before !== 0 && after === 0) this.#held--;
			return;
		}
		const n = (this.#outside.get(second) ?? 0) + delta;
		if (n === 0) this.#outside.delete(second);
		else this.#outside.set(second, n);
	}

	/** Calls `visit(n, second)` for each second holding a count (the ring's in rising order, then the others'), as Map.forEach does. */
	forEach(visit: (n: number, second: number) => void): void {
		if (this.#held > 0) {
			for (let s = this.#from; s < this.#from + RING_SECONDS; s++) {
				const n = this.#ring[slot(s)]!;
				if (n !== 0) visit(n, s);
			}
		}
		this.#outside.forEach(visit);
	}

	/** [second, count] pairs, rising (for tests and messages: it allocates). */
	entries(): [second: number, n: number][] {
		const out: [number, number][] = [];
		this.forEach((n, s) => out.push([s, n]));
		return out.sort((a, b) => a[0] - b[0]);
	}

	#inRing(second: number): boolean {
		return second >= this.#from && second < this.#from + RING_SECONDS;
	}

	/**
	 * Moves the ring's first second on to `from` if the seconds it leaves behind hold nothing (they
	 * have expired, as TIME_WAIT's do before 60 s more have passed); else the ring stays, and the
	 * second that asked goes to the map.
	 */
	#moveOn(from: number): void {
		if (this.#held > 0) {
			for (let s = this.#from; s < Math.min(from, this.#from + RING_SECONDS); s++) if (this.#ring[slot(s)] !== 0) return;
		}
		this.#from = from;
		// Seconds the map held ahead of the old ring that the new one covers are the ring's now.
		if (this.#outside.size > 0) {
			for (const [second, n] of this.#outside) {
				if (!this.#inRing(second)) continue;
				this.#outside.delete(second);
				this.add(second, n);
			}
		}
	}
}

function slot(second: number): number {
	const i = second % RING_SECONDS;
	return i < 0 ? i + RING_SECONDS : i;
}
