import test from 'ava';
import { countLine, type CounterResult } from '../../bench/line-counter.js';
import { parseTwtraceSummary } from '../../bench/tracers.js';

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
