/**
 * Which timer-wheel bucket the kernel counted an entry into, from outside the model: a test's own
 * reckoning of what twt_count.time_wait_odd and TWT_FLAG_ODD_BUCKET should say.
 */
import type { WheelClock } from '../../src/event/clock.js';
import { levelShift } from '../../src/model/wheel.js';

/**
 * Whether a 60 s timer the wheel runs at `endUs` (a bucket's end, on CLOCK_MONOTONIC) goes into an odd
 * bucket: that end's number, in buckets of the level, odd (time_wait_timer() in bpf/twtrace.bpf.c).
 * The clock dates it to within a tick; a bucket is hundreds of ticks long, so the nearest end is it.
 */
export function endsOddBucket(clock: WheelClock, endUs: number): boolean {
	const jiffies = clock.jiffies + 0.5 + ((endUs - clock.atUs) * clock.hz) / 1e6;
	return Math.round(jiffies / 2 ** levelShift(60 * clock.hz)) % 2 === 1;
}
