import test from 'ava';
import { COLUMN_BYTES_PER_SLOT, TimeWaitPopulation, type PortPoolTally, type TimeWaitHolder } from '../../src/model/time-wait.js';
import { SecondCounts } from '../../src/model/second-counts.js';

const US = 1_000_000;
const holder = (): TimeWaitHolder => ({ timeWait: 0, peakTimeWait: 0, lastChangeUs: 0 });
const pool = (): PortPoolTally => ({ timeWait: 0, expiring: new SecondCounts(), holders: new Map() });

/** The same operations on a plain Map, as the reference the columnar population must agree with. */
class Reference {
	readonly entries = new Map<number, { h: number; p: number; netns: number; entered: number; expires: number }>();
}

test('random adds, moves, re-arms, deletes and expiries agree with a plain map, counts and tallies included', (t) => {
	let seed = 7;
	const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
	const holders = [holder(), holder(), holder()];
	const pools = [pool(), pool()];
	const pop = new TimeWaitPopulation<TimeWaitHolder>(1_000_000);
	const ref = new Reference();
	let now = 1000 * US;
	for (let step = 0; step < 60_000; step++) {
		const r = random();
		// Cookies from a small range, so that moves and deletes hit existing entries.
		const cookie = 2 ** 33 + Math.floor(random() * 5000);
		if (r < 0.5) {
			const h = Math.floor(random() * 3);
			const p = Math.floor(random() * 3) - 1;
			const netns = 1 + Math.floor(random() * 2);
			const expires = now + Math.floor(random() * 70 * US);
			t.true(pop.add(cookie, holders[h]!, p < 0 ? undefined : pools[p], netns, now, expires));
			const old = ref.entries.get(cookie);
			ref.entries.set(cookie, { h, p, netns: old?.netns ?? netns, entered: old?.entered ?? now, expires });
		} else if (r < 0.65) {
			const expires = now + Math.floor(random() * 70 * US);
			pop.setExpiry(cookie, expires);
			const e = ref.entries.get(cookie);
			if (e) e.expires = expires;
		} else if (r < 0.8) {
			pop.delete(cookie, now);
			ref.entries.delete(cookie);
		} else {
			now += Math.floor(random() * 3 * US);
			pop.expire(now);
			for (const [c, e] of ref.entries) if (e.expires <= now || Math.ceil(e.expires / US) * US <= now) ref.entries.delete(c);
		}
	}
	t.is(pop.size, ref.entries.size);
	for (const [cookie, e] of ref.entries) {
		t.true(pop.has(cookie));
		t.is(pop.holderOf(cookie), holders[e.h]);
		t.is(pop.expiryOf(cookie), e.expires);
	}
	for (let h = 0; h < 3; h++) t.is(holders[h]!.timeWait, [...ref.entries.values()].filter((e) => e.h === h).length, `holder ${h}`);
	for (let p = 0; p < 2; p++) {
		const mine = [...ref.entries.values()].filter((e) => e.p === p);
		t.is(pools[p]!.timeWait, mine.length, `pool ${p}`);
		t.is(pools[p]!.expiring.entries().reduce((a, [, n]) => a + n, 0), mine.length, `pool ${p} expiring buckets`);
		for (let h = 0; h < 3; h++) t.is(pools[p]!.holders.get(holders[h]!) ?? 0, mine.filter((e) => e.h === h).length);
	}
	t.is(pop.countIn(1) + pop.countIn(2), ref.entries.size);
});

test('a walk keeps what it found, and removes what it did not find that entered before it started', (t) => {
	const pop = new TimeWaitPopulation<TimeWaitHolder>(100);
	const h = holder();
	pop.add(1, h, undefined, 7, 10, 60 * US);
	pop.add(2, h, undefined, 7, 10, 60 * US);
	pop.add(3, h, undefined, 8, 10, 60 * US); // another namespace: not this walk's business
	pop.beginWalk();
	t.truthy(pop.seenHolder(1));
	t.is(pop.seenHolder(99), undefined);
	pop.add(4, h, undefined, 7, 30, 60 * US); // entered during the walk
	t.is(pop.endWalk(7, 20), 1);
	t.deepEqual([1, 2, 3, 4].map((c) => pop.has(c)), [true, false, true, true]);
	t.is(h.timeWait, 3);
});

test('a clock that jumps to 2^53 µs expires everything without a loop per second', (t) => {
	const pop = new TimeWaitPopulation<TimeWaitHolder>(100);
	const h = holder();
	for (let c = 1; c <= 50; c++) pop.add(c, h, undefined, 1, 0, c * US);
	pop.expire(2 ** 53); // would spin for ~285 years of seconds if it walked the wheel second by second
	t.is(pop.size, 0);
	t.is(h.timeWait, 0);
	pop.add(1, h, undefined, 1, 2 ** 53, 2 ** 53 + 60 * US);
	t.true(pop.has(1), 'and it keeps working after the jump');
});

test('the population grows past its first capacity and keeps every entry findable, at about 64 bytes a socket', (t) => {
	const pop = new TimeWaitPopulation<TimeWaitHolder>(1_000_000);
	const h = holder();
	for (let c = 0; c < 100_000; c++) pop.add(5e9 + c, h, undefined, 1, 0, 60 * US);
	for (let c = 0; c < 100_000; c += 2) pop.delete(5e9 + c, 1);
	t.is(pop.size, 50_000);
	let found = 0;
	for (let c = 0; c < 100_000; c++) if (pop.has(5e9 + c)) found++;
	t.is(found, 50_000);
	t.true(COLUMN_BYTES_PER_SLOT <= 52);
	// 100,000 entries at their peak: the slots used, and an index at most two thirds full, a power of two.
	t.log(`${(pop.bytes / 100_000).toFixed(1)} bytes per socket at the peak`);
	t.true(pop.bytes <= 100_000 * (COLUMN_BYTES_PER_SLOT + 4 * 3), 'the slots used and an index at most three per entry');
});

test('a full population refuses and counts, and takes again once room is made', (t) => {
	const pop = new TimeWaitPopulation<TimeWaitHolder>(2);
	const h = holder();
	t.true(pop.add(1, h, undefined, 1, 0, US));
	t.true(pop.add(2, h, undefined, 1, 0, US));
	t.false(pop.add(3, h, undefined, 1, 0, US));
	t.is(pop.refused, 1);
	pop.delete(1, 0);
	t.true(pop.add(3, h, undefined, 1, 0, US));
});

test('ticking once a millisecond through a second of spread expiries visits each entry once or twice, not the second\'s list at every tick', (t) => {
	// Expiries spread over the whole second (FIN_WAIT2 entries: tsUs + tcp_fin_timeout, no timer rounding),
	// as at 15,000 connections/s: a bucket per second would be scanned whole at each of a thousand ticks.
	const pop = new TimeWaitPopulation<TimeWaitHolder>(100_000);
	const h = holder();
	const n = 15_000;
	for (let k = 0; k < n; k++) pop.add(k + 1, h, undefined, 1, 0, 60 * US + Math.floor((k * US) / n));
	for (let now = 60 * US; now <= 61 * US; now += 1000) pop.expire(now);
	t.is(pop.size, 0);
	t.true(pop.expiryVisits <= 2 * n, `${pop.expiryVisits} visits for ${n} entries`);
});

test('a host up for months: buckets past 2^32 ms expire on time, and an expiry beyond the bucket window is not taken early', (t) => {
	const pop = new TimeWaitPopulation<TimeWaitHolder>(100);
	const h = holder();
	const start = 2 ** 32 * 1000 - 30 * US; // 49.7 days of uptime, 30 s before the 32-bit millisecond wraps
	pop.add(1, h, undefined, 1, start, start + 60 * US); // expires after the wrap
	pop.add(2, h, undefined, 1, start, start + 20 * US); // before it
	pop.add(3, h, undefined, 1, start, start + 60 * 86_400 * US); // 60 days ahead: beyond the window
	pop.expire(start + 20 * US - 1);
	t.deepEqual([1, 2, 3].map((c) => pop.has(c)), [true, true, true]);
	pop.expire(start + 20 * US);
	t.deepEqual([1, 2, 3].map((c) => pop.has(c)), [true, false, true]);
	pop.expire(start + 60 * US - 1);
	t.true(pop.has(1));
	pop.expire(start + 60 * US);
	t.deepEqual([1, 3].map((c) => pop.has(c)), [false, true]);
	pop.expire(start + 50 * 86_400 * US); // past the window's end, which the far entry was clamped to
	t.true(pop.has(3), 'not before its own expiry');
	t.is(pop.expiryOf(3), start + 60 * 86_400 * US);
	pop.expire(start + 60 * 86_400 * US);
	t.is(pop.size, 0);
	t.is(h.timeWait, 0);
});

test('counted entries expiring in a span, per namespace: what a model of counts holds that the kernel may have ended', (t) => {
	const p = new TimeWaitPopulation<TimeWaitHolder>(1000);
	const h = holder();
	p.addCounted(h, undefined, 1, 0, 60 * US, 10);
	p.addCounted(h, undefined, 1, 0, 60.5 * US, 5);
	p.addCounted(h, undefined, 2, 0, 60.5 * US, 7);
	p.addCounted(h, undefined, 1, 0, 62 * US, 3);
	p.add(42, h, undefined, 1, 0, 60.5 * US); // from an event or a walk: the kernel's own timer
	t.is(p.size, 5, 'a slot per count, not per socket');
	t.is(h.timeWait, 26);
	t.is(p.countIn(1), 19);
	t.is(p.countedExpiring(1, 59.9 * US, 61 * US), 15);
	t.is(p.countedExpiring(1, 60 * US, 61 * US), 5, 'the span is (from, to]');
	t.is(p.countedExpiring(2, 59 * US, 61 * US), 7);
	t.is(p.countedExpiring(1, 61 * US, 62 * US), 3);
	p.expire(60.2 * US);
	t.is(p.countedExpiring(1, 59 * US, 61 * US), 5, 'expired ones are gone');
	t.is(p.countIn(1), 9, 'a count expires whole');
	t.is(p.expired.since(1, 60.2 * US), 10);
});

test('a count stands for its sockets in its port pool and its holder, and is refused whole when the population is full', (t) => {
	const p = new TimeWaitPopulation<TimeWaitHolder>(2);
	const [a, b] = [holder(), holder()];
	const dest = pool();
	t.is(p.addCounted(a, dest, 1, 0, 60 * US, 40), 40);
	t.is(p.addCounted(b, dest, 1, 0, 61 * US, 2), 2);
	t.is(dest.timeWait, 42);
	t.deepEqual([...dest.holders.values()], [40, 2]);
	t.deepEqual(dest.expiring.entries(), [[60, 40], [61, 2]]);
	t.is(a.peakTimeWait, 40);
	t.is(p.addCounted(a, dest, 1, 0, 62 * US, 7), 0, 'full: two slots');
	t.is(p.refused, 7, 'every socket of the refused count');
	p.expire(60 * US);
	t.is(dest.timeWait, 2);
	t.deepEqual([...dest.holders.values()], [2]);
	t.deepEqual(dest.expiring.entries(), [[61, 2]]);
	t.is(a.timeWait, 0);
});
