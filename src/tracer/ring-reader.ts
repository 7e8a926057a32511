/**
 * Drains a mapped BPF ring buffer in pure JavaScript on a timer: no per-event native call and no
 * epoll wake-up: on the VMs twtrace is developed on, libbpf's ring_buffer__poll wake-ups (self-IPIs)
 * cost the workload 30 %, while a 10 ms timer drain costs about 2 % of one core (the drain alone:
 * bench/decode.ts, in bench/RESULTS.md). The timer's own wake-ups are not free either (a profile of
 * the idle agent: a fifth of its time in the kernel's wake-up and epoll paths): the drain paces
 * itself by what it finds (drainDelayMs), often when the ring fills, rarely when nothing happens.
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
	/** The shortest wait between drains (5–20 ms is the measured sweet spot under full load). */
	intervalMs: number;
	/** The longest wait, when the ring stays empty; default: maxDrainDelayMs() of the ring's size. */
	maxIntervalMs?: number;
	/** Called after each timer drain (counters, flushing, stop conditions). */
	afterDrain?: (records: number) => void;
}

/**
 * The fastest the ring is assumed to fill (bytes a millisecond): twtrace's records at full churn
 * here (every kind, both ends of 40k connections/s) come to about 13 MB/s; 16 leaves a margin.
 */
export const BURST_BYTES_PER_MS = 16_000;
/** The drain aims to find the ring about this full: far from overflowing, not woken for crumbs. */
const TARGET_FILL = 1 / 8;
/** However quiet the ring, a drain at least this often (the rest of the pipeline expects batches). */
const IDLE_DRAIN_MS = 250;

/**
 * The longest wait between drains for a ring of `ringBytes`: a burst at BURST_BYTES_PER_MS from an
 * empty ring must not fill a quarter of it before the next drain; at most IDLE_DRAIN_MS.
 */
export function maxDrainDelayMs(ringBytes: number, minMs: number): number {
	return Math.max(minMs, Math.min(IDLE_DRAIN_MS, Math.floor(ringBytes / 4 / BURST_BYTES_PER_MS)));
}

/**
 * The wait before the next drain, from what the last one found: `drainedBytes` arrived in
 * `elapsedMs`; the next drain comes when the ring would be TARGET_FILL full at that rate, within
 * [minMs, maxMs]. Pure: a quiet ring is drained rarely, a busy one often, the wake-ups follow the work.
 */
export function drainDelayMs(drainedBytes: number, elapsedMs: number, ringBytes: number, minMs: number, maxMs: number): number {
	const bytesPerMs = drainedBytes / Math.max(elapsedMs, 1);
	const ms = bytesPerMs > 0 ? (TARGET_FILL * ringBytes) / bytesPerMs : maxMs;
	return Math.round(Math.min(maxMs, Math.max(minMs, ms)));
}

export class RingReader {
	readonly #ring: RingViews;
	readonly #u32: Uint32Array;
	readonly #onRecord: RecordHandler;
	readonly #release: () => void;
	#timer: NodeJS.Timeout | undefined;
	#tick: (() => void) | undefined;
	#paused = false;
	#closed = false;
	/** Bytes of the ring consumed so far (records, headers, discarded ones): the pace of the drain. */
	#drainedBytes = 0;

	/**
	 * @param release frees the mapping; called exactly once, by close(), after the last read.
	 */
	constructor(ring: RingViews, onRecord: RecordHandler, release: () => void) {
		this.#ring = ring;
		this.#u32 = new Uint32Array(ring.memory);
		this.#onRecord = onRecord;
		this.#release = release;
	}

	/**
	 * Starts the periodic drain, each wait set by drainDelayMs() from what the last drain found, so
	 * that wake-ups follow the work. Drains on demand (drain()) count too.
	 */
	start(options: RingReaderOptions): void {
		if (this.#closed || this.#timer) return;
		const minMs = options.intervalMs;
		const maxMs = options.maxIntervalMs ?? maxDrainDelayMs(this.#ring.dataBytes, minMs);
		let delayMs = minMs;
		let lastAt = Date.now();
		let lastBytes = this.#drainedBytes;
		const tick = () => {
			if (this.#closed) return;
			if (!this.#paused) {
				const n = this.drain(true);
				options.afterDrain?.(n);
				const now = Date.now();
				delayMs = drainDelayMs(this.#drainedBytes - lastBytes, now - lastAt, this.#ring.dataBytes, minMs, maxMs);
				[lastAt, lastBytes] = [now, this.#drainedBytes];
			}
			this.#timer = setTimeout(tick, this.#paused ? minMs : delayMs);
		};
		this.#tick = tick;
		this.#timer = setTimeout(tick, delayMs);
	}

	/** While paused the ring fills up and the kernel counts what it cannot store: backpressure. */
	pause(): void {
		this.#paused = true;
	}

	/** Drains at once if the timer runs: the reader caught up, and the ring has been filling meanwhile. */
	resume(): void {
		if (!this.#paused) return;
		this.#paused = false;
		if (this.#timer && this.#tick) {
			clearTimeout(this.#timer);
			this.#timer = setTimeout(this.#tick, 0);
		}
	}

	/**
	 * Hands every committed record to the handler, in order, and returns how many. Stops at the first
	 * record still being written (BUSY). Non-blocking; returns 0 after close().
	 *
	 * With `untilPaused` (the timer's drains, the pipeline's upkeep) the drain also stops when the
	 * handler pauses the reader (a consumer that cannot keep up, told so by what it was just handed):
	 * what is left stays in the ring, where it costs nothing, instead of piling up in the consumer's
	 * memory (bench: `trace | slow reader` held 500 MB of queued output and spent 65 % of its time in
	 * GC). Without it the drain reads everything: stop and the walks must not leave events behind.
	 */
	drain(untilPaused = false): number {
		if (this.#closed) return 0;
		const { consumerPos, producerPos, dataOffset, dataBytes } = this.#ring;
		const u32 = this.#u32;
		let consumer = Number(Atomics.load(consumerPos, 0));
		const from = consumer;
		const producer = Number(Atomics.load(producerPos, 0));
		let released = consumer;
		let records = 0;
		while (consumer < producer) {
			// Positions grow without wrapping; `%` keeps them exact (bitwise & would truncate to 32 bits).
			const at = dataOffset + (consumer % dataBytes);
			const header = Atomics.load(u32, at >>> 2) >>> 0;
			if (header & BUSY_BIT) break;
			const length = header & ~(BUSY_BIT | DISCARD_BIT);
			consumer += (length + HEADER_BYTES + 7) & ~7;
			if (!(header & DISCARD_BIT)) {
				this.#onRecord(at + HEADER_BYTES, length);
				records++;
				if (untilPaused && this.#paused) break;
			}
			if (consumer - released >= RELEASE_EVERY_BYTES) {
				Atomics.store(consumerPos, 0, BigInt(consumer));
				released = consumer;
			}
		}
		if (consumer !== released) Atomics.store(consumerPos, 0, BigInt(consumer));
		this.#drainedBytes += consumer - from;
		return records;
	}

	/** Stops the timer, drains what is left once, then releases the mapping. Idempotent. */
	close(): void {
		if (this.#closed) return;
		clearTimeout(this.#timer);
		this.#timer = undefined;
		if (!this.#paused) this.drain();
		this.#closed = true;
		this.#release();
	}
}
