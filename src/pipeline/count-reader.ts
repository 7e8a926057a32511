/**
 * The kernel's counters, read on the agent's cadence (docs/counting-in-the-kernel.md, "What user
 * space would do"): the current generation at every reading, a generation flip once a minute (the
 * retired one read as final, then cleared), and the differences from one reading to the next
 * handed on key by key, binned per second on the way (model/count-bins.ts) for the TIME_WAIT held.
 *
 * A reading is two halves, so that the ring can be drained between them: take() reads the kernel,
 * deliver() hands the differences on. Every task a key names has its record in the ring before
 * the key is counted (current_task() in bpf/twtrace.bpf.c submits it first), so a drain after
 * take() has decoded every task the differences refer to.
 */
import { CountTable } from '../event/counts.js';
import { CountBins, type DeltaVisitor } from '../model/count-bins.js';
import type { KernelCounts } from '../tracer/counts.js';
import type { WheelClock } from '../event/clock.js';

/** What the reader needs of the kernel's counters (tracer/counts.ts KernelCounts); tests give fakes. */
export type CountSource = Pick<KernelCounts, 'read' | 'flip' | 'flips'> & { readonly wheel?: WheelClock };

/** Generations are flipped this often: the counters' keys are forgotten within two of them once idle. */
export const FLIP_EVERY_S = 60;

export class CountReader {
	readonly bins = new CountBins();
	readonly #source: CountSource;
	readonly #flipEveryS: number;
	#flippedAtS: number | undefined;
	/** Taken, not delivered yet: the retired generation's final counts (after a flip), the current one's. */
	#taken: { second: number; retired: CountTable | undefined; current: CountTable } | undefined;
	/** The current generation as last read, its rows reused from one reading to the next. */
	readonly #current = new CountTable();

	constructor(source: CountSource, flipEveryS = FLIP_EVERY_S) {
		this.#source = source;
		this.#flipEveryS = flipEveryS;
	}

	/** Keys in the current generation at the last reading. */
	get keys(): number {
		return this.#current.rows.size;
	}

	/**
	 * Reads the kernel at `second` (whole seconds, rising): flips the generations first when one has
	 * counted for FLIP_EVERY_S, reading the retired one whole and clearing it.
	 */
	take(second: number): void {
		this.#flippedAtS ??= second;
		let retired: CountTable | undefined;
		const current = this.#current;
		if (second - this.#flippedAtS >= this.#flipEveryS) {
			this.#source.flip();
			retired = this.#source.read('retired', new CountTable(), true);
			this.#flippedAtS = second;
			current.rows.clear(); // the new generation starts empty
		} else {
			// Its keys stay in the kernel until the flip (a hash, not an LRU): the rows are read into again.
			for (const row of current.rows.values()) row.fill(0);
		}
		this.#taken = { second, retired, current: this.#source.read('current', current) };
	}

	/** Hands on the differences of what take() read, key by key; nothing when nothing was taken. */
	deliver(onDelta?: DeltaVisitor): void {
		const taken = this.#taken;
		if (!taken) return;
		this.#taken = undefined;
		if (taken.retired) this.bins.retire(taken.second, taken.retired, onDelta);
		this.bins.observe(taken.second, taken.current, onDelta);
	}
}
