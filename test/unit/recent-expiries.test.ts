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
	r.add(1, 10_500_000); // older than the slots kept: not counted anywhere
	t.is(r.since(1, 12_000_000), 1000);
});
