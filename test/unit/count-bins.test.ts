/**
 * The kernel's counters binned per second (src/model/count-bins.ts): differences of cumulative
 * readings, across generation flips, and the TIME_WAIT held now from them.
 */
import test from 'ava';
import { COUNT_COLUMN as C, CountTable } from '../../src/event/counts.js';
import { BINS, CountBins } from '../../src/model/count-bins.js';

const LENGTHS = { timeWaitS: 60, finWait2S: 30 };
const KEY = 'aa';

/** A reading: cumulative TIME_WAIT and FIN_WAIT2 entries of KEY (and of other keys). */
function reading(timeWait: number, finWait2 = 0, others: Record<string, number> = {}): CountTable {
	const t = new CountTable();
	const row = t.row(KEY);
	row[C.timeWait] = timeWait;
	row[C.finWait2] = finWait2;
	row[C.connections] = timeWait + finWait2; // not binned: must not count as held
	for (const [key, n] of Object.entries(others)) t.row(key)[C.timeWait] = n;
	return t;
}

test('an entry is held for its substate\'s length from the second it was read in, then no more', (t) => {
	const bins = new CountBins();
	bins.observe(10, reading(5, 2));
	t.is(bins.held(KEY, 10, LENGTHS), 7);
	t.is(bins.held(KEY, 39, LENGTHS), 7, 'FIN_WAIT2 entries held for 30 s (39 - 10 < 30)');
	t.is(bins.held(KEY, 40, LENGTHS), 5, 'then only the TIME_WAIT ones');
	t.is(bins.held(KEY, 69, LENGTHS), 5);
	t.is(bins.held(KEY, 70, LENGTHS), 0, 'and after 60 s none');
	t.is(bins.held('bb', 10, LENGTHS), 0, 'a key never counted holds none');
});

test('readings are cumulative: each second bins what was added since the reading before', (t) => {
	const bins = new CountBins();
	bins.observe(10, reading(5));
	bins.observe(11, reading(8));
	bins.observe(11, reading(9)); // a second reading within the same second adds to its bin
	t.is(bins.held(KEY, 11, LENGTHS), 9);
	t.is(bins.held(KEY, 70, LENGTHS), 4, 'second 10\'s 5 entries are gone, second 11\'s 4 remain');
	t.is(bins.held(KEY, 71, LENGTHS), 0);
});

test('a generation flip: the retired generation\'s last differences are kept, and the new one counts from 0', (t) => {
	const bins = new CountBins();
	bins.observe(20, reading(4));
	bins.retire(21, reading(6)); // read after the flip: 2 more entries in the retired generation
	bins.observe(22, reading(1)); // the new generation's first reading
	t.is(bins.held(KEY, 22, LENGTHS), 7);
	t.is(bins.held(KEY, 80, LENGTHS), 3, 'second 20\'s 4 entries are gone');
	t.is(bins.held(KEY, 81, LENGTHS), 1);
});

test('the differences reach onDelta key by key, across a flip, every column, and only keys that changed', (t) => {
	const bins = new CountBins();
	const seen: [string, number, number][] = [];
	const visit = (key: string, d: Float64Array) => seen.push([key, d[C.timeWait]!, d[C.connections]!]);
	bins.observe(20, reading(4, 0, { bb: 1 }), visit);
	bins.observe(21, reading(4, 0, { bb: 1 }), visit); // nothing new
	bins.retire(22, reading(6, 0, { bb: 1 }), visit);
	bins.observe(23, reading(1), visit); // the new generation counts from 0
	t.deepEqual(seen, [[KEY, 4, 4], ['bb', 1, 0], [KEY, 2, 2], [KEY, 1, 1]]);
});

test('after more than BINS seconds without a reading, old bins are not mistaken for new ones', (t) => {
	const bins = new CountBins();
	bins.observe(0, reading(5));
	bins.observe(BINS + 36, reading(7));
	t.is(bins.held(KEY, BINS + 36, LENGTHS), 2);
});

test('keys idle for BINS seconds are forgotten at a retire: memory follows the keys counted recently', (t) => {
	const bins = new CountBins();
	bins.observe(0, reading(1, 0, { bb: 1, cc: 1 }));
	bins.retire(1, reading(1, 0, { bb: 1, cc: 1 }));
	bins.observe(2, reading(2)); // only KEY counts in the new generation
	t.is(bins.size, 3);
	bins.retire(BINS + 1, reading(2));
	t.is(bins.size, 1, 'bb and cc, unread since second 1, are gone');
	t.is(bins.held(KEY, BINS + 1, LENGTHS), 0, 'KEY\'s entries have expired too');
	const held: string[] = [];
	bins.forEachHeld(BINS + 1, LENGTHS, (key) => held.push(key));
	t.deepEqual(held, [KEY]);
});

test('a length longer than the bins is refused', (t) => {
	const bins = new CountBins();
	bins.observe(1, reading(1));
	t.throws(() => bins.held(KEY, 1, { timeWaitS: BINS + 1, finWait2S: 60 }), { instanceOf: RangeError });
});
