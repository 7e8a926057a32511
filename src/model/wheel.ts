/**
 * When the kernel really ends a TIME_WAIT entry it only counted (docs/kernel-facts.md §9): the timer
 * tcp_time_wait() arms for TCP_TIMEWAIT_LEN (60 s) goes into a bucket of the timer wheel's level 3
 * (HZ 250 or 100) or 4 (HZ 1000), and the wheel runs a bucket's timers together at the bucket's end:
 * an entry lives 60 s and up to a bucket (2.048 s at HZ 250) more, and entries leave in steps, one
 * bucket at a time. A model that expires each entry 60 s after its reading holds fewer than the
 * kernel by the rate times the mean slack (1.7 % at full churn in the bench), and a smooth line
 * where the kernel's count is a saw. With the wheel's clock (read_clock in bpf/twtrace.bpf.c: the
 * jiffies and CLOCK_MONOTONIC together, and CONFIG_HZ) the model ends each counted entry in the
 * kernel's bucket, to within half a tick: the reading does not say where in its tick it fell. So an
 * entry that came within half a tick of a bucket's edge may end a bucket early or late, and within
 * half a tick of a bucket's end the model may still hold the bucket the kernel just ran.
 *
 * A reading says how many entries came, not when: spread evenly over its span, a second's entries
 * that straddle a bucket's edge are shared between the two buckets by time, off by however unevenly
 * they came (up to a few hundred a bucket at 20,000 a second, docs/kernel-facts.md §9). Where the
 * kernel also counts how many went into an odd bucket (twt_count.time_wait_odd, fin_wait2_odd), and a reading spans
 * at most two buckets (one odd, one even: a bucket is 2.048 s at HZ 250, readings a second apart),
 * each bucket gets exactly its own (splitCounted).
 */
import type { WheelClock } from '../event/clock.js';

/** TCP_TIMEWAIT_LEN (include/net/tcp.h), in seconds. */
const TIMEWAIT_LEN_S = 60;

/**
 * The granularity (log2 jiffies) of the wheel level a timer `delta` jiffies ahead goes into:
 * kernel/time/timer.c calc_wheel_index(), LVL_START(n) = 63 << 3(n-1), as bpf/twtrace.bpf.c
 * wheel_fire_jiffies().
 */
export function levelShift(delta: number): number {
	let shift = 0;
	for (let start = 63; delta >= start && shift < 18; start *= 8) shift += 3;
	return shift;
}

/** A timer's length and the bucket of the level it lands in, in jiffies. */
interface TimerLevel {
	lengthJ: number;
	bucketJ: number;
}

export class TimeWaitWheel {
	readonly #clock: WheelClock;
	/**
	 * Whether the counts read with this clock say how many TIME_WAIT entries went into odd buckets
	 * (twt_count.time_wait_odd): a live kernel's do, and a capture's in this counters' layout; an
	 * older layout's do not (capture/format.ts READABLE_COUNT_LAYOUTS), and its entries are spread.
	 */
	readonly oddCounted: boolean;
	/** By timer length, s: TCP_TIMEWAIT_LEN's first (a FIN_WAIT2-substate entry's is tcp_fin_timeout). */
	readonly #levels = new Map<number, TimerLevel>();

	constructor(clock: WheelClock, oddCounted = true) {
		if (!(clock.hz > 0)) throw new RangeError(`a wheel clock of ${clock.hz} Hz`);
		this.#clock = clock;
		this.oddCounted = oddCounted;
		this.#level(TIMEWAIT_LEN_S);
	}

	/** A bucket's length for a 60 s timer, µs: how late after its 60 s an entry may end. */
	get bucketUs(): number {
		return this.#usOf(this.#level(TIMEWAIT_LEN_S).bucketJ) - this.#usOf(0);
	}

	/** CLOCK_MONOTONIC µs the wheel runs the timer of an entry that came at `enteredUs`, armed for `lengthS`. */
	endUs(enteredUs: number, lengthS = TIMEWAIT_LEN_S): number {
		const level = this.#level(lengthS);
		return this.#usOf((this.#bucketOf(enteredUs, level) + 1) * level.bucketJ);
	}

	/**
	 * `n` entries that came over (fromUs, toUs], their timers armed for `lengthS`, spread evenly (a
	 * reading of the counters says how many, not when), by the bucket each ends in. Returns how many
	 * buckets: bucket i's end (µs) is at into[2i], its m at into[2i + 1], the m summing to n (rounded as
	 * they accumulate, so that no entry is lost or made up). The caller's array, written in place and
	 * never emptied (emptying it frees its storage): an agent splits every key's entries at every
	 * reading, and a visitor closure per key, or a new array, was garbage each time.
	 */
	split(fromUs: number, toUs: number, n: number, into: number[], lengthS = TIMEWAIT_LEN_S): number {
		if (!(toUs > fromUs)) {
			into[0] = this.endUs(toUs, lengthS);
			into[1] = n;
			return 1;
		}
		const level = this.#level(lengthS);
		const spanUs = toUs - fromUs;
		let given = 0;
		let parts = 0;
		let startUs = fromUs;
		// Bucket k holds the timers whose nominal end (entry + length) is in [k, k + 1) buckets: it runs them at k + 1.
		for (let k = this.#bucketOf(fromUs, level); startUs < toUs; k++) {
			const stopUs = Math.max(startUs, Math.min(toUs, this.#entriesFromUs(k + 1, level)));
			const m = Math.round((n * (stopUs - fromUs)) / spanUs) - given;
			if (m > 0) (parts = this.#put(into, parts, k, m, level)), (given += m);
			startUs = stopUs;
		}
		return parts;
	}

	/**
	 * `n` entries over (fromUs, toUs] whose timers were armed for 60 s, `odd` of them counted by the
	 * kernel into an odd bucket (its end in buckets of the level, odd: time_wait_odd, fin_wait2_odd),
	 * as split() writes them. The
	 * buckets the span's entries can go into are taken a tick wider on each side (the clock dates the
	 * span to within half a tick, and the kernel read its jiffies a moment after arming the timer);
	 * each parity's entries go to its one bucket among them, or, where a span is longer than a bucket,
	 * to its buckets by time, as split() would. A parity with no bucket among them (a span dated
	 * wrong; an entry a walk recovered, counted when it was found) goes to the nearest of its own.
	 */
	splitCounted(fromUs: number, toUs: number, n: number, odd: number, into: number[]): number {
		const level = this.#level(TIMEWAIT_LEN_S);
		const tickUs = 1e6 / this.#clock.hz;
		const first = this.#bucketOf(Math.min(fromUs, toUs) - tickUs, level);
		const last = this.#bucketOf(toUs + tickUs, level);
		const oddN = Math.min(Math.max(odd, 0), n);
		const parts = this.#parity(1, oddN, first, last, fromUs, toUs, level, into, 0);
		return this.#parity(0, n - oddN, first, last, fromUs, toUs, level, into, parts);
	}

	/**
	 * The `n` entries of one parity (1: odd; bucket k ends at k + 1 buckets, so it is odd where k + 1
	 * is) written from into[2 parts] on, over the buckets of that parity in [first, last]: by each one's
	 * time within the span (whole, rounded as they accumulate, so that they sum to n); all to the
	 * nearest one where the span is empty; to the nearest bucket of the parity outside [first, last]
	 * where none lies in it. Returns how many parts are written in all. No array or closure is made:
	 * this runs for every key at every reading.
	 */
	#parity(parity: 0 | 1, n: number, first: number, last: number, fromUs: number, toUs: number, level: TimerLevel, into: number[], parts: number): number {
		if (n <= 0) return parts;
		const start = (((first + 1) % 2) + 2) % 2 === parity ? first : first + 1;
		if (start > last) {
			// first == last, of the other parity: this one's nearest is the bucket before it or after it.
			const intoFirstUs = fromUs - this.#entriesFromUs(first, level);
			const beforeNextUs = this.#entriesFromUs(last + 1, level) - toUs;
			return this.#put(into, parts, intoFirstUs <= beforeNextUs ? first - 1 : last + 1, n, level);
		}
		let totalUs = 0;
		for (let k = start; k <= last; k += 2) totalUs += this.#overlapUs(k, fromUs, toUs, level);
		if (totalUs <= 0) {
			// An empty span: all to the bucket of the parity nearest the one its end is in.
			const at = this.#bucketOf(toUs, level);
			let nearest = start;
			for (let k = start; k <= last; k += 2) if (Math.abs(k - at) < Math.abs(nearest - at)) nearest = k;
			return this.#put(into, parts, nearest, n, level);
		}
		let upToUs = 0;
		let given = 0;
		for (let k = start; k <= last; k += 2) {
			upToUs += this.#overlapUs(k, fromUs, toUs, level);
			const m = Math.round((n * upToUs) / totalUs) - given;
			if (m > 0) (parts = this.#put(into, parts, k, m, level)), (given += m);
		}
		return parts;
	}

	/** Writes bucket k's end and its `m` entries as part `parts`; returns the parts written. */
	#put(into: number[], parts: number, k: number, m: number, level: TimerLevel): number {
		into[2 * parts] = this.#usOf((k + 1) * level.bucketJ);
		into[2 * parts + 1] = m;
		return parts + 1;
	}

	/** How much of (fromUs, toUs] falls in bucket k's entries, µs. */
	#overlapUs(k: number, fromUs: number, toUs: number, level: TimerLevel): number {
		return Math.max(0, Math.min(toUs, this.#entriesFromUs(k + 1, level)) - Math.max(fromUs, this.#entriesFromUs(k, level)));
	}

	/** When entries start going into bucket k: those that came from then on end at its end, or later. */
	#entriesFromUs(k: number, level: TimerLevel): number {
		return this.#usOf(k * level.bucketJ - level.lengthJ);
	}

	#level(lengthS: number): TimerLevel {
		let level = this.#levels.get(lengthS);
		if (!level) {
			const lengthJ = lengthS * this.#clock.hz;
			this.#levels.set(lengthS, (level = { lengthJ, bucketJ: 2 ** levelShift(lengthJ) }));
		}
		return level;
	}

	/** The bucket (its start, in buckets of jiffies) an entry that came at `us` goes into. */
	#bucketOf(us: number, level: TimerLevel): number {
		return Math.floor((this.#jiffiesAt(us) + level.lengthJ) / level.bucketJ);
	}

	/** The jiffies at `us`, as a real number: read_clock read them within the tick after they last moved, taken as its middle. */
	#jiffiesAt(us: number): number {
		return this.#clock.jiffies + 0.5 + ((us - this.#clock.atUs) * this.#clock.hz) / 1e6;
	}

	#usOf(jiffies: number): number {
		return this.#clock.atUs + ((jiffies - this.#clock.jiffies - 0.5) * 1e6) / this.#clock.hz;
	}
}
