/**
 * Writes a capture as it is recorded: the header first, then each batch of events and each walk as
 * one frame, written through at once (a write(2) per frame), so a crash or a kill loses only what
 * was still in the ring. close() writes the trailer and fsyncs. Bounded: a frame that would pass
 * maxBytes is not written, and the writer reports itself full.
 */
import fs from 'node:fs';
import type { WalkRecord } from '../event/walk-record.js';
import { CaptureError, encodeEnd, encodeFrame, encodePreamble, WalkEncoder, type CaptureHeader, type CaptureTrailer } from './format.js';

export class CaptureWriter {
	readonly path: string;
	readonly #fd: number;
	readonly #maxBytes: number;
	#bytes = 0;
	#events = 0;
	#walks = 0;
	#full = false;
	#closed = false;
	readonly #walkEncoder = new WalkEncoder();

	/**
	 * Creates `path` (refusing an existing file unless `overwrite`) and writes the header. Throws a
	 * CaptureError with the reason when the file cannot be created.
	 */
	constructor(path: string, header: CaptureHeader, options: { maxBytes: number; overwrite?: boolean }) {
		this.path = path;
		this.#maxBytes = options.maxBytes;
		try {
			this.#fd = fs.openSync(path, options.overwrite ? 'w' : 'wx', 0o640);
		} catch (error) {
			const code = (error as NodeJS.ErrnoException).code;
			throw new CaptureError(code === 'EEXIST' ? `${path} exists; use --force to overwrite it` : `cannot create ${path}: ${(error as Error).message}`);
		}
		this.#write(encodePreamble(header));
	}

	get bytes(): number {
		return this.#bytes;
	}

	get events(): number {
		return this.#events;
	}

	get walks(): number {
		return this.#walks;
	}

	/** True once a frame was refused for --max-size: the recording should stop. */
	get full(): boolean {
		return this.#full;
	}

	/** Raw records (EVENT_SIZE each); false when refused (full). */
	writeEvents(records: Uint8Array, count: number): boolean {
		if (count === 0) return true;
		if (!this.#fits(records.byteLength)) return false;
		this.#write(encodeFrame('events', records));
		this.#events += count;
		return true;
	}

	writeWalk(walk: WalkRecord): boolean {
		if (!this.#fits(walk.sockets.byteLength + 4096)) return false;
		this.#write(this.#walkEncoder.encode(walk).frame); // a change against the previous walk, mostly
		this.#walks++;
		return true;
	}

	/** Writes the trailer (its totals are the writer's own), fsyncs and closes. Idempotent. */
	close(trailer: Omit<CaptureTrailer, 'events' | 'walks'>): void {
		if (this.#closed) return;
		this.#closed = true;
		try {
			this.#write(encodeEnd({ ...trailer, events: this.#events, walks: this.#walks }));
			fs.fsyncSync(this.#fd);
		} finally {
			fs.closeSync(this.#fd);
		}
	}

	#fits(payloadBytes: number): boolean {
		// Room is kept for the trailer (well under 1 KiB).
		if (this.#full || this.#bytes + payloadBytes + 12 + 1024 > this.#maxBytes) {
			this.#full = true;
			return false;
		}
		return true;
	}

	#write(buf: Buffer): void {
		let at = 0;
		while (at < buf.length) at += fs.writeSync(this.#fd, buf, at, buf.length - at);
		this.#bytes += buf.length;
	}
}
