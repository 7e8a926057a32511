/**
 * A fixed-size buffer raw records are appended to and taken from now and then, by a consumer that
 * may keep what it takes (the session's batches of raw records, the flight recorder's chunks).
 *
 * Taking a mostly empty one (a quiet ring drained every few hundred ms, a quiet second) copies the
 * records out to their size and keeps the buffer for the next ones: a quiet agent allocates no large
 * buffer per drain (allocating one each time showed up as page faults and full GCs in a perf profile
 * of `serve` at 10 connections/s). Taking a fuller one hands the buffer itself over, with no copy at
 * high rates, and the next append allocates another, unless a consumer done with one it took gave
 * it back (recycle(): the flight recorder's oldest chunk, dropped as a new one fills).
 */
import { EVENT_SIZE } from './layout.generated.js';

export class RecordStaging {
	readonly capacity: number;
	#buffer: Buffer | undefined;
	#words: Uint32Array | undefined;
	#bytes = 0;
	/** A buffer handed back by recycle(), for the next append to use instead of allocating. */
	#spare: Buffer | undefined;

	constructor(capacityBytes: number) {
		this.capacity = capacityBytes;
	}

	/** Bytes appended since the last take(). */
	get bytes(): number {
		return this.#bytes;
	}

	get full(): boolean {
		return this.#bytes >= this.capacity;
	}

	/** Where to append, from offset `bytes` on; then advance(). */
	get buffer(): Buffer {
		if (this.#buffer) return this.#buffer;
		this.#buffer = this.#spare ?? Buffer.allocUnsafeSlow(this.capacity); // never from the shared pool: recycle() can tell its own
		this.#spare = undefined;
		return this.#buffer;
	}

	/** The same memory as 32-bit words, for records copied a word at a time. */
	get words(): Uint32Array {
		const b = this.buffer;
		return (this.#words ??= new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4));
	}

	/**
	 * Appends the record (EVENT_SIZE bytes) at byte `offset` of ring memory, a word at a time (records
	 * are 8-byte aligned in the ring, BPF_RINGBUF_HDR_SZ): no view object nor native call per record.
	 * Returns the byte offset it was written at.
	 */
	appendRecord(ring: Uint32Array, offset: number): number {
		const at = this.#bytes;
		const dst = this.words;
		const to = at / 4;
		const from = offset / 4;
		for (let k = 0; k < EVENT_SIZE / 4; k++) dst[to + k] = ring[from + k]!;
		this.#bytes += EVENT_SIZE;
		return at;
	}

	advance(bytes: number): void {
		this.#bytes += bytes;
	}

	/** What was appended, as a Buffer of its own; undefined when nothing was. */
	take(): Buffer | undefined {
		if (this.#bytes === 0 || !this.#buffer) return undefined;
		const used = this.#buffer.subarray(0, this.#bytes);
		this.#bytes = 0;
		if (used.length < this.capacity / 2) return Buffer.from(used);
		this.#buffer = undefined;
		this.#words = undefined;
		return used;
	}

	/**
	 * Gives back what a take() handed over whole (at least half full), once its taker keeps nothing of
	 * it: the next append writes into it instead of allocating. At most one is kept; others are left
	 * to the garbage collector. A buffer of another size is ignored.
	 */
	recycle(taken: Buffer): void {
		if (this.#spare || taken.buffer === this.#buffer?.buffer || taken.byteOffset !== 0 || taken.buffer.byteLength !== this.capacity) return;
		this.#spare = Buffer.from(taken.buffer, 0, this.capacity);
	}
}
