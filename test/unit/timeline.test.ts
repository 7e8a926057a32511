import test from 'ava';
import { MAX_POINTS, MAX_SERIES, TimelineRecorder } from '../../src/report/timeline.js';

test('a long capture keeps at most MAX_POINTS per series: peaks survive the merging, failures add up', (t) => {
	const tl = new TimelineRecorder();
	const seconds = 5 * MAX_POINTS;
	for (let s = 0; s < seconds; s++) {
		tl.sampleHeld(1000 + s, new Map([['a', s === 1777 ? 999 : s % 10]]));
		tl.sampleDestination(1000 + s, 'd', s % 7, 100);
		if (s % 3 === 0) tl.failure(1000 + s, 'connect x EADDRNOTAVAIL');
	}
	const out = tl.build(0, [{ key: 'a', rank: 1, label: 'a' }], [{ key: 'd', label: 'd' }]);
	t.true(out.timesMs.length <= MAX_POINTS && out.timesMs.length > MAX_POINTS / 2, `${out.timesMs.length} points`);
	t.is(out.stepSeconds, 8);
	t.is(out.timesMs[1]! - out.timesMs[0]!, 8000);
	t.is(Math.max(...out.offenders[0]!.held.map((v) => v ?? 0)), 999, 'the one-second peak is still there');
	t.is(out.failures[0]!.counts.reduce((a, b) => a + b, 0), Math.ceil(seconds / 3));
	t.is(out.destinations[0]!.exhaustedAtMs, null, 'never all 100 ports in use');
});

test('the moment a destination ran out is the first sample with every usable port in use, or else its first failure', (t) => {
	const tl = new TimelineRecorder();
	tl.sampleDestination(10, 'full', 50, 100);
	tl.sampleDestination(12, 'full', 100, 100);
	tl.sampleDestination(13, 'full', 100, 100);
	tl.sampleDestination(10, 'failing', 90, 100);
	const out = tl.build(5_000_000, [], [{ key: 'full', label: 'f' }, { key: 'failing', label: 'g', firstFailureSecond: 11 }, { key: 'never seen', label: 'n' }]);
	t.deepEqual(out.destinations.map((d) => d.exhaustedAtMs), [17_000, 16_000, null]);
	t.deepEqual(out.destinations[2]!.inUse, [null, null, null, null], 'no samples: gaps, not zeros');
});

test('series are bounded: groups past MAX_SERIES are not followed', (t) => {
	const tl = new TimelineRecorder();
	tl.sampleHeld(1, new Map(Array.from({ length: MAX_SERIES + 50 }, (_, i) => [`g${i}`, 1])));
	t.is(tl.held.byKey.size, MAX_SERIES);
});
