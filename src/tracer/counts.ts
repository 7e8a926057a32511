/**
 * Reads the kernel's counters (counting in the kernel, docs/counting-in-the-kernel.md): the two
 * generations of `counts`, one the programs count into (the slot of the array-of-maps `counts`
 * names it), the other retired. Every read is one bpf() call per 1,024 keys, whatever the event rate.
 */
import * as bpf from '../../native/libbpf.js';
import type { WheelClock } from '../event/clock.js';
import { CountTable } from '../event/counts.js';
import { COUNT_KEY_SIZE, COUNT_SIZE } from '../event/layout.generated.js';
import { setHostU32 } from '../../native/libc.js';

/** Keys a generation holds at most: owners × destinations active within one generation. */
export const COUNTS_MAX_KEYS = 16_384;

export class KernelCounts {
	readonly #slotFd: number;
	readonly #generationFds: readonly [number, number];
	/** Which of the two the slot names (counts_a at load). */
	#current: 0 | 1 = 0;
	#flips = 0;
	/** Read once a second: the batch buffers (230 KB) are made once. */
	readonly #buffers = bpf.batchBuffers(COUNT_KEY_SIZE, COUNT_SIZE);

	/** The timer wheel's clock (read_clock), where known: when the entries counted here end. */
	readonly wheel: WheelClock | undefined;

	/** `slotFd`: the array-of-maps; `generationFds`: counts_a (named by the slot at load), counts_b. */
	constructor(slotFd: number, generationFds: readonly [number, number], wheel?: WheelClock) {
		this.#slotFd = slotFd;
		this.#generationFds = generationFds;
		this.wheel = wheel;
	}

	/** How many times the generations were flipped. */
	get flips(): number {
		return this.#flips;
	}

	/**
	 * Points the programs at the other generation. Returns after an RCU grace period (the kernel's
	 * maybe_wait_bpf_programs() for a map-in-map update, docs/kernel-facts.md §10): from then on no
	 * program counts into the retired one, which read('retired') reads as final. The retired one
	 * must have been cleared (read('retired', table, true)) before: the programs count into it again.
	 */
	flip(): void {
		const key = Buffer.alloc(4);
		const value = Buffer.alloc(4);
		const next = this.#current === 0 ? 1 : 0;
		setHostU32(value, this.#generationFds[next]);
		bpf.mapUpdate(this.#slotFd, key, value);
		this.#current = next;
		this.#flips++;
	}

	/**
	 * Adds one generation's counters into `into`: the current one (still counting: a moment's
	 * reading), or the retired one (final since the last flip), cleared as it is read when `clear`.
	 * Clearing the current one is refused: an increment between the read and the delete would be lost.
	 */
	read(which: 'current' | 'retired', into = new CountTable(), clear = false): CountTable {
		if (clear && which === 'current') throw new Error('only the retired generation can be cleared');
		const fd = this.#generationFds[which === 'current' ? this.#current : 1 - this.#current]!;
		bpf.mapReadBatches(fd, COUNT_KEY_SIZE, COUNT_SIZE, clear, (keys, values, n) => into.addPacked(keys, values, n), this.#buffers);
		return into;
	}
}
