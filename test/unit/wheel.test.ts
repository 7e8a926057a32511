/**
 * Counted TIME_WAIT entries end where the kernel's timer wheel ends them (src/model/wheel.ts,
 * docs/kernel-facts.md §9). The kernel here is simulated as kernel/time/timer.c runs it: an entry
 * at jiffy j is armed to j + 60 HZ, goes into the level its 60 s pick, and is run at the end of
 * its bucket; it counts how many went into odd buckets (time_wait_odd, fin_wait2_odd). The model only reads counts,
 * as the agent does, and must hold what that kernel holds.
 */
import test from 'ava';
import { COUNT_COLUMN, COUNT_COLUMNS, type CountKey } from '../../src/event/counts.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { levelShift, TimeWaitWheel } from '../../src/model/wheel.js';

const S = 1_000_000;
const T0 = 5000 * S;
const BOOT_US = 123_456;
const KEY: CountKey = { netns: 1, blamed: 7, cgroupId: 0, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', port: 7101, side: 'client' };

/** A kernel whose jiffies count from `bootUs` at `hz`: when the wheel really runs an entry's timer. */
function kernel(hz: number, bootUs: number) {
	const jiffiesAt = (us: number) => Math.floor(((us - bootUs) * hz) / 1e6);
	const shift = levelShift(60 * hz);
	/** The bucket (its end, in buckets of the level) the wheel runs an entry's timer at: time_wait_timer() in bpf/twtrace.bpf.c. */
	const bucketEnd = (enteredUs: number) => Math.floor((jiffiesAt(enteredUs) + 60 * hz) / 2 ** shift) + 1;
	return {
		endUs: (enteredUs: number): number => bootUs + (bucketEnd(enteredUs) * 2 ** shift * 1e6) / hz,
		/** Whether it counts the entry in time_wait_odd. */
		odd: (enteredUs: number): boolean => bucketEnd(enteredUs) % 2 === 1,
		/** What read_clock reports at `us`: the jiffies (whole, as the kernel keeps them) and the time. */
		clock: (us: number) => ({ hz, jiffies: jiffiesAt(us), atUs: us }),
	};
}

test('the wheel level of a 60 s timer: 512 jiffies at HZ 100 and 250, 4096 at HZ 1000 (as wheel_fire_jiffies)', (t) => {
	t.is(levelShift(60 * 100), 9);
	t.is(levelShift(60 * 250), 9);
	t.is(levelShift(60 * 1000), 12);
	t.is(levelShift(62), 0);
	t.is(levelShift(63), 3);
	t.is(levelShift(2_064_384), 18);
	t.is(levelShift(1e12), 18);
	t.is(new TimeWaitWheel({ hz: 250, jiffies: 0, atUs: 0 }).bucketUs, 2_048_000);
	t.throws(() => new TimeWaitWheel({ hz: 0, jiffies: 0, atUs: 0 }), { instanceOf: RangeError });
});

test('an entry ends at its bucket\'s end, 60 s to 60 s and a bucket after it came, to within a tick of the kernel', (t) => {
	for (const hz of [100, 250, 1000]) {
		const k = kernel(hz, 777_777);
		const wheel = new TimeWaitWheel(k.clock(T0 + 0.3 * S + 1234));
		const tickUs = 1e6 / hz;
		let exact = 0;
		for (let us = T0; us < T0 + 30 * S; us += 9_973) {
			const end = wheel.endUs(us);
			t.true(end - us >= 60 * S - tickUs && end - us <= 60 * S + wheel.bucketUs + tickUs, `HZ ${hz}: ${end - us} µs`);
			// Within a tick of a bucket's edge the reading cannot tell which side an entry is on.
			const near = (e: number) => Math.abs(end - e) <= tickUs / 2;
			t.true(near(k.endUs(us)) || near(k.endUs(us - tickUs)) || near(k.endUs(us + tickUs)), `HZ ${hz}: ${end} against the kernel's ${k.endUs(us)}`);
			if (near(k.endUs(us))) exact++;
		}
		t.true(exact >= 3008 * (1 - (2 * tickUs) / wheel.bucketUs), `HZ ${hz}: ${exact} of 3008 in the kernel's own bucket`);
	}
});

test('entries of a span split by the bucket they end in, in proportion, none lost or made up', (t) => {
	// Jiffy 0 read at 2 ms, taken as the middle of its tick: jiffies count from 0 µs.
	const wheel = new TimeWaitWheel({ hz: 250, jiffies: 0, atUs: 2000 });
	// Bucket ends every 2.048 s; entries over (0.5 s, 4.5 s]: nominal ends 60.5 to 64.5 s, against ends at 61.44, 63.488 and 65.536 s.
	// split() writes each bucket's end and its share in turn into an array the caller reuses, and says how many buckets.
	const into: number[] = [];
	const split = (fromUs: number, toUs: number, n: number) => {
		const count = wheel.split(fromUs, toUs, n, into);
		return Array.from({ length: count }, (_, i) => [into[2 * i]!, into[2 * i + 1]!] as [number, number]);
	};
	const parts = split(0.5 * S, 4.5 * S, 1000);
	t.deepEqual(parts.map(([end]) => end), [61_440_000, 63_488_000, 65_536_000]);
	t.deepEqual(parts.map(([, n]) => n), [235, 512, 253]); // (61.44 − 60.5)/4, 2.048/4, the rest
	t.deepEqual(split(2 * S, 2 * S, 7), [[63_488_000, 7]], 'an empty span: all at its end');
	t.is(into.length, 6, 'what the first split wrote beyond the second\'s stays: the count says where it ends');
	t.is(split(0, 0.001 * S, 3).reduce((total, [, n]) => total + n, 0), 3);
});

/**
 * `rate` entries a second for `seconds`, evenly or in bursts (`burst`: each second's in its first
 * fifth); the model reads the kernel's counts every `readEveryUs` and is compared with the kernel's
 * TIME_WAIT at each reading. `wheel`: none (60 s after the reading), the clock with the counts of odd
 * buckets (this kernel's), or the clock alone (an earlier counters' layout: entries spread evenly).
 * Returns the largest difference.
 */
function heldAgainstKernel(hz: number, wheel: 'none' | 'counted' | 'spread', rate: number, seconds: number, readEveryUs: number, finWait2Share = 0, burst = false): number {
	const k = kernel(hz, BOOT_US);
	const bucketUs = new TimeWaitWheel(k.clock(T0)).bucketUs;
	const m = new ChurnModel(T0);
	m.countFrom(T0);
	if (wheel !== 'none') m.setWheel(k.clock(T0 - 7 * S + 2_345), wheel === 'counted');
	const entries: { atUs: number; endUs: number; finWait2: boolean; odd: boolean }[] = [];
	for (let i = 0; i < rate * seconds; i++) {
		const atUs = burst ? T0 + Math.floor(i / rate) * S + Math.floor((((i % rate) + 0.5) * S) / (5 * rate)) : T0 + Math.floor(((i + 0.5) * S) / rate);
		// A FIN_WAIT2-substate entry: the peer's FIN comes 300 µs later and re-arms its timer for 60 s (kernel-facts §1.3).
		const finWait2 = i % 100 < finWait2Share * 100;
		// Counted at the entry, as a 60 s timer armed then would go: the FIN's re-arm 300 µs later may cross a bucket's edge.
		entries.push({ atUs, endUs: k.endUs(finWait2 ? atUs + 300 : atUs), finWait2, odd: k.odd(atUs) });
	}
	let worst = 0;
	let next = 0;
	for (let at = T0 + readEveryUs; at <= T0 + seconds * S; at += readEveryUs) {
		const delta = new Float64Array(COUNT_COLUMNS);
		for (; next < entries.length && entries[next]!.atUs <= at; next++) {
			const e = entries[next]!;
			delta[e.finWait2 ? COUNT_COLUMN.finWait2 : COUNT_COLUMN.timeWait]!++;
			if (e.odd) delta[e.finWait2 ? COUNT_COLUMN.finWait2Odd : COUNT_COLUMN.timeWaitOdd]!++;
		}
		if (delta[COUNT_COLUMN.timeWait]! + delta[COUNT_COLUMN.finWait2]! > 0) m.ingestCounts(KEY, { pid: 7, comm: 'counted' }, delta, at);
		m.tick(at);
		// Within a tick of a bucket's end the model may still hold the bucket the kernel just ran (wheel.ts).
		const intoBucketUs = (at - BOOT_US) % bucketUs;
		if (intoBucketUs < 1e6 / hz || bucketUs - intoBucketUs < 1e6 / hz) continue;
		const held = entries.filter((e) => e.atUs <= at && e.endUs > at).length;
		worst = Math.max(worst, Math.abs(m.namespaceTimeWait(1).count - held));
	}
	return worst;
}

test('read each second or twice a second, the model holds what the kernel holds, steps included: within a tick\'s entries, where 60 s from the reading is off by a bucket\'s', (t) => {
	for (const [hz, readEveryUs] of [[250, S], [250, S / 2], [1000, S], [100, S / 4]] as const) {
		const exact = heldAgainstKernel(hz, 'counted', 1000, 150, readEveryUs);
		const spread = heldAgainstKernel(hz, 'spread', 1000, 150, readEveryUs);
		const nominal = heldAgainstKernel(hz, 'none', 1000, 150, readEveryUs);
		t.is(exact, 0, `HZ ${hz}, a reading every ${readEveryUs / S} s: ${exact} apart with the wheel and the odd buckets counted`);
		t.true(spread <= 1000 / hz + 4, `HZ ${hz}, a reading every ${readEveryUs / S} s: ${spread} apart with the wheel, spread evenly`);
		t.true(nominal >= 1000, `HZ ${hz}: ${nominal} apart without it (the test can tell)`);
	}
});

test('entries that come unevenly within their second end in their own bucket where the kernel counts the odd ones; spread evenly, hundreds end a bucket early or late', (t) => {
	for (const hz of [250, 1000, 100]) {
		const exact = heldAgainstKernel(hz, 'counted', 1000, 150, S, 0, true);
		const spread = heldAgainstKernel(hz, 'spread', 1000, 150, S, 0, true);
		t.is(exact, 0, `HZ ${hz}: ${exact} apart with the odd buckets counted`);
		t.true(spread >= 100, `HZ ${hz}: ${spread} apart spread evenly (the test can tell)`);
	}
});

test('entries in substate FIN_WAIT2 (tcp_fin_timeout 60 s, most re-armed for 60 s by the peer\'s FIN at once) end in the wheel\'s bucket too', (t) => {
	const exact = heldAgainstKernel(250, 'counted', 1000, 150, S, 0.5);
	const nominal = heldAgainstKernel(250, 'none', 1000, 150, S, 0.5);
	t.true(exact <= 8, `${exact} apart with the wheel`);
	t.true(nominal >= 1000, `${nominal} apart without it`);
});

test('splitCounted: each parity to its own bucket among those the span reaches, by time over a long span, to the nearest where the span reaches none of it', (t) => {
	// Jiffies count from 0 µs at HZ 250: bucket k (ending at k + 1 buckets, 2.048 s each) takes entries from (k + 1) 2.048 − 60 s on.
	const wheel = new TimeWaitWheel({ hz: 250, jiffies: 0, atUs: 2000 });
	const into: number[] = [];
	const split = (fromUs: number, toUs: number, n: number, odd: number) => {
		const count = wheel.splitCounted(fromUs, toUs, n, odd, into);
		return new Map(Array.from({ length: count }, (_, i) => [into[2 * i]! / S, into[2 * i + 1]!]));
	};
	// (1 s, 2 s]: bucket end 30 (61.44 s, even) takes the entries up to 1.44 s, end 31 (63.488 s, odd) those after.
	t.deepEqual(split(1 * S, 2 * S, 100, 37), new Map([[63.488, 37], [61.44, 63]]));
	// (−0.4 s, 0.6 s] reaches end 30 only: odd entries (one a walk recovered, or a span dated wrong) go to the nearest odd
	// end, 29 (its entries end at −0.608 s) rather than 31 (from 1.44 s).
	t.deepEqual(split(-0.4 * S, 0.6 * S, 10, 4), new Map([[59.392, 4], [61.44, 6]]));
	// A span of 5 s (a reading delayed), (1.5 s, 6.5 s], reaches ends 31, 32 and 33: the odd ones share theirs by time,
	// 1.988 s (to 3.488) against 0.964 s (from 5.536).
	const long = split(1.5 * S, 6.5 * S, 1000, 500);
	const first = Math.round((500 * 1.988) / (1.988 + 0.964));
	t.deepEqual(long, new Map([[63.488, first], [67.584, 500 - first], [65.536, 500]]));
	t.deepEqual(split(2 * S, 2 * S, 7, 0), new Map([[61.44, 7]]), 'an empty span: the bucket its end is in');
	t.deepEqual(split(0.5 * S, 1.5 * S, 0, 0), new Map(), 'nothing to split');
});
