/**
 * How the flight recorder makes its counts frames: the readings of one second summed per key (one
 * frame a second, whatever the scrapes), encoded once the second is over as a capture holds them
 * (capture/counts-frame.ts: only the counters that moved, each key named by an id), and kept in
 * slabs (frame-slab.ts). The recorder keeps a frame a second for its whole span (15 minutes by
 * default), so their bytes are most of what it holds; naming a key by its id (a byte or two) instead
 * of its 56 bytes, second after second, is what keeps them small (README, the soak).
 *
 * The ids are this agent's own: a served window starts with a keys frame (keysFrame()) that defines
 * every id known, so it stands alone. A key no kept frame names any more is forgotten (prune()).
 */
import { encodeCounts, encodeKeys } from '../capture/format.js';
import { COUNT_COLUMNS } from '../event/counts.js';
import { COUNT_KEY_SIZE } from '../event/layout.generated.js';
import { FrameSlab } from './frame-slab.js';

/** What a key known by id costs (its hex string, the map's entry and the id's object), for the recorder's byte bound. */
export const KEY_ID_BYTES = 256;

export class CountsFrames {
	/**
	 * The differences of the readings in the second now open, summed per key (hex of struct
	 * twt_count_key). Rows are kept from second to second and zeroed when taken: the same keys
	 * come every second, and a map cleared and refilled every second was garbage every second. A key
	 * named in none of the second's readings has a row of zeros (a reading names only keys that moved).
	 */
	readonly #second = new Map<string, Float64Array>();
	/** Keys named in the second now open. */
	#named = 0;
	#secondOf = -1;
	#secondAtUs = 0;
	readonly #slab = new FrameSlab();
	/** The id each key is named by, and the reading of the latest frame that named it. */
	readonly #keyIds = new Map<string, { id: number; lastUs: number }>();
	#nextKeyId = 0;
	/** Keys known after the latest pruning: the next waits until there are twice as many, and 256 more. */
	#keysPruned = 0;

	/** Whether a reading at `atUs` opens another second: the one open must be taken first. */
	opensSecond(atUs: number): boolean {
		return this.#named > 0 && Math.floor(atUs / 1e6) !== this.#secondOf;
	}

	/** Whether the second open is over at `nowUs`. */
	overAt(nowUs: number): boolean {
		return this.#named > 0 && Math.floor(nowUs / 1e6) > this.#secondOf;
	}

	/** A reading at `atUs` begins (after take() when opensSecond()). */
	begin(atUs: number): void {
		this.#secondOf = Math.floor(atUs / 1e6);
		this.#secondAtUs = atUs;
	}

	/** One key's differences in the reading begun (`delta` is reused by the caller: copied here). */
	add(key: string, delta: Float64Array): void {
		let row = this.#second.get(key);
		if (!row) this.#second.set(key, (row = new Float64Array(COUNT_COLUMNS)));
		const wasZero = isZero(row);
		for (let c = 0; c < COUNT_COLUMNS; c++) row[c]! += delta[c]!;
		if (wasZero && !isZero(row)) this.#named++;
	}

	/** The open second's counts as a frame at its last reading (kept in a slab), or nothing when none came. */
	take(): { atUs: number; frame: Buffer } | undefined {
		const n = this.#named;
		if (n === 0) return undefined;
		const keys = Buffer.allocUnsafe(n * COUNT_KEY_SIZE);
		const values = new Float64Array(n * COUNT_COLUMNS);
		const ids = new Uint32Array(n);
		let i = 0;
		for (const [hex, row] of this.#second) {
			if (isZero(row)) continue;
			keys.write(hex, i * COUNT_KEY_SIZE, COUNT_KEY_SIZE, 'hex');
			values.set(row, i * COUNT_COLUMNS);
			ids[i++] = this.#keyId(hex, this.#secondAtUs);
			row.fill(0);
		}
		// Rows of keys no longer named go once they are most of the map (amortised: one pass over it).
		if (this.#second.size > 2 * n + 64) for (const [hex, row] of this.#second) if (isZero(row)) this.#second.delete(hex);
		this.#named = 0;
		// As many rows as were named, unless differences cancelled out (a row back to zeros is left out).
		const frame = encodeCounts(this.#secondAtUs, keys.subarray(0, i * COUNT_KEY_SIZE), values.subarray(0, i * COUNT_COLUMNS), ids.subarray(0, i));
		return { atUs: this.#secondAtUs, frame: this.#slab.keep(frame) };
	}

	/** The id of the key `hex` (a new one gets the next), named by a frame read at `atUs`. */
	#keyId(hex: string, atUs: number): number {
		let known = this.#keyIds.get(hex);
		if (!known) {
			// u32 ids: four billion keys, at the kernel's 16,384 a generation at most, outlast any agent.
			known = { id: this.#nextKeyId++ >>> 0, lastUs: atUs };
			this.#keyIds.set(hex, known);
		}
		known.lastUs = atUs;
		return known.id;
	}

	/** Bytes the ids cost. */
	get keyBytes(): number {
		return this.#keyIds.size * KEY_ID_BYTES;
	}

	/** Whether keys were named since the latest pruning (a pruning now may free some). */
	get prunable(): boolean {
		return this.#keyIds.size > this.#keysPruned;
	}

	/** Whether enough keys came since the latest pruning to prune again (amortised: a pass over them all). */
	get duePruning(): boolean {
		return this.#keyIds.size > 2 * this.#keysPruned + 256;
	}

	/** Forgets the keys no kept frame names: those last named before `oldestUs`, the oldest frame kept. */
	prune(oldestUs: number): void {
		for (const [hex, known] of this.#keyIds) if (known.lastUs < oldestUs) this.#keyIds.delete(hex);
		this.#keysPruned = this.#keyIds.size;
	}

	/** The keys frame a served window starts with: every id known (a superset of those its frames name). */
	keysFrame(): Buffer | undefined {
		if (this.#keyIds.size === 0) return undefined;
		return encodeKeys([...this.#keyIds].map(([hex, { id }]) => [id, Buffer.from(hex, 'hex')] as const));
	}
}

function isZero(row: Float64Array): boolean {
	for (let c = 0; c < row.length; c++) if (row[c] !== 0) return false;
	return true;
}
