/**
 * Drains a mapped BPF ring buffer in pure JavaScript on a timer: no per-event native call and no
 * epoll wake-up: on the VMs twtrace is developed on, libbpf's ring_buffer__poll wake-ups (self-IPIs)
 * cost the workload 30 %, while a 10 ms timer drain costs about 2 % of one core (the drain alone:
 * bench/decode.ts, in bench/RESULTS.md).
 *
 * Record framing, kernel/bpf/ringbuf.c: an 8-byte header {u32 len | BUSY | DISCARD, u32 pg_off},
 * then the sample, the whole rounded up to 8 bytes. The kernel publishes a record by clearing BUSY
 * with release semantics; Atomics.load gives the matching acquire.
 */
import type { RingViews } from '../../native/ring-map.js';

const BUSY_BIT = 0x8000_0000;
const DISCARD_BIT = 0x4000_0000;
const HEADER_BYTES = 8;
/** Hand space back to the kernel at least this often within one long drain. */
const RELEASE_EVERY_BYTES = 256 * 1024;

/** Called once per committed record; `offset` indexes `memory`, valid only during the call. */
export type RecordHandler = (offset: number, length: number) => void;

export interface RingReaderOptions {
	/** Drain period, 5–20 ms is the measured sweet spot. */
	intervalMs: number;
	/** Called after each timer drain (counters, flushing, stop conditions). */
	afterDrain?: (records: number) => void;
}

export class RingReader {
	readonly #ring: RingViews;
	readonly #u32: Uint32Array;
	readonly #onRecord: RecordHandler;
	readonly #release: () => void;
	#timer: NodeJS.Timeout | undefined;
	#paused = false;
	#closed = false;

	/**
	 * @param release frees the mapping; called exactly once, by close(), after the last read.
	 */
	constructor(ring: RingViews, onRecord: RecordHandler, release: () => void) {
		this.#ring = ring;
		this.#u32 = new Uint32Array(ring.memory);
		this.#onRecord = onRecord;
		this.#release = release;
	}

	/** Starts the periodic drain. The timer does not keep the process alive on its own account. */
	start(options: RingReaderOptions): void {
		if (this.#closed || this.#timer) return;
		this.#timer = setInterval(() => {
			if (this.#paused || this.#closed) return;
			const n = this.drain();
			options.afterDrain?.(n);
		}, options.intervalMs);
	}

	/** While paused the ring fills up and the kernel counts what it cannot store: backpressure. */
	pause(): void {
		this.#paused = true;
	}

	resume(): void {
		this.#paused = false;
	}

	/**
	 * Hands every committed record to the handler, in order, and returns how many. Stops at the first
	 * record still being written (BUSY). Non-blocking; returns 0 after close().
	 */
	drain(): number {
		if (this.#closed) return 0;
		const { consumerPos, producerPos, dataOffset, dataBytes } = this.#ring;
		const u32 = this.#u32;
		let consumer = Number(Atomics.load(consumerPos, 0));
		const producer = Number(Atomics.load(producerPos, 0));
		let released = consumer;
		let records = 0;
		while (consumer < producer) {
			// Positions grow without wrapping; `%` keeps them exact (bitwise & would truncate to 32 bits).
			const at = dataOffset + (consumer % dataBytes);
			const header = Atomics.load(u32, at >>> 2) >>> 0;
			if (header & BUSY_BIT) break;
			const length = header & ~(BUSY_BIT | DISCARD_BIT);
			if (!(header & DISCARD_BIT)) {
				this.#onRecord(at + HEADER_BYTES, length);
				records++;
			}
			consumer += (length + HEADER_BYTES + 7) & ~7;
			if (consumer - released >= RELEASE_EVERY_BYTES) {
				Atomics.store(consumerPos, 0, BigInt(consumer));
				released = consumer;
			}
		}
		if (consumer !== released) Atomics.store(consumerPos, 0, BigInt(consumer));
		return records;
	}

	/** Stops the timer, drains what is left once, then releases the mapping. Idempotent. */
	close(): void {
		if (this.#closed) return;
		clearInterval(this.#timer);
		this.#timer = undefined;
		if (!this.#paused) this.drain();
		this.#closed = true;
		this.#release();
	}
}
