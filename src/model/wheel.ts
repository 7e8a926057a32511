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
	/** By timer length, s: TCP_TIMEWAIT_LEN's first (a FIN_WAIT2-substate entry's is tcp_fin_timeout). */
	readonly #levels = new Map<number, TimerLevel>();

	constructor(clock: WheelClock) {
		if (!(clock.hz > 0)) throw new RangeError(`a wheel clock of ${clock.hz} Hz`);
		this.#clock = clock;
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
		const { lengthJ, bucketJ } = level;
		const spanUs = toUs - fromUs;
		let given = 0;
		let parts = 0;
		let startUs = fromUs;
		// Bucket k holds the timers whose nominal end (entry + length) is in [k, k + 1) buckets: it runs them at k + 1.
		for (let k = this.#bucketOf(fromUs, level); startUs < toUs; k++) {
			const stopUs = Math.max(startUs, Math.min(toUs, this.#usOf((k + 1) * bucketJ - lengthJ)));
			const m = Math.round((n * (stopUs - fromUs)) / spanUs) - given;
			if (m > 0) (into[2 * parts] = this.#usOf((k + 1) * bucketJ)), (into[2 * parts + 1] = m), parts++, (given += m);
			startUs = stopUs;
		}
		return parts;
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
