/**
 * Frames the flight recorder keeps for minutes, copied into a few large buffers instead of one
 * each. A frame of a few hundred bytes made by Buffer.allocUnsafe or Buffer.concat is a slice of
 * node's shared 8 KiB pool, and keeping the slice keeps the whole pool buffer: a quiet agent's
 * counts frame a second would hold 8 KiB each, 7 MiB over the recorder's 15 minutes. Here a slab is
 * freed (by the garbage collector) once the last frame in it is dropped; frames are dropped oldest
 * first, so at most the oldest and the newest slab are partly dead.
 */
export const SLAB_BYTES = 64 * 1024;

export class FrameSlab {
	readonly #slabBytes: number;
	#slab: Buffer | undefined;
	#used = 0;

	constructor(slabBytes = SLAB_BYTES) {
		this.#slabBytes = slabBytes;
	}

	/** A copy of `frame` to keep: in the current slab, or a buffer of its own when larger than a quarter of one. */
	keep(frame: Uint8Array): Buffer {
		if (frame.byteLength > this.#slabBytes / 4) {
			const own = Buffer.allocUnsafeSlow(frame.byteLength);
			own.set(frame);
			return own;
		}
		if (!this.#slab || this.#used + frame.byteLength > this.#slab.length) {
			this.#slab = Buffer.allocUnsafeSlow(this.#slabBytes);
			this.#used = 0;
		}
		this.#slab.set(frame, this.#used);
		const kept = this.#slab.subarray(this.#used, this.#used + frame.byteLength);
		this.#used += frame.byteLength;
		return kept;
	}
}
