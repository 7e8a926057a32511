/**
 * The agent's flight recorder (src/pipeline/recorder.ts) with synthetic records and an explicit
 * clock: a window served stands alone (the task records events refer to, each namespace's table as
 * of the window's start), old frames go by age and by bytes, and a window's losses are its own.
 */
import test from 'ava';
import os from 'node:os';
import { captureHeader, type CaptureDrops } from '../../src/capture/format.js';
import { parseCapture } from '../../src/capture/reader.js';
import { EVENT_FIELDS, EVENT_SIZE, EventKind, SOCK_FIELDS, SOCK_SIZE } from '../../src/event/layout.generated.js';
import { CHUNK_BYTES, chunkBytesFor, FlightRecorder } from '../../src/pipeline/recorder.js';
import { replayCapture } from '../../src/report/from-capture.js';
import { recordsBuffer } from '../../testbed/records.js';

const S = 1_000_000;
const T0 = 1000 * S;
const NO_LOSS: CaptureDrops = { ringFull: 0, mapFull: 0, missedRuns: 0, ownerMissing: 0, decodeErrors: 0, walkMissed: 0, unwitnessed: 0 };
const settings = { portRange: { low: 40000, high: 40099 }, reservedPorts: new Set<number>(), finTimeoutSec: 60 };

function timeWaitSock(cookie: number, sport: number): Buffer {
	const b = Buffer.alloc(SOCK_SIZE);
	b.writeBigUInt64LE(BigInt(cookie), SOCK_FIELDS.cookie.offset);
	b.writeUInt32LE(1, SOCK_FIELDS.netns.offset);
	b.writeUInt16LE(2, SOCK_FIELDS.family.offset); // AF_INET
	b.set([10, 200, 0, 1], SOCK_FIELDS.saddr.offset);
	b.set([10, 200, 0, 2], SOCK_FIELDS.daddr.offset);
	b.writeUInt16LE(sport, SOCK_FIELDS.sport.offset);
	b.writeUInt16LE(7000, SOCK_FIELDS.dport.offset);
	b.writeUInt8(6, SOCK_FIELDS.state.offset);
	b.writeUInt8(6, SOCK_FIELDS.substate.offset);
	return b;
}

/** A task record, then a connect and a time_wait of one connection by it, at `atS`. */
function connection(task: number, comm: string, cookie: number, atS: number): Buffer {
	const tsUs = BigInt(T0 + atS * S);
	const tuple = { cookie: BigInt(cookie), family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40000 + (cookie % 100), dport: 7000, netns: 1, owner: task, side: 1, ownerSource: 1 };
	return Buffer.from(recordsBuffer([
		{ id: task, pid: task, comm },
		{ kind: EventKind.CONNECT, tsUs, ...tuple },
		{ kind: EventKind.TIME_WAIT, tsUs: tsUs + 1000n, substate: 6, ...tuple },
	]));
}

function recorder(maxBytes = 1 << 30, maxAgeMs = 600_000, clockUs?: () => number) {
	let drops = { ...NO_LOSS };
	const source = {
		clockUs: clockUs ?? (() => T0),
		header: (startUs: number) => captureHeader({ startedAt: new Date(0).toISOString(), clock: { startUs, epochOffsetUs: 0 }, filters: { netns: [] }, walkIntervalMs: 60_000, namespaces: [] }),
		drops: () => drops,
		cgroups: () => ({}),
		describe: () => 'test recorder',
	};
	const r = new FlightRecorder({ maxBytes, maxAgeMs }, source, T0);
	return { r, setDrops: (d: Partial<CaptureDrops>) => (drops = { ...drops, ...d }) };
}

test('a window holds the task records its events need and each namespace\'s table as of its start', (t) => {
	const { r } = recorder();
	r.addWalk({ netns: 1, takenAtUs: T0, settings, listeners: [], sockets: Buffer.concat([timeWaitSock(1, 40001), timeWaitSock(2, 40002)]) }, T0);
	r.addEvents(connection(500, 'early', 10, 1), T0 + 1 * S); // its task record only here, before the window
	r.addWalk({ netns: 1, takenAtUs: T0 + 60 * S, settings, listeners: [], sockets: Buffer.concat([timeWaitSock(2, 40002), timeWaitSock(3, 40003)]) }, T0 + 60 * S);
	r.tick(T0 + 62 * S);
	r.addEvents(connection(600, 'late', 20, 100), T0 + 100 * S);
	r.addEvents(Buffer.from(recordsBuffer([{ kind: EventKind.TIME_WAIT, tsUs: BigInt(T0 + 101 * S), cookie: 21n, family: 2, saddr: [10, 200, 0, 1], daddr: [10, 200, 0, 2], sport: 40021, dport: 7000, netns: 1, owner: 500, side: 1, ownerSource: 1, substate: 6 }])), T0 + 101 * S);

	const capture = parseCapture(r.capture(30_000, T0 + 110 * S)); // the last 30 s: after both walks
	t.is(capture.header.clock.startUs, T0 + 80 * S);
	const walks = capture.items.filter((i) => i.type === 'walk');
	t.is(walks.length, 1, 'one whole walk: the namespace as of the window\'s start');
	t.is(walks[0]!.type === 'walk' && walks[0]!.walk.sockets.length / SOCK_SIZE, 2);
	const report = replayCapture(capture, { by: 'process', top: 10, file: 'window' });
	const entered = report.offenders.filter((o) => o.timeWaitEntries > 0).map((o) => [o.comm, o.timeWaitEntries]).sort();
	t.deepEqual(entered, [['early', 1], ['late', 1]], 'the task of an event before the window is known');
	t.like(report.offenders.find((o) => o.comm === '(before start)'), { timeWaitAtEnd: 2 }, 'the sockets of the table at the window\'s start');
});

test('frames go by age and by bytes; what is served then starts later, still whole', (t) => {
	const { r } = recorder(64 * 1024, 120_000);
	r.addWalk({ netns: 1, takenAtUs: T0, settings, listeners: [], sockets: timeWaitSock(1, 40001) }, T0);
	for (let s = 1; s <= 300; s++) r.addEvents(connection(700 + (s % 3), 'churn', 1000 + s, s), T0 + s * S), r.tick(T0 + s * S + S);
	const stats = r.stats(T0 + 301 * S);
	t.true(stats.spanSeconds <= 121, `kept ${stats.spanSeconds} s`);
	t.is(stats.droppedBy, 'age', '120 s of these records take less than the 64 KiB');
	t.true(stats.bytes <= 64 * 1024 + 256 * 1024, `kept ${stats.bytes} bytes`);
	const capture = parseCapture(r.capture(undefined, T0 + 301 * S));
	t.true(capture.header.clock.startUs >= T0 + 180 * S);
	t.is(capture.items.filter((i) => i.type === 'walk').length, 1, 'the trimmed walk is served as the window\'s base');
	const report = replayCapture(capture, { by: 'comm', top: 10, file: 'window' });
	t.is(report.offenders[0]!.comm, 'churn');
});

test('a recorder smaller than a chunk holds as much of a burst as its bound allows', (t) => {
	// 1,000 connections in one second: 3,000 records, 288,000 bytes. A chunk of CHUNK_BYTES is larger
	// than the whole 64 KiB bound: each was dropped as it was sealed, and only the last second's
	// remainder stayed (chunkBytesFor).
	const maxBytes = 64 * 1024;
	t.is(chunkBytesFor(maxBytes) % EVENT_SIZE, 0, 'whole records');
	t.true(chunkBytesFor(maxBytes) <= maxBytes / 4);
	t.is(chunkBytesFor(1 << 30), CHUNK_BYTES);
	const { r } = recorder(maxBytes);
	t.is(r.stats(T0).droppedBy, null, 'nothing dropped yet: it holds all since its start');
	for (let i = 0; i < 1000; i++) r.addEvents(connection(700, 'burst', 5000 + i, 1), T0 + S);
	r.tick(T0 + 2 * S);
	const kept = r.stats(T0 + 2 * S).bytes;
	t.is(r.stats(T0 + 2 * S).droppedBy, 'size');
	t.true(kept <= maxBytes && kept >= (3 * maxBytes) / 4, `kept ${kept} of ${maxBytes} bytes`);
	const report = replayCapture(parseCapture(r.capture(undefined, T0 + 2 * S)), { by: 'comm', top: 10, file: 'window' });
	const burst = report.offenders.find((o) => o.comm === 'burst');
	const inBound = Math.floor(maxBytes / (3 * EVENT_SIZE));
	t.true(burst !== undefined && burst.timeWaitEntries >= (3 * inBound) / 4 && burst.timeWaitEntries <= inBound, `${burst?.timeWaitEntries} of the 1,000 served, ${inBound} fit`);
});

test('a window\'s losses are those since its start, not since the agent started', (t) => {
	const { r, setDrops } = recorder();
	setDrops({ ringFull: 40 });
	r.addEvents(connection(1, 'a', 1, 1), T0 + 1 * S);
	r.tick(T0 + 3 * S);
	setDrops({ ringFull: 45 });
	r.addEvents(connection(1, 'a', 2, 100), T0 + 100 * S);
	const capture = parseCapture(r.capture(10_000, T0 + 105 * S));
	t.is(capture.trailer!.drops.ringFull, 5);
	t.is(os.endianness(), capture.header.host.byteOrder);
});

test('a walk too large to keep leaves only its settings: windows are served without it, and say so', (t) => {
	const { r } = recorder();
	r.addWalk({ netns: 1, takenAtUs: T0, settings: { ...settings, portRange: { low: 40000, high: 40049 } }, listeners: [], sockets: new Uint8Array(), omittedBytes: 64 * 1_000_000 }, T0);
	r.addEvents(connection(700, 'churn', 1, 1), T0 + S);
	const capture = parseCapture(r.capture(undefined, T0 + 2 * S));
	t.is(capture.items.filter((i) => i.type === 'walk').length, 0, 'an empty table would have removed every TIME_WAIT entry');
	t.deepEqual(capture.header.namespaces.map((n) => [n.netns, n.settings.portRange.high]), [[1, 40049]]);
	t.regex(capture.trailer!.reason, /1 socket walks were too large to keep/);
	t.is(r.omittedWalks, 1);
	const report = replayCapture(capture, { by: 'process', top: 10, file: 'window' });
	t.like(report.offenders.find((o) => o.comm === 'churn'), { timeWaitEntries: 1 });
});

test('quiet seconds each keep their own records, though one staging chunk serves them all', (t) => {
	const { r } = recorder();
	for (let s = 1; s <= 3; s++) {
		r.addEvents(connection(800 + s, `quiet${s}`, 100 + s, s), T0 + s * S);
		r.tick(T0 + s * S + S); // a second later: sealed, copied out, the chunk kept for the next
	}
	const capture = parseCapture(r.capture(undefined, T0 + 10 * S));
	const frames = capture.items.filter((i) => i.type === 'events').slice(1); // the first frame: the task records
	t.deepEqual(frames.map((f) => f.type === 'events' && f.count), [3, 3, 3]);
	const report = replayCapture(capture, { by: 'process', top: 10, file: 'window' });
	t.deepEqual(report.offenders.filter((o) => o.timeWaitEntries > 0).map((o) => o.comm).sort(), ['quiet1', 'quiet2', 'quiet3']);
});

/** Copies `records` into ring-like memory, each after an 8-byte header as the kernel frames them, and keeps them from there. */
function keepFromRing(r: FlightRecorder, records: Buffer): void {
	const ring = new Uint32Array((records.length / EVENT_SIZE) * (EVENT_SIZE + 8) / 4 + 2);
	const bytes = Buffer.from(ring.buffer);
	for (let i = 0, at = 8; i < records.length; i += EVENT_SIZE, at += EVENT_SIZE + 8) {
		records.copy(bytes, at, i, i + EVENT_SIZE);
		r.keep(ring, at);
	}
	bytes.fill(0xee); // the ring moves on: the recorder must have kept copies
}

test('records kept one at a time from ring memory serve the same window as the same records in batches', (t) => {
	let nowUs = T0;
	const batches = recorder().r;
	const single = recorder(1 << 30, 600_000, () => nowUs).r;
	for (let s = 1; s <= 5; s++) {
		nowUs = T0 + s * S;
		const records = Buffer.concat([connection(900 + (s % 2), `c${s % 2}`, 300 + s, s), connection(900 + (s % 2), `c${s % 2}`, 400 + s, s)]);
		batches.addEvents(records, nowUs);
		keepFromRing(single, records);
		batches.tick(nowUs + S);
		single.tick(nowUs + S);
	}
	const [a, b] = [batches, single].map((r) => parseCapture(r.capture(undefined, T0 + 10 * S)));
	t.deepEqual(b!.items, a!.items, 'the same frames, task records first, record for record');
	t.is(b!.header.clock.startUs, a!.header.clock.startUs);
	t.deepEqual(b!.items.slice(1).map((i) => i.type === 'events' && i.count), [6, 6, 6, 6, 6]);
});

for (const path of ['keep', 'addEvents'] as const) {
	test(`chunks dropped as the bound is reached take new records; what a window serves is whole records, in order (${path})`, (t) => {
		const CHUNK_RECORDS = CHUNK_BYTES / EVENT_SIZE;
		const nowUs = T0 + S;
		const { r } = recorder(3 * CHUNK_BYTES, 600_000, () => nowUs);
		const total = 10 * CHUNK_RECORDS + 7;
		// Batches of a size that does not divide a chunk: records fill one chunk and go on in the next.
		const batch = Buffer.alloc(1000 * EVENT_SIZE);
		for (let n = 0; n < total;) {
			const k = Math.min(1000, total - n);
			batch.fill(0);
			for (let i = 0; i < k; i++, n++) {
				// Distinct records: connect events numbered by their cookie, no task records.
				batch.writeUInt8(EventKind.CONNECT, i * EVENT_SIZE + EVENT_FIELDS.kind.offset);
				batch.writeBigUInt64LE(BigInt(n), i * EVENT_SIZE + EVENT_FIELDS.cookie.offset);
			}
			if (path === 'keep') keepFromRing(r, batch.subarray(0, k * EVENT_SIZE));
			else r.addEvents(batch.subarray(0, k * EVENT_SIZE), nowUs);
		}
		const capture = parseCapture(r.capture(undefined, nowUs));
		const cookies: number[] = [];
		for (const item of capture.items) {
			if (item.type !== 'events') continue;
			const view = Buffer.from(item.records.buffer, item.records.byteOffset, item.records.byteLength);
			for (let at = 0; at < view.length; at += EVENT_SIZE) cookies.push(Number(view.readBigUInt64LE(at + EVENT_FIELDS.cookie.offset)));
		}
		t.true(cookies.length >= 2 * CHUNK_RECORDS, `a window of ${cookies.length} records`);
		t.is(cookies.at(-1), total - 1, 'ends with the last record kept');
		t.true(cookies.every((c, i) => i === 0 || c === cookies[i - 1]! + 1), 'consecutive: no chunk overwritten by a later one');
	});
}
