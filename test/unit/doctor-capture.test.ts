/** The doctor's verdict rules, and the capture writer's size bound, without BPF. */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_THRESHOLDS, evaluate, inputFromSnapshot, type DoctorInput } from '../../src/doctor/check.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { snapshot } from '../../src/model/snapshot.js';
import { base } from '../helpers/events.js';
import { CAPTURE_VERSION, layoutFingerprint, READABLE_LAYOUTS, type CaptureHeader } from '../../src/capture/format.js';
import { CaptureWriter } from '../../src/capture/writer.js';
import { readCaptureFile } from '../../src/capture/reader.js';
import { EVENT_SIZE, SOCK_SIZE } from '../../src/event/layout.generated.js';

const settings = { portRange: { low: 32768, high: 60999 }, reservedPorts: new Set<number>(), finTimeoutSec: 60, twReuse: 2, timestamps: 1, maxTimeWaitBuckets: 262144 };
const input = (over: Partial<DoctorInput['namespaces'][number]> = {}): DoctorInput => ({
	namespaces: [{ netns: 1, timeWait: 100, settings, asked: false, overflowDelta: 0, ...over }],
	destinations: [], victims: [], holders: [], sampleSeconds: 1, watchedSeconds: 1,
});

test('doctor: the KB thresholds, 20,000 warns and 30,000 is critical', (t) => {
	t.is(evaluate(input({ timeWait: 19_999 }), DEFAULT_THRESHOLDS).exitCode, 0);
	t.is(evaluate(input({ timeWait: 20_000 }), DEFAULT_THRESHOLDS).exitCode, 1);
	t.is(evaluate(input({ timeWait: 30_000 }), DEFAULT_THRESHOLDS).exitCode, 2);
});

test('doctor judges the namespace\'s count now, not its last walk\'s: 30,000 entries since a walk of none are CRITICAL at once', (t) => {
	const S = 1_000_000;
	const T0 = 1000 * S;
	const model = new ChurnModel(T0);
	model.reconcile({ netns: 7, takenAtUs: T0, sockets: [], settings });
	let cookie = 1;
	model.ingest(Array.from({ length: 30_000 }, (_, i) => ({ ...base, netns: 7, cookie: cookie++, sport: 32768 + (i % 28000), tsUs: T0 + S + i * 10 })));
	const snap = snapshot(model, { by: 'process', sort: 'timeWait', nowUs: T0 + 2 * S, rateWindowUs: S });
	const doctorInput = inputFromSnapshot(snap, { asked: new Set(), unwalked: new Map(), sampleSeconds: 1, watchedSeconds: 1 });
	t.is(doctorInput.namespaces[0]!.timeWait, 30_000);
	const verdict = evaluate(doctorInput, DEFAULT_THRESHOLDS);
	t.is(verdict.exitCode, 2);
	t.regex(verdict.line, /'time_wait_7'=30000;20000;30000;0;262144/);
});

test('doctor: a count that is the last walk\'s (an agent with filters) says how old it is', (t) => {
	const verdict = evaluate(input({ timeWait: 25_000, walkedAgoSeconds: 42 }), DEFAULT_THRESHOLDS);
	t.regex(verdict.line, /netns 1: 25,000 TIME_WAIT at the last walk, 42 s ago/);
});

test('doctor: sysctls that do harm warn; an overflow warns only when it grew while sampling', (t) => {
	const recycle = evaluate(input({ settings: { ...settings, twRecycle: 1 } }), DEFAULT_THRESHOLDS);
	t.is(recycle.status, 'WARNING');
	t.regex(recycle.line, /tcp_tw_recycle=1 drops connections from clients behind NAT/);
	t.is(evaluate(input({ settings: { ...settings, twReuse: 1, timestamps: 0 } }), DEFAULT_THRESHOLDS).status, 'WARNING');
	t.is(evaluate(input({ settings: { ...settings, timeWaitOverflow: 500 } }), DEFAULT_THRESHOLDS).status, 'OK');
	t.is(evaluate(input({ settings: { ...settings, timeWaitOverflow: 500 }, overflowDelta: 20 }), DEFAULT_THRESHOLDS).status, 'WARNING');
	const fin = evaluate(input({ settings: { ...settings, finTimeoutSec: 15 } }), DEFAULT_THRESHOLDS);
	t.is(fin.status, 'OK');
	t.true(fin.findings.some((f) => /does not shorten TIME_WAIT/.test(f.message)));
});

test('doctor: a namespace asked for and not walkable is UNKNOWN; a CRITICAL finding still wins', (t) => {
	const unwalked = input({ timeWait: null, asked: true, error: 'no way in' });
	t.is(evaluate(unwalked, DEFAULT_THRESHOLDS).exitCode, 3);
	unwalked.namespaces.push({ netns: 2, timeWait: 40_000, settings, asked: true, overflowDelta: 0 });
	t.is(evaluate(unwalked, DEFAULT_THRESHOLDS).exitCode, 2);
});

test('capture writer: a frame that would pass --max-size is refused, and the file still ends properly', (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-cap-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'small.twtcap');
	const header: CaptureHeader = {
		format: 'twtrace-capture', version: CAPTURE_VERSION, tool: 'test', host: { hostname: 'h', kernel: 'k', arch: 'x64', byteOrder: os.endianness() },
		startedAt: new Date(0).toISOString(), clock: { startUs: 0, epochOffsetUs: 0 }, layout: layoutFingerprint(), eventSize: EVENT_SIZE, sockSize: SOCK_SIZE,
		filters: { netns: [] }, walkIntervalMs: 5000, namespaces: [],
	};
	const w = new CaptureWriter(file, header, { maxBytes: 8192 });
	const records = new Uint8Array(EVENT_SIZE * 10); // kind 0: undecodable, fine for the format
	t.true(w.writeEvents(records, 10));
	t.false(w.writeEvents(new Uint8Array(EVENT_SIZE * 100), 100), 'past the bound');
	t.true(w.full);
	w.close({ endUs: 1, reason: 'max-size', drops: { ringFull: 0, mapFull: 0, missedRuns: 0, walkMissed: 0, unwitnessed: 0, ownerMissing: 0, decodeErrors: 0 } });
	t.true(fs.statSync(file).size <= 8192);
	const c = readCaptureFile(file);
	t.is(c.trailer?.events, 10);
	t.throws(() => new CaptureWriter(file, header, { maxBytes: 8192 }), { message: /exists; use --force/ });
});

test('capture layout: the committed fingerprint is this build\'s (a layout change must raise CAPTURE_VERSION)', async (t) => {
	const { LAYOUT_FINGERPRINT } = await import('../../src/capture/format.js');
	t.is(layoutFingerprint(), LAYOUT_FINGERPRINT, 'struct twt_event or twt_sock changed: raise CAPTURE_VERSION, then update LAYOUT_FINGERPRINT');
});

test('capture layout: an earlier layout that differs only where padding became a field still reads; any other is refused with the way out', (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-cap-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const write = (layout: string) => {
		const file = path.join(dir, `${layout}.twtcap`);
		const header: CaptureHeader = {
			format: 'twtrace-capture', version: 5, tool: 'twtrace 0.0.9', host: { hostname: 'h', kernel: 'k', arch: 'x64', byteOrder: os.endianness() },
			startedAt: new Date(0).toISOString(), clock: { startUs: 0, epochOffsetUs: 0 }, layout, eventSize: EVENT_SIZE, sockSize: SOCK_SIZE,
			filters: { netns: [] }, walkIntervalMs: 5000, namespaces: [],
		};
		new CaptureWriter(file, header, { maxBytes: 8192 }).close({ endUs: 1, reason: 'done', drops: { ringFull: 0, mapFull: 0, missedRuns: 0, walkMissed: 0, unwitnessed: 0, ownerMissing: 0, decodeErrors: 0 } });
		return file;
	};
	for (const layout of Object.keys(READABLE_LAYOUTS)) t.is(readCaptureFile(write(layout)).header.layout, layout);
	t.throws(() => readCaptureFile(write('0123456789abcdef')), { message: /record layout \(0123456789abcdef\) is not this twtrace's .*replay it with the twtrace version that recorded it \(twtrace 0\.0\.9\)/ });
	t.throws(() => readCaptureFile(write('constructor')), { message: /record layout/ }, 'no inherited name passes for a layout');
});
