/**
 * The agent's flight recorder (src/pipeline/recorder.ts) with synthetic records and an explicit
 * clock: a window served stands alone (the task records events refer to, each namespace's table as
 * of the window's start), old frames go by age and by bytes, and a window's losses are its own.
 */
import test from 'ava';
import os from 'node:os';
import { captureHeader, type CaptureDrops } from '../../src/capture/format.js';
import { parseCapture } from '../../src/capture/reader.js';
import { EventKind, SOCK_FIELDS, SOCK_SIZE } from '../../src/event/layout.generated.js';
import { FlightRecorder } from '../../src/pipeline/recorder.js';
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

function recorder(maxBytes = 1 << 30, maxAgeMs = 600_000) {
	let drops = { ...NO_LOSS };
	const source = {
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
	t.true(stats.bytes <= 64 * 1024 + 256 * 1024, `kept ${stats.bytes} bytes`);
	const capture = parseCapture(r.capture(undefined, T0 + 301 * S));
	t.true(capture.header.clock.startUs >= T0 + 180 * S);
	t.is(capture.items.filter((i) => i.type === 'walk').length, 1, 'the trimmed walk is served as the window\'s base');
	const report = replayCapture(capture, { by: 'comm', top: 10, file: 'window' });
	t.is(report.offenders[0]!.comm, 'churn');
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
