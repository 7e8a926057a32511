import test from 'ava';
import { RECENT_EXPIRY_US, RecentExpiries } from '../../src/model/recent-expiries.js';

test('expiries are counted per namespace within the last second by their timers, older ones age out', (t) => {
	const r = new RecentExpiries();
	for (let us = 10_000_000; us < 12_000_000; us += 1000) r.add(1, us); // 1,000 a second for 2 s
	r.add(2, 11_999_000);
	t.is(r.since(1, 12_000_000), 1000, 'the last second');
	t.is(r.since(2, 12_000_000), 1);
	t.is(r.since(3, 12_000_000), 0);
	t.is(r.since(1, 12_000_000 + RECENT_EXPIRY_US), 0, 'a second later: nothing recent');
	r.add(1, 10_500_000); // older than the span asked: not counted in it
	t.is(r.since(1, 12_000_000), 1000);
});

test('a longer span is asked of a model of counted entries (walk-plan.ts COUNTED_LATE_US): up to 7 s, no more', (t) => {
	const r = new RecentExpiries();
	for (let us = 10_000_000; us < 20_000_000; us += 1000) r.add(1, us); // 1,000 a second for 10 s
	t.is(r.since(1, 20_000_000, 7_000_000), 7000);
	t.is(r.since(1, 20_000_000, 3_000_000), 3000);
	t.is(r.since(1, 20_000_000, 60_000_000), 7000, 'longer than the slots kept: what they keep');
});
