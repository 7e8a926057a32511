/**
 * The bounded series table behind `serve`: admission up to maxSeries, "other" beyond, ageing of
 * departed groups, promotion of a busy latecomer, and no count lost across removals.
 */
import test from 'ava';
import { SeriesTable } from '../../src/model/series.js';

const S = 1_000_000;
const T0 = 1000 * S;

function table(maxSeries: number, idleS = 300) {
	return new SeriesTable<{ name: string }>({ maxSeries, width: 1, idleUs: idleS * S, labelsOf: (key) => ({ name: key }), otherLabels: { name: 'other' } });
}
const names = (t: ReturnType<typeof table>) => [...t.series()].map((s) => s.labels.name).sort();
/** Counts n events of `key` at `atS`. */
function hit(t: ReturnType<typeof table>, key: string, atS: number, n = 1) {
	for (let i = 0; i < n; i++) t.seriesFor(key, T0 + atS * S).counts[0]!++;
}
const total = (t: ReturnType<typeof table>) => [...t.series()].reduce((sum, s) => sum + s.counts[0]!, 0);

test('groups get series while there is room; the rest are counted in "other"', (t) => {
	const s = table(3);
	for (const k of ['a', 'b', 'c', 'd', 'e']) hit(s, k, 0, 2);
	t.deepEqual(names(s), ['a', 'b', 'c', 'other']);
	t.is(s.other.counts[0], 4);
	t.is(total(s), 10);
});

test('thousands of distinct groups never make more than maxSeries + 1 series', (t) => {
	const s = table(20, 30);
	for (let second = 0; second < 200; second++) {
		for (let i = 0; i < 20; i++) hit(s, `proc${second}-${i}`, second, 3);
		s.tick(T0 + (second + 1) * S);
		t.true(s.size <= 20);
	}
	// Never scraped, so each removed series folded its whole count into "other": nothing was dropped.
	t.is(total(s), 200 * 20 * 3);
	t.true(s.removed.idle + s.removed.displaced > 0);
});

test('a series idle for idleUs that holds nothing is removed; one that holds sockets stays', (t) => {
	const s = table(10, 60);
	hit(s, 'gone', 0);
	hit(s, 'holder', 0);
	for (const x of s.series()) if (x.labels.name === 'holder') x.holding = 5;
	s.tick(T0 + 59 * S);
	t.deepEqual(names(s), ['gone', 'holder', 'other']);
	s.tick(T0 + 60 * S);
	t.deepEqual(names(s), ['holder', 'other']);
	t.is(s.removed.idle, 1);
});

test('a removed series\' counts since the last scrape move to "other"; what was scraped stays seen', (t) => {
	const s = table(10, 60);
	hit(s, 'a', 0, 5);
	s.markScraped(); // Prometheus saw a = 5
	hit(s, 'a', 1, 3); // not yet scraped
	s.tick(T0 + 61 * S);
	t.deepEqual(names(s), ['other']);
	t.is(s.other.counts[0], 3, 'the 3 unseen events are still counted, in other');
});

test('a latecomer twice as busy as the quietest series takes its place; a slightly busier one does not', (t) => {
	const s = table(2);
	hit(s, 'quiet', 0, 10);
	hit(s, 'steady', 0, 100);
	for (let second = 1; second <= 70; second++) {
		hit(s, 'quiet', second, 10);
		hit(s, 'steady', second, 100);
		hit(s, 'similar', second, 15); // in other: 1.5x quiet, not enough
		s.tick(T0 + second * S);
	}
	t.deepEqual(names(s), ['other', 'quiet', 'steady']);
	hit(s, 'churner', 71, 500);
	s.tick(T0 + 71 * S);
	t.deepEqual(names(s), ['churner', 'other', 'steady']);
	t.is(s.removed.displaced, 1);
});

test('a series younger than a minute is not displaced, however busy the candidate', (t) => {
	const s = table(1);
	hit(s, 'young', 0, 1);
	hit(s, 'busy', 0, 1000);
	s.tick(T0 + 1 * S);
	t.deepEqual(names(s), ['other', 'young']);
	hit(s, 'busy', 61, 1000);
	s.tick(T0 + 61 * S);
	t.deepEqual(names(s), ['busy', 'other']);
});

test('the candidate tally is bounded and still finds a heavy hitter among a flood', (t) => {
	const s = table(4);
	for (const k of ['a', 'b', 'c', 'd']) hit(s, k, 0, 1);
	// 10,000 one-off names and one heavy group interleaved, all in other: 40 times the tally's capacity.
	for (let i = 0; i < 10_000; i++) {
		hit(s, `flood${i}`, 61);
		if (i % 10 === 0) hit(s, 'heavy', 61);
	}
	s.tick(T0 + 62 * S);
	t.true(names(s).includes('heavy'));
	t.is(s.size, 4);
	t.is(s.removed.displaced, 1, 'only the heavy group was promoted, no one-off name');
});
