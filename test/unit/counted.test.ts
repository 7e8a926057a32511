/**
 * The flight recorder keeping the kernel's counts (docs/counting-in-the-kernel.md, step 3): fed the
 * same stream as a recorder keeping records (the records, each namespace's walks, and the counts the
 * kernel would have read once a second: the fold of the records, model/fold.ts, which
 * test/integration/counts.test.ts holds equal to the kernel's own), its window must give the report
 * the records give, but for what counts cannot keep: lifetimes known as their buckets' bounds, and
 * TIME_WAIT held to within the second each entry came in.
 */
import test from 'ava';
import { crc32 } from 'node:zlib';
import { captureHeader, COUNTS_ENTRY_BYTES, READABLE_COUNT_LAYOUTS } from '../../src/capture/format.js';
import { parseCapture, readCaptureFile, type Capture } from '../../src/capture/reader.js';
import { COUNT_COLUMN, COUNT_COLUMNS, CountTable, LIFETIME_BOUNDS_US } from '../../src/event/counts.js';
import { EVENT_FIELDS, EVENT_SIZE, EventKind, SOCK_SIZE } from '../../src/event/layout.generated.js';
import { foldRecords } from '../../src/model/fold.js';
import { CaptureReplay } from '../../src/pipeline/capture-replay.js';
import type { WheelClock } from '../../src/event/clock.js';
import { TimeWaitWheel } from '../../src/model/wheel.js';
import { endsOddBucket } from '../helpers/wheel.js';
import { FlightRecorder, type RecorderKeeps } from '../../src/pipeline/recorder.js';
import { KEY_ID_BYTES } from '../../src/pipeline/counts-frames.js';
import { replayCapture } from '../../src/report/from-capture.js';
import type { Report } from '../../src/report/report.js';
import { recordsBuffer, sockRecord, type RawRecord } from '../../testbed/records.js';

const S = 1_000_000;
const NO_LOSS = { ringFull: 0, mapFull: 0, missedRuns: 0, ownerMissing: 0, decodeErrors: 0, walkMissed: 0, unwitnessed: 0 };

function newRecorder(keeps: RecorderKeeps, from: Capture, wheel?: WheelClock, maxAgeMs = 3_600_000) {
	const source = {
		clockUs: () => from.header.clock.startUs,
		header: (startUs: number) => ({
			...captureHeader({
				startedAt: from.header.startedAt, clock: { startUs, epochOffsetUs: from.header.clock.epochOffsetUs }, filters: from.header.filters,
				walkIntervalMs: from.header.walkIntervalMs, namespaces: [],
			}),
			...(wheel ? { wheel } : {}),
		}),
		drops: () => NO_LOSS,
		cgroups: () => ({}),
		describe: () => `test recorder keeping ${keeps}`,
	};
	return new FlightRecorder({ maxBytes: 1 << 30, maxAgeMs, keeps }, source, from.header.clock.startUs);
}

/**
 * Plays `from` into a recorder keeping records and one keeping counts, as the agent feeds them:
 * records as drained, walks, and once a second the counters' differences (read at the second's end).
 */
function recordBoth(from: Capture): { records: Capture; counts: Capture; folded: CountTable } {
	const byRecords = newRecorder('records', from);
	const byCounts = newRecorder('counts', from);
	const folded = new CountTable();
	let second: CountTable | undefined;
	let secondOf = -1;
	const read = (atUs: number) => {
		if (!second) return;
		byCounts.beginCounts(atUs, atUs);
		for (const [key, row] of second.rows) byCounts.addCounts(key, row);
		second = undefined;
	};
	let lastUs = from.header.clock.startUs;
	for (const item of from.items) {
		if (item.type === 'walk') {
			byRecords.addWalk(item.walk, item.walk.takenAtUs);
			byCounts.addWalk(item.walk, item.walk.takenAtUs);
			continue;
		}
		if (item.type !== 'events') throw new Error('the source holds records only');
		const b = Buffer.from(item.records.buffer, item.records.byteOffset, item.records.byteLength);
		for (let at = 0; at < b.length; at += EVENT_SIZE) {
			const one = b.subarray(at, at + EVENT_SIZE);
			const isTask = b[at + EVENT_FIELDS.kind.offset] === EventKind.TASK;
			const tsUs = isTask ? lastUs : Number(b.readBigUInt64LE(at + EVENT_FIELDS.ts_us.offset));
			lastUs = tsUs;
			const s = Math.floor(tsUs / S);
			if (s !== secondOf) {
				// The agent's upkeep, once a second: the counters read, a second's records sealed into a frame.
				read((secondOf + 1) * S);
				byRecords.tick(s * S), byCounts.tick(s * S);
				secondOf = s;
			}
			second ??= new CountTable();
			foldRecords(one, second);
			foldRecords(one, folded);
			byRecords.addEvents(one, tsUs);
			byCounts.addEvents(one, tsUs);
		}
	}
	read((secondOf + 1) * S);
	const endUs = Math.max(from.trailer?.endUs ?? 0, (secondOf + 1) * S);
	return { records: parseCapture(byRecords.capture(undefined, endUs)), counts: parseCapture(byCounts.capture(undefined, endUs)), folded };
}

const offenders = (r: Report) => new Map(r.offenders.map((o) => [o.key, o]));

/** The bucket `us` falls in: its upper bound, ms. */
const bucketMs = (ms: number) => LIFETIME_BOUNDS_US.find((b) => ms * 1000 <= b)! / 1000;

function sameReport(t: import('ava').ExecutionContext, records: Report, counts: Report, folded: CountTable, entriesPerSecond: number): void {
	t.is(counts.totals.timeWaitEntries, records.totals.timeWaitEntries);
	t.is(counts.totals.connections, folded.total(COUNT_COLUMN.connections), 'connections counted at their start, as the kernel does');
	t.deepEqual(counts.totals.connectFailures, records.totals.connectFailures, 'failures flow as events either way');
	t.is(counts.totals.bindFailures, records.totals.bindFailures);
	const [a, b] = [offenders(records), offenders(counts)];
	t.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), 'the same offenders');
	for (const [key, o] of a) {
		const c = b.get(key)!;
		t.like(c, { comm: o.comm, pid: o.pid, side: o.side, timeWaitEntries: o.timeWaitEntries, resets: o.resets, connectFailures: o.connectFailures, bindFailures: o.bindFailures }, key);
		t.deepEqual(c.topDestinations.map((d) => [d.peer, d.timeWaitEntries]), o.topDestinations.map((d) => [d.peer, d.timeWaitEntries]), key);
		// Held: entries enter at the reading after their second, and leave 60 s after it (no wheel slack).
		t.true(Math.abs(c.peakTimeWait - o.peakTimeWait) <= 2 * entriesPerSecond, `${key}: peak held ${c.peakTimeWait} against ${o.peakTimeWait}`);
		t.true(Math.abs(c.timeWaitAtEnd - o.timeWaitAtEnd) <= 2 * entriesPerSecond, `${key}: held at the end ${c.timeWaitAtEnd} against ${o.timeWaitAtEnd}`);
		if (!o.lifetimeMs) {
			t.is(c.lifetimeMs, null, key);
			continue;
		}
		t.like(c.lifetimeMs, { upTo: true }, key);
		// A percentile of the buckets is the bound of the bucket the exact one is in (HdrHistogram may round that up by 1 %).
		for (const p of ['p50', 'p99', 'max'] as const) {
			t.true([bucketMs(o.lifetimeMs[p]), bucketMs(o.lifetimeMs[p] / 1.01)].includes(c.lifetimeMs![p]), `${key} ${p}: ${c.lifetimeMs![p]} for ${o.lifetimeMs[p]}`);
		}
	}
	t.deepEqual(counts.victims.map((v) => [v.comm, v.call, v.target, v.failures]), records.victims.map((v) => [v.comm, v.call, v.target, v.failures]), 'the same victims');
	for (const [i, v] of records.victims.entries()) {
		for (const [j, h] of v.heldBy.entries()) t.true(Math.abs(counts.victims[i]!.heldBy[j]!.portsHeld - h.portsHeld) <= 2 * entriesPerSecond, `${v.comm} held by ${h.label}`);
	}
}

for (const name of ['exhaustion', 'server-closes']) {
	test(`a window of counts gives the report its records give (${name} capture)`, (t) => {
		const { records, counts, folded } = recordBoth(readCaptureFile(`test/fixtures/captures/${name}.twtcap`));
		t.true(counts.items.some((i) => i.type === 'counts'), 'counts frames');
		t.true(counts.header.countLayout !== undefined);
		const kept = counts.items.flatMap((i) => (i.type === 'events' ? [...Array(i.count).keys()].map((k) => i.records[k * EVENT_SIZE + EVENT_FIELDS.kind.offset]) : []));
		t.deepEqual([...new Set(kept)].sort(), [...new Set(kept.filter((k) => k === EventKind.TASK || k === EventKind.CONNECT_FAIL || k === EventKind.BIND_FAIL))].sort(), 'only the records counts do not stand for');
		const options = { by: 'process' as const, top: 20, file: name };
		sameReport(t, replayCapture(records, options), replayCapture(counts, options), folded, 100);
	});
}

test('counts across minutes: entries held for a TIME_WAIT length, and a window of counts far smaller than its records', (t) => {
	// 10 connections a second for 150 s by one client, lifetimes of 3 ms; a walk of the empty namespace at the start.
	const T0 = 5000 * S;
	const records: (RawRecord | { id: number; pid: number; comm: string })[] = [{ id: 7, pid: 4242, comm: 'churner' }];
	for (let s = 0; s < 150; s++) {
		for (let k = 0; k < 10; k++) {
			const cookie = BigInt(1 + s * 10 + k);
			const tsUs = BigInt(T0 + s * S + k * 90_000);
			const tuple = { cookie, family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40000 + ((s * 10 + k) % 20000), dport: 7000, netns: 1, owner: 7, side: 1, ownerSource: 1 };
			records.push({ kind: EventKind.CONNECT, tsUs, oldState: 2, newState: 1, ...tuple });
			records.push({ kind: EventKind.TIME_WAIT, tsUs: tsUs + 3000n, substate: 6, lifetimeUs: 3000n, ...tuple });
		}
	}
	const settings = { portRange: { low: 32768, high: 60999 }, reservedPorts: new Set<number>(), finTimeoutSec: 60 };
	const source: Capture = {
		header: captureHeader({ startedAt: new Date(0).toISOString(), clock: { startUs: T0, epochOffsetUs: 0 }, filters: { netns: [] }, walkIntervalMs: 60_000, namespaces: [] }),
		items: [
			{ type: 'walk', walk: { netns: 1, takenAtUs: T0, settings, listeners: [], sockets: Buffer.alloc(0) } },
			{ type: 'events', records: new Uint8Array(recordsBuffer(records)), count: records.length },
		],
		trailer: { endUs: T0 + 150 * S, reason: 'test', events: records.length, walks: 1, drops: NO_LOSS },
		incomplete: undefined, bytes: 0,
	};
	const { records: byRecords, counts: byCounts, folded } = recordBoth(source);
	const options = { by: 'process' as const, top: 5, file: 'synthetic' };
	const [a, b] = [replayCapture(byRecords, options), replayCapture(byCounts, options)];
	sameReport(t, a, b, folded, 10);
	t.like(b.offenders[0], { comm: 'churner', pid: 4242, connections: 1500, timeWaitEntries: 1500, lifetimeMs: { p50: 5, p99: 5, max: 5, upTo: true } });
	t.true(JSON.stringify(b.offenders[0]!.advice).includes('each open for at most 5 ms (median)'), 'the advice says a bound, not a measure');
	t.true(JSON.stringify(a.offenders[0]!.advice).includes('each open for 3 ms (median)'));
	t.true(a.offenders[0]!.timeWaitAtEnd >= 590 && a.offenders[0]!.timeWaitAtEnd <= 610, `records: ${a.offenders[0]!.timeWaitAtEnd} held after 150 s at 10/s`);
	const bytes = (c: Capture) => c.items.reduce((n, i) => n + (i.type === 'events' ? i.records.byteLength : i.type === 'counts' ? i.keys.byteLength + i.values.byteLength : i.walk.sockets.length * SOCK_SIZE), 0);
	// Both windows start with the task records (FlightRecorder.capture), and hold them where they came too.
	t.is(bytes(byRecords), (records.length + 1) * EVENT_SIZE, 'records: 96 bytes a transition');
	t.is(bytes(byCounts), 150 * COUNTS_ENTRY_BYTES + 2 * EVENT_SIZE, 'counts: a key a second, whatever the rate');
});

test('a counts frame that does not hold its keys, or holds a value that is not a count, makes the capture corrupt', (t) => {
	const from = readCaptureFile('test/fixtures/captures/exhaustion.twtcap');
	const { counts } = recordBoth(from);
	const r = newRecorder('counts', from);
	const item = counts.items.find((i) => i.type === 'counts')!;
	if (item.type !== 'counts') return t.fail();
	const values = Float64Array.from(item.values);
	values[0] = -1;
	r.beginCounts(from.header.clock.startUs + S, from.header.clock.startUs + S);
	r.addCounts(item.keys.toString('hex', 0, item.keys.byteLength / item.count), values);
	const error = t.throws(() => parseCapture(r.capture(undefined, from.header.clock.startUs + 2 * S)));
	t.regex(error!.message, /corrupt capture: a counts frame holds -1, not a count/);
	const good = newRecorder('counts', from).capture(undefined, from.header.clock.startUs);
	const noLayout = JSON.parse(good.subarray(20, 20 + good.readUInt32LE(12)).toString());
	t.truthy(noLayout.countLayout, 'a counts-keeping recorder names the counters\' layout');
});

/** When churnedRecorder's `perSecond` entries of second `s` came: evenly over the second before its reading. */
function entriesOf(s: number, perSecond: number, T0 = 9000 * S): number[] {
	return Array.from({ length: perSecond }, (_, i) => T0 + (s - 1) * S + Math.floor(((i + 0.5) * S) / perSecond));
}

/** A recorder keeping counts, fed `seconds` of a churner making `perSecond` connections to one destination, read once a second. */
function churnedRecorder(seconds: number, perSecond: number, wheel?: WheelClock, oddCounted = true) {
	const T0 = 9000 * S;
	const w = wheel && new TimeWaitWheel(wheel);
	let keyHex = '';
	const header = captureHeader({ startedAt: new Date(0).toISOString(), clock: { startUs: T0, epochOffsetUs: 0 }, filters: { netns: [] }, walkIntervalMs: 60_000, namespaces: [] });
	const from: Capture = { header, items: [], trailer: undefined, incomplete: undefined, bytes: 0 };
	const r = newRecorder('counts', from, wheel);
	r.addEvents(Buffer.from(recordsBuffer([{ id: 7, pid: 4242, comm: 'churner' }])), T0);
	for (let s = 1; s <= seconds; s++) {
		const one = new CountTable();
		const tuple = { cookie: 1n, family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40000, dport: 7000, netns: 1, owner: 7, side: 1, ownerSource: 1 };
		foldRecords(new Uint8Array(recordsBuffer([{ kind: EventKind.TIME_WAIT, tsUs: BigInt(T0 + s * S), substate: 6, lifetimeUs: 3000n, oldState: 1, ...tuple }])), one);
		[keyHex] = [...one.rows.keys()] as [string];
		const row = one.rows.get(keyHex)!;
		row[COUNT_COLUMN.timeWait] = perSecond;
		// The kernel counts those whose timers went into odd buckets (time_wait_odd), where its wheel's clock is known.
		row[COUNT_COLUMN.timeWaitOdd] = w && oddCounted ? entriesOf(s, perSecond).filter((us) => endsOddBucket(wheel!, w.endUs(us))).length : 0;
		row[COUNT_COLUMN.lifetime] = perSecond;
		row[COUNT_COLUMN.lifetimeCount] = perSecond;
		r.beginCounts(T0 + s * S, T0 + s * S);
		r.addCounts(keyHex, row);
		r.tick(T0 + s * S);
	}
	return { r, T0 };
}

test('a window of counts starts with the entries still held from before it, by their owner: its history', (t) => {
	const { r, T0 } = churnedRecorder(150, 10);
	const capture = parseCapture(r.capture(30_000, T0 + 150 * S));
	t.is(capture.header.clock.startUs, T0 + 120 * S);
	t.is(capture.header.countsFromUs, T0 + 55 * S, 'the counts of the 65 s before the window');
	const report = replayCapture(capture, { by: 'process', top: 5, file: 'window' });
	const o = report.offenders[0]!;
	t.like(o, { comm: 'churner', pid: 4242, timeWaitEntries: 300, connections: 0 }, 'entries made within the window only');
	// Held at the end: the entries of the last 60 s, 30 of them read before the window began.
	t.is(o.timeWaitAtEnd, 600);
	t.is(o.peakTimeWait, 600);
	t.is(report.totals.timeWaitEntries, 300);
});

test('walks kept beside counts leave out their timewait sockets once the recorder has counted for a TIME_WAIT length', (t) => {
	const { r, T0 } = churnedRecorder(80, 10);
	const settings = { portRange: { low: 32768, high: 60999 }, reservedPorts: new Set<number>(), finTimeoutSec: 60 };
	const tw = (cookie: number) => sockRecord({ cookie, sport: 40000 + cookie, state: 6, substate: 6, expiresUs: T0 + 100 * S, netns: 1 });
	const open = sockRecord({ cookie: 99, sport: 41000, state: 1, netns: 1 });
	const early = { netns: 1, takenAtUs: T0 + 10 * S, settings, listeners: [], sockets: Buffer.concat([tw(1), tw(2), open]) };
	const late = { netns: 1, takenAtUs: T0 + 70 * S, settings, listeners: [], sockets: Buffer.concat([tw(3), tw(4), tw(5), open]) };
	const { r: r2 } = churnedRecorder(0, 0);
	r2.addWalk(early, early.takenAtUs);
	r.addWalk(late, late.takenAtUs);
	const walkOf = (c: Capture) => c.items.find((i) => i.type === 'walk');
	const kept = walkOf(parseCapture(r2.capture(undefined, T0 + 20 * S)));
	t.like(kept?.type === 'walk' && kept.walk, { timeWaitOmitted: undefined }, 'within its first 65 s: whole (sockets older than the recorder)');
	t.is(kept?.type === 'walk' && kept.walk.sockets.length, 3 * SOCK_SIZE);
	const window = parseCapture(r.capture(undefined, T0 + 80 * S));
	const stripped = walkOf(window);
	t.like(stripped?.type === 'walk' && stripped.walk, { timeWaitOmitted: 3 });
	t.is(stripped?.type === 'walk' && stripped.walk.sockets.length, SOCK_SIZE, 'the open connection only');
	const report = replayCapture(window, { by: 'process', top: 5, file: 'window' });
	t.is(report.offenders.find((o) => o.comm === '(before start)'), undefined, 'no socket of the walk is taken as older than the counts');
	t.is(report.offenders[0]!.timeWaitAtEnd, 600);
});

test('top --replay of a window of counts: the same snapshot as live would show, entries held by their owner, rates per second', (t) => {
	const { r, T0 } = churnedRecorder(150, 10);
	const replay = new CaptureReplay(parseCapture(r.capture(30_000, T0 + 150 * S)));
	replay.advanceTo(replay.endUs);
	const snap = replay.reply({ by: 'process', sort: 'timeWait', windowMs: 10_000 }).snapshot;
	const row = snap.rows.find((x) => x.comm === 'churner');
	t.like(row, { pid: 4242, timeWait: 600 });
	t.true(Math.abs(row!.timeWaitPerSec - 10) < 1.5, `${row!.timeWaitPerSec} TIME_WAIT entries a second`);
	t.is(snap.rows.find((x) => x.comm === '(before start)'), undefined);
});

test('a window of counts keeps the timer wheel\'s clock: its replay ends the entries in the kernel\'s buckets, as the live model does', (t) => {
	const wheel: WheelClock = { hz: 250, jiffies: 4_300_000_123, atUs: 9000 * S - 3 * S + 1_234 };
	const { r, T0 } = churnedRecorder(150, 10, wheel);
	const capture = parseCapture(r.capture(30_000, T0 + 150 * S));
	t.deepEqual(capture.header.wheel, wheel);
	const replay = new CaptureReplay(capture);
	replay.advanceTo(replay.endUs);
	const held = replay.reply({ by: 'process', sort: 'timeWait', windowMs: 10_000 }).snapshot.rows.find((x) => x.comm === 'churner')!.timeWait;
	// Each reading's 10 entries came over the second before it, and end in the buckets the wheel put them in.
	const w = new TimeWaitWheel(wheel);
	let expected = 0;
	for (let s = 1; s <= 150; s++) expected += entriesOf(s, 10).filter((us) => w.endUs(us) > T0 + 150 * S).length;
	t.is(held, expected);
	t.not(held, 600, 'not 60 s after each reading');
	t.throws(() => parseCapture(withHeader(r.capture(30_000, T0 + 150 * S), (json) => json.replace('"hz":250', '"hz":0'))), { message: /header wheel is malformed/ });
});

test('a window of counts in the counters\' earlier layout (no time_wait_odd) still replays: its entries spread over each reading\'s second', (t) => {
	const wheel: WheelClock = { hz: 250, jiffies: 4_300_000_123, atUs: 9000 * S - 3 * S + 1_234 };
	const { r, T0 } = churnedRecorder(150, 10, wheel, false);
	const today = parseCapture(r.capture(30_000, T0 + 150 * S)).header.countLayout!;
	const [earlier] = Object.entries(READABLE_COUNT_LAYOUTS).find(([, l]) => l.columns === COUNT_COLUMN.timeWaitOdd)!;
	const capture = parseCapture(withHeader(r.capture(30_000, T0 + 150 * S), (json) => json.replace(today, earlier)));
	t.is(capture.header.countLayout, earlier);
	const replay = new CaptureReplay(capture);
	replay.advanceTo(replay.endUs);
	const held = replay.reply({ by: 'process', sort: 'timeWait', windowMs: 10_000 }).snapshot.rows.find((x) => x.comm === 'churner')!.timeWait;
	let expected = 0;
	const w = new TimeWaitWheel(wheel);
	const parts: number[] = [];
	for (let s = 1; s <= 150; s++) {
		const count = w.split(T0 + (s - 1) * S, T0 + s * S, 10, parts);
		for (let i = 0; i < 2 * count; i += 2) expected += parts[i]! > T0 + 150 * S ? parts[i + 1]! : 0;
	}
	t.is(held, expected);
	t.throws(() => parseCapture(withHeader(r.capture(30_000, T0 + 150 * S), (json) => json.replace(today, '0123456789abcdef'))), { message: /counters' layout \(0123456789abcdef\) is not this twtrace's/ });
});

/** The capture with its header's JSON rewritten (and its checksum made to match). */
function withHeader(capture: Buffer, rewrite: (json: string) => string): Buffer {
	const header = Buffer.from(rewrite(capture.subarray(20, 20 + capture.readUInt32LE(12)).toString()));
	const pre = Buffer.from(capture.subarray(0, 20));
	pre.writeUInt32LE(header.length, 12);
	pre.writeUInt32LE(crc32(header), 16);
	return Buffer.concat([pre, header, capture.subarray(20 + capture.readUInt32LE(12))]);
}

test('readings of one second (the upkeep\'s and each scrape\'s) are one frame, their differences summed; a served window includes the open second', (t) => {
	const { r, T0 } = churnedRecorder(0, 0);
	const one = new CountTable();
	foldRecords(new Uint8Array(recordsBuffer([{ kind: EventKind.TIME_WAIT, tsUs: BigInt(T0), substate: 6, cookie: 1n, family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40000, dport: 7000, netns: 1, owner: 7, side: 1, ownerSource: 1 }])), one);
	const [[keyHex, row]] = [...one.rows] as [[string, Float64Array]];
	for (const atUs of [T0 + 1.0 * S, T0 + 1.3 * S, T0 + 1.6 * S, T0 + 2.2 * S]) {
		r.beginCounts(atUs, atUs);
		r.addCounts(keyHex, row);
		r.tick(atUs);
	}
	const frames = parseCapture(r.capture(undefined, T0 + 2.5 * S)).items.filter((i) => i.type === 'counts');
	t.deepEqual(frames.map((f) => f.type === 'counts' && [f.atUs, f.count, f.values[COUNT_COLUMN.timeWait]]), [[T0 + 1.6 * S, 1, 3], [T0 + 2.2 * S, 1, 1]], 'a frame for second 1 (three readings), and the open second 2');
});

test('a walk the kernel left counted timewait sockets out of keeps their number through a window: the namespace\'s walked count is whole in the replay', (t) => {
	const { r, T0 } = churnedRecorder(20, 10);
	const settings = { portRange: { low: 32768, high: 60999 }, reservedPorts: new Set<number>(), finTimeoutSec: 60 };
	// Armed before counting began: still in the walk. The 5,000 armed since were left out by dump_tcp.
	const before = sockRecord({ cookie: 1, sport: 40001, state: 6, substate: 6, expiresUs: T0 + 50 * S, netns: 1 });
	const open = sockRecord({ cookie: 99, sport: 41000, state: 1, netns: 1 });
	r.addWalk({ netns: 1, takenAtUs: T0 + 15 * S, settings, listeners: [], sockets: Buffer.concat([before, open]), timeWaitCounted: 5000 }, T0 + 15 * S);
	const window = parseCapture(r.capture(undefined, T0 + 20 * S));
	const walk = window.items.find((i) => i.type === 'walk');
	t.like(walk?.type === 'walk' && walk.walk, { timeWaitCounted: 5000, timeWaitOmitted: undefined });
	const replay = new CaptureReplay(window);
	replay.advanceTo(replay.endUs);
	t.is(replay.model.namespaces.get(1)?.walkedTimeWait, 5001, 'the one walked and the 5,000 the kernel counted');
	t.is(replay.reply({ by: 'process', sort: 'timeWait', windowMs: 10_000 }).snapshot.rows.find((x) => x.comm === '(before start)')?.timeWait, 1);
});

test('frames name their keys by ids a window defines first: each frame reads back to its own keys, and keys no kept frame names are forgotten', (t) => {
	const T0 = 9000 * S;
	const header = captureHeader({ startedAt: new Date(0).toISOString(), clock: { startUs: T0, epochOffsetUs: 0 }, filters: { netns: [] }, walkIntervalMs: 60_000, namespaces: [] });
	const r = newRecorder('counts', { header, items: [], trailer: undefined, incomplete: undefined, bytes: 0 }, undefined, 60_000);
	r.addEvents(Buffer.from(recordsBuffer([{ id: 7, pid: 4242, comm: 'churner' }])), T0);
	/** The key of a churner's connections to port `dport`, and a second's differences for it. */
	const keyOf = (dport: number, atUs: number) => {
		const one = new CountTable();
		foldRecords(new Uint8Array(recordsBuffer([{ kind: EventKind.TIME_WAIT, tsUs: BigInt(atUs), substate: 6, cookie: 1n, family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40000, dport, netns: 1, owner: 7, side: 1, ownerSource: 1 }])), one);
		return [...one.rows][0]!;
	};
	const SECONDS = 2000;
	const bytesAt: number[] = [];
	for (let s = 1; s <= SECONDS; s++) {
		const atUs = T0 + s * S;
		r.beginCounts(atUs, atUs);
		// One destination every second, and one new each second: keys come and go.
		for (const dport of [7000, 10_000 + s]) r.addCounts(...keyOf(dport, atUs));
		r.tick(atUs);
		bytesAt.push(r.stats(atUs).bytes);
	}
	const window = parseCapture(r.capture(undefined, T0 + SECONDS * S + S / 2));
	const frames = window.items.flatMap((i) => (i.type === 'counts' ? [i] : []));
	t.true(frames.length >= 60, `${frames.length} frames`);
	for (const f of frames) {
		const s = Math.round((f.atUs - T0) / S);
		const expected = Buffer.concat([keyOf(7000, f.atUs)[0], keyOf(10_000 + s, f.atUs)[0]].map((hex) => Buffer.from(hex, 'hex')));
		t.deepEqual(f.keys, expected, `second ${s}: its own keys, in its order`);
	}
	// Kept: the last minute's frames and the 65 s of history before them, so about 125 keys besides the
	// steady one, and those named since the latest pruning (counts-frames.ts: at most twice as many,
	// and 256). Never forgetting, the recorder would know 1,000 more keys every 1,000 s.
	const [earlier, later] = [Math.max(...bytesAt.slice(500, 1000)), Math.max(...bytesAt.slice(-500))];
	t.true(later < 700 * KEY_ID_BYTES, `the recorder holds ${later} bytes`);
	t.true(later <= earlier * 1.1, `bounded: ${earlier} bytes at most in seconds 500 to 1,000, ${later} in the last 500`);
});

test('a key whose differences are all zeros is left out of its second\'s frame, and the frame still reads whole', (t) => {
	const { r, T0 } = churnedRecorder(0, 0);
	const one = new CountTable();
	foldRecords(new Uint8Array(recordsBuffer([{ kind: EventKind.TIME_WAIT, tsUs: BigInt(T0), substate: 6, cookie: 1n, family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40000, dport: 7000, netns: 1, owner: 7, side: 1, ownerSource: 1 }])), one);
	const [[keyHex, row]] = [...one.rows] as [[string, Float64Array]];
	const zeroHex = keyHex.replace(/^../, 'ff');
	r.beginCounts(T0 + 1.1 * S, T0 + 1.1 * S);
	r.addCounts(zeroHex, new Float64Array(COUNT_COLUMNS));
	r.addCounts(keyHex, row);
	r.tick(T0 + 1.1 * S);
	const frames = parseCapture(r.capture(undefined, T0 + 1.5 * S)).items.filter((i) => i.type === 'counts');
	t.deepEqual(frames.map((f) => f.type === 'counts' && [f.count, f.keys.toString('hex'), f.values[COUNT_COLUMN.timeWait]]), [[1, keyHex, 1]]);
});
