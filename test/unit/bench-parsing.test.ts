import test from 'ava';
import { countLine, type CounterResult } from '../../bench/line-counter.js';
import { parseTwtraceSummary } from '../../bench/tracers.js';
import { busyStretches, summariseProfile } from '../../bench/profile.js';
import { unaccountedTimeWait } from '../../bench/stats.js';
import { runsBetween } from '../../bench/bpf-stats.js';

const fresh = (): CounterResult => ({ lines: 0, timeWaitByPid: {}, lost: 0 });

test('the line counter tallies twtrace time_wait lines by pid and ignores other kinds', (t) => {
	const r = fresh();
	countLine('{"kind":"time_wait","ts":"2026-11-21T06:43:34.001Z","pid":4242,"tid":4243,"comm":"churn"}', r);
	countLine('{"kind":"time_wait","ts":"2026-11-21T06:43:34.002Z","pid":4242,"tid":4244,"comm":"churn"}', r);
	countLine('{"kind":"active_close","ts":"2026-11-21T06:43:34.002Z","pid":4242,"tid":4244,"comm":"churn"}', r);
	t.deepEqual(r, { lines: 3, timeWaitByPid: { 4242: 2 }, lost: 0 });
});

test('the line counter takes FIN_WAIT2|CLOSING -> CLOSE from bpftrace lines as TIME_WAIT, whatever the comm', (t) => {
	const r = fresh();
	countLine('Attaching 1 probe...', r);
	countLine('14 ksoftirqd/0 5 7', r);
	countLine('900 my worker 11 7', r); // a comm with a space
	countLine('900 my worker 4 5', r); // FIN_WAIT1 -> FIN_WAIT2: not an entry
	countLine('Lost 120 events', r);
	t.deepEqual(r, { lines: 5, timeWaitByPid: { 14: 1, 900: 1 }, lost: 120 });
});

test("twtrace's closing line gives events received and lost", (t) => {
	const stderr = 'twtrace: tracing TCP connections. Ctrl-C to stop.\n' +
		'twtrace: 374,539 events shown, 374,540 received in 7.1 s; 210,425 lost (ring full 210425, skipped runs 0, undecodable 0); 0 unattributed (map full), 0 without a known owner (opened before twtrace started)\n';
	t.like(parseTwtraceSummary(stderr), { events: 374_540, lost: 210_425 });
	t.regex(parseTwtraceSummary('twtrace: load BPF object: …').note!, /no summary line/);
});

test('a CPU profile is grouped by area: a sample counts once per area with a frame on its stack; idle is not busy', (t) => {
	const frame = (id: number, functionName: string, file: string, children: number[] = []) =>
		({ id, callFrame: { functionName, url: file ? `file:///x/dist/src/model/${file}` : '', lineNumber: 0 }, children });
	const profile = {
		nodes: [
			frame(1, '(root)', '', [8]),
			frame(8, 'drain', 'ring-reader.js', [2, 5, 6]), // the drain calls everything: its own time is what it runs itself
			frame(2, '#ingestOne', 'churn-model.js', [3, 4]),
			frame(3, 'add', 'time-wait.js', [7]),
			frame(4, 'recordLifetime', 'owners.js'),
			frame(5, '(garbage collector)', ''),
			frame(6, '(idle)', ''),
			frame(7, '#find', 'time-wait.js'), // add → #find: still one sample for the population
		],
		// 10 samples: 5 idle, 2 in #find (under add), 1 in recordLifetime, 1 in GC, 1 in the drain itself.
		samples: [6, 6, 6, 7, 7, 4, 5, 6, 6, 8],
		startTime: 0,
		endTime: 10_000,
	};
	const r = summariseProfile(profile, 3);
	const area = (prefix: string) => r.areas.find((a) => a.name.trim().startsWith(prefix))!;
	t.is(r.busyPctOfCore, 50);
	t.is(area('model: per-event ingest').pctOfBusy, 60);
	t.is(area('of which the TIME_WAIT population').pctOfBusy, 40);
	t.is(area('of which lifetime histograms').pctOfCore, 10);
	t.is(area('garbage collection').pctOfBusy, 20);
	t.is(area('ring drain and decode').pctOfBusy, 20, 'its own time only, not what it calls');
	t.is(area('socket walks').pctOfBusy, 0);
	t.is(area('per-event work').pctOfBusy, 80, 'ingest and the drain\'s own time, a sample once: not the GC');
	t.deepEqual(r.topSelf.map((f) => f.fn), ['#find (time-wait.js)', 'recordLifetime (owners.js)', '(garbage collector) (native)']);
});

test('with the process\'s CPU over the window, an area\'s CPU is its share of that, not of the wall time the samples cover', (t) => {
	const frame = (id: number, functionName: string, file: string, children: number[] = []) =>
		({ id, callFrame: { functionName, url: file ? `file:///x/dist/src/model/${file}` : '', lineNumber: 0 }, children });
	const profile = {
		nodes: [frame(1, '(root)', '', [2, 3, 4]), frame(2, '#ingestOne', 'churn-model.js'), frame(3, '(garbage collector)', ''), frame(4, '(idle)', '')],
		// 8 busy samples of 10 (the thread waited for a CPU in some), but the process ran 40 % of the window.
		samples: [2, 2, 2, 2, 2, 2, 3, 3, 4, 4],
		startTime: 0,
		endTime: 10_000,
		processCpuUs: 4_000,
	};
	const r = summariseProfile(profile, 3);
	t.is(r.busyPctOfCore, 80);
	t.is(r.processCpuPct, 40);
	t.is(r.areas.find((a) => a.name.startsWith('model: per-event ingest'))!.pctOfCore, 30);
	t.is(r.areas.find((a) => a.name === 'garbage collection')!.pctOfCore, 10);
});

test('busy stretches: runs of samples none idle, longest first, each with twtrace\'s functions on its heaviest path and the GC\'s share', (t) => {
	const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url, lineNumber: 0 }, children });
	const profile = {
		nodes: [
			frame(1, '(root)', '', [2, 5, 6]),
			frame(2, 'listOnTimeout', 'node:internal/timers', [3]), // node's own: not on the path, only where one ends
			frame(3, 'ingestCounts', 'file:///x/dist/src/model/counted.js', [4]),
			frame(4, 'recordLifetimes', 'file:///x/dist/src/model/owners.js'),
			frame(5, '(garbage collector)', ''),
			frame(6, '(idle)', ''),
		],
		// 1 ms apart: idle, 3 busy (2 ms: from the first busy sample to the idle one after), idle, 5 busy to the end (4 ms), idle.
		samples: [6, 3, 4, 5, 6, 4, 4, 4, 5, 4, 6],
		timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000],
		startTime: 0,
		endTime: 11_000,
	};
	const r = busyStretches(profile, 1, 5, 3);
	t.deepEqual(r.map((b) => [b.atS, b.ms]), [[0.006, 5], [0.002, 3]]);
	t.deepEqual(r[0]!.path, [
		{ fn: 'ingestCounts (counted.js)', pctOfSamples: 80 },
		{ fn: 'recordLifetimes (owners.js)', pctOfSamples: 80 },
	]);
	t.is(r[0]!.pathEnd, undefined, 'the path ends in twtrace\'s code');
	t.is(r[0]!.gcPct, 20);
	// ingestCounts holds two of three samples (one its own), recordLifetimes one: the path stops above it.
	t.deepEqual(r[1]!.path.map((f) => [f.fn, Math.round(f.pctOfSamples)]), [['ingestCounts (counted.js)', 67]]);
	t.is(busyStretches({ ...profile, samples: [6, 3, 3, 5, 6, 2, 2, 2, 2, 2, 6] }, 1)[0]!.pathEnd?.fn, 'listOnTimeout (timers)', 'a path that ends outside twtrace says where');
	t.deepEqual(busyStretches(profile, 4).map((b) => b.ms), [5], 'shorter than minMs: left out');
});

test('program run times between two readings: differences per program, busiest first, idle programs left out', (t) => {
	const before = new Map([
		['handle_inet_sock_set_state', { name: 'handle_inet_sock_set_state', runs: 100, ns: 40_000 }],
		['handle_inet_sock_set_state_nested', { name: 'handle_inet_sock_set_state_nested', runs: 100, ns: 5_000 }],
	]);
	const after = new Map([
		['handle_inet_sock_set_state', { name: 'handle_inet_sock_set_state', runs: 1100, ns: 440_000 }],
		['handle_inet_sock_set_state_nested', { name: 'handle_inet_sock_set_state_nested', runs: 100, ns: 5_000 }],
		['handle_connect_result', { name: 'handle_connect_result', runs: 10, ns: 900 }], // loaded meanwhile: all of it counts
	]);
	t.deepEqual(runsBetween(before, after), [
		{ name: 'handle_inet_sock_set_state', runs: 1000, ns: 400_000 },
		{ name: 'handle_connect_result', runs: 10, ns: 900 },
	]);
});

test('ground truth: reported losses of any kind cover missing TIME_WAIT up to their number; a silent gap or an overcount is not 0', (t) => {
	t.is(unaccountedTimeWait(1000, 1000, 0), 0, 'all delivered');
	t.is(unaccountedTimeWait(258_665, 257_441, 5_036), 0, 'the 1,224 missing are within the 5,036 events reported lost (of every kind)');
	t.is(unaccountedTimeWait(1000, 900, 40), 60, 'a silent loss: 60 neither delivered nor reported');
	t.is(unaccountedTimeWait(1000, 1010, 0), -10, 'delivered beyond the connections completed');
	t.is(unaccountedTimeWait(1000, 1010, 50), -10, 'losses do not hide an overcount');
});
