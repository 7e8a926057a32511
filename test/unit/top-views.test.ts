/** top's views without a terminal: keys, sparkline, clipping with colour, and the --json shape. */
import test from 'ava';
import { COUNT_COLUMN, COUNT_COLUMNS, LIFETIME_BOUNDS_US, type CountKey } from '../../src/event/counts.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { snapshot } from '../../src/model/snapshot.js';
import { handleKey, screenLines, type ScreenState } from '../../src/views/top-screen.js';
import { ANSI, clipVisible, PLAIN, sparkline } from '../../src/views/top-text.js';
import { topJson, type TopContext } from '../../src/views/top-json.js';
import { base } from '../helpers/events.js';

const S = 1_000_000;
const ctx: TopContext = {
	epochOffsetUs: 0, cgroupPath: () => undefined, intervalMs: 1000, unwalked: new Map(),
	drops: { ringFull: 0, mapFull: 0, missedRuns: 0, nestedRecovered: 0, walkMissed: 0, unwitnessed: 0, ownerMissing: 0, decodeErrors: 0 },
};
const fresh = (): ScreenState => ({ by: 'process', sort: 'timeWait', paused: false, filter: '', editing: undefined, help: false });

test('keys: s and g cycle and wrap, p toggles, / edits a filter applied by Enter, Escape cancels, q quits', (t) => {
	const s = fresh();
	t.is(handleKey(s, 's'), 'refresh');
	t.is(s.sort, 'timeWaitPerSec');
	for (let i = 0; i < 4; i++) handleKey(s, 's');
	t.is(s.sort, 'timeWait', 'wraps around');
	handleKey(s, 'g');
	t.is(s.by, 'comm');
	handleKey(s, 'p');
	t.true(s.paused);
	handleKey(s, '/');
	for (const k of 'curlx') handleKey(s, k);
	handleKey(s, '\x7f');
	t.is(s.editing, 'curl');
	t.is(handleKey(s, 'q'), 'redraw', 'q while typing is text');
	t.is(handleKey(s, '\r'), 'refresh');
	t.is(s.filter, 'curlq');
	handleKey(s, '/');
	handleKey(s, 'z');
	handleKey(s, '\x1b');
	t.is(s.filter, 'curlq', 'Escape keeps the old filter');
	t.is(handleKey(s, '?'), 'redraw');
	t.true(s.help);
	t.is(handleKey(s, 'x'), 'redraw', 'any key leaves help');
	t.is(handleKey(s, 'q'), 'quit');
	t.is(handleKey(fresh(), '\x03'), 'quit');
});

test('the sparkline scales to its own peak, 3 s per character', (t) => {
	const h = Array.from({ length: 60 }, (_, i) => i);
	const line = sparkline(h);
	t.is(line.length, 20);
	t.is(line[19], '█');
	t.is(sparkline(new Array(60).fill(0)), ' '.repeat(20));
});

test('clipping counts visible characters and keeps colour codes whole', (t) => {
	const red = ANSI.red('abcdef');
	t.is(clipVisible(red, 3), '\x1b[31mabc\x1b[0m');
	t.is(clipVisible('abc', 10), 'abc');
});

test('--json rows are in display order with the documented fields; the screen fits its size', (t) => {
	const m = new ChurnModel(0);
	let cookie = 1;
	m.ingest([
		{ ...base, cookie: cookie++, tsUs: 0.5 * S, pid: 1, comm: 'small' },
		...Array.from({ length: 3 }, () => ({ ...base, cookie: cookie++, tsUs: 0.5 * S, pid: 2, comm: 'big' })),
	]);
	m.tick(1 * S);
	const snap = snapshot(m, { by: 'process', sort: 'timeWait', nowUs: 1 * S, rateWindowUs: S });
	const json = topJson(snap, ctx) as { rows: Record<string, unknown>[]; destinations: Record<string, unknown>[] };
	t.deepEqual(json.rows.map((r) => [r.pid, r.comm, r.timeWait]), [[2, 'big', 3], [1, 'small', 1]]);
	for (const key of ['pid', 'comm', 'connectsPerSec', 'timeWaitPerSec', 'timeWait', 'side', 'lifetimeP50Ms', 'lifetimeP99Ms', 'topDest']) t.true(key in json.rows[0]!, key);
	for (const key of ['netns', 'saddr', 'daddr', 'dport', 'portsInUse', 'portsUsable', 'sustainableRate', 'currentRate', 'secondsToExhaustion']) t.true(key in json.destinations[0]!, key);
	const lines = screenLines(fresh(), snap, ctx, PLAIN, { rows: 10, columns: 60 });
	t.true(lines.length <= 10);
	t.true(lines.every((l) => l.length <= 60), lines.join('\n'));
});

test('at 80 columns the header keeps the numbers that matter and the table drops its least useful columns, not its last', (t) => {
	const m = new ChurnModel(0);
	m.reconcile({ netns: 4026532177, takenAtUs: 0, sockets: [], settings: { portRange: { low: 40000, high: 40099 }, reservedPorts: new Set(), finTimeoutSec: 60, maxTimeWaitBuckets: 131072, twReuse: 2, timeWaitOverflow: 0 } });
	const events = [];
	for (let i = 0; i < 100; i++) events.push({ ...base, netns: 4026532177, cookie: 1000 + i, sport: 40000 + i, tsUs: S + i * 10_000, daddr: '10.200.0.2', dport: 7900, comm: 'a-long-churner' });
	m.ingest(events);
	m.tick(3 * S);
	const s = snapshot(m, { by: 'process', sort: 'timeWait', nowUs: 3 * S, rateWindowUs: 2 * S });
	const lines = screenLines(fresh(), s, ctx, PLAIN, { rows: 30, columns: 80 });
	for (const l of lines) t.true(l.length <= 80, `${l.length}: ${l}`);
	const worst = lines.find((l) => l.startsWith('worst'))!;
	t.regex(worst, /100\/100 ports/);
	t.regex(worst, /EXHAUSTED/);
	const header = lines.find((l) => l.includes('TW-HELD'))!;
	t.regex(header, /TOP DEST/);
	t.notRegex(header, /TIME_WAIT 60s/, 'the sparkline goes first');
	const row = lines.find((l) => l.includes('a-long-churner'))!;
	t.regex(row, /10\.200\.0\.2:7900/, 'the destination is whole');
	const wide = screenLines(fresh(), s, ctx, PLAIN, { rows: 30, columns: 200 });
	t.regex(wide.find((l) => l.includes('TW-HELD'))!, /TIME_WAIT 60s/, 'with room, every column');
	t.regex(wide.find((l) => l.startsWith('worst'))!, /sustainable 1\.7\/s · now/);
});

test('lifetimes known as the kernel\'s buckets (a model fed from counts) show as at most their bound, on the screen and in --json', (t) => {
	const m = new ChurnModel(0);
	m.countFrom(0);
	const key: CountKey = { netns: 1, blamed: 7, cgroupId: 0, saddr: '10.200.0.1', daddr: '10.200.0.2', port: 7000, side: 'client', family: 4 };
	const delta = new Float64Array(COUNT_COLUMNS);
	delta[COUNT_COLUMN.connections] = 3;
	delta[COUNT_COLUMN.timeWait] = 3;
	delta[COUNT_COLUMN.lifetimeCount] = 3;
	delta[COUNT_COLUMN.lifetimeSumUs] = 9000;
	delta[COUNT_COLUMN.lifetime + LIFETIME_BOUNDS_US.findIndex((b) => b >= 3000)] = 3; // 3 ms each: the bucket up to 5 ms
	m.ingestCounts(key, { pid: 7, comm: 'counted' }, delta, 1 * S);
	m.tick(1 * S);
	const snap = snapshot(m, { by: 'process', sort: 'timeWait', nowUs: 1 * S, rateWindowUs: S });
	t.like(snap.rows[0], { comm: 'counted', timeWait: 3, lifetimeP50Ms: 5, lifetimeP99Ms: 5, lifetimeUpTo: true });
	t.like((topJson(snap, ctx) as { rows: object[] }).rows[0], { lifetimeP50Ms: 5, lifetimeUpTo: true });
	const table = screenLines(fresh(), snap, ctx, PLAIN, { rows: 20, columns: 160 }).join('\n');
	t.regex(table, /counted .*≤5\.00ms\s+≤5\.00ms/);
	// Exact lifetimes (events) say nothing more.
	const exact = new ChurnModel(0);
	exact.ingest([{ ...base, tsUs: 0.5 * S, pid: 1, comm: 'exact', lifetimeUs: 3000 }]);
	const row = snapshot(exact, { by: 'process', sort: 'timeWait', nowUs: 1 * S, rateWindowUs: S }).rows[0]!;
	t.is(row.lifetimeUpTo, undefined);
	t.false('lifetimeUpTo' in (topJson(snapshot(exact, { by: 'process', sort: 'timeWait', nowUs: 1 * S, rateWindowUs: S }), ctx) as { rows: object[] }).rows[0]!);
});
