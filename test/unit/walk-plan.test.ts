/**
 * Whether a due walk is read (src/pipeline/walk-plan.ts): only when the kernel's own count of the
 * namespace's timewait sockets (sockstat tw) disagrees with the model's beyond what is in flight, a
 * setting changed, the model leaves sockets out, or 10 intervals passed since the last walk.
 */
import test from 'ava';
import { COUNTED_EARLY_US, COUNTED_LATE_US, FORCE_WALK_EVERY, timeWaitTolerance, walkNeeded, type WalkCheck } from '../../src/pipeline/walk-plan.js';
import { sockstatTimeWait } from '../../src/tracer/namespaces.js';
import { DEFAULT_PORT_RANGE } from '../../src/facts/netns-settings.js';

const S = 1_000_000;
const settings = { portRange: DEFAULT_PORT_RANGE, reservedPorts: new Set([8080]), finTimeoutSec: 60, maxTimeWaitBuckets: 262_144, timeWaitOverflow: 0 };
const check = (c: Partial<WalkCheck> = {}): WalkCheck => ({
	kernelTimeWait: 900_000, modelTimeWait: 900_000, seesEverySocket: true, settingsWalked: settings, settingsNow: { ...settings, reservedPorts: new Set([8080]) },
	walkedAtUs: 0, nowUs: 60 * S, walkIntervalMs: 60_000, ...c,
});

test('equal counts, same settings, walked within 10 intervals: the walk is not read', (t) => {
	t.false(walkNeeded(check()));
	t.false(walkNeeded(check({ modelTimeWait: 900_000 - timeWaitTolerance(900_000) })), 'at the tolerance');
	t.false(walkNeeded(check({ modelTimeWait: 900_000 + timeWaitTolerance(900_000) })));
});

test('a count beyond the tolerance either way, a changed setting, or nothing to compare: the walk is read', (t) => {
	t.is(timeWaitTolerance(0), 64);
	t.is(timeWaitTolerance(900_000), 64 + 450);
	t.true(walkNeeded(check({ modelTimeWait: 900_000 - timeWaitTolerance(900_000) - 1 })), 'entries the kernel never reported');
	t.true(walkNeeded(check({ modelTimeWait: 900_000 + timeWaitTolerance(900_000) + 1 })), 'taken over by tcp_tw_reuse, or ended by an RST');
	t.true(walkNeeded(check({ settingsNow: { ...settings, timeWaitOverflow: 1 } })), 'tcp_max_tw_buckets refused one');
	t.true(walkNeeded(check({ settingsNow: { ...settings, portRange: { low: 10000, high: 60999 } } })), 'the port range was widened');
	t.true(walkNeeded(check({ settingsNow: { ...settings, reservedPorts: new Set([8081]) } })));
	t.true(walkNeeded(check({ kernelTimeWait: undefined })), 'the kernel gave no count');
	t.true(walkNeeded(check({ seesEverySocket: false })), 'a filtered model counts part of the namespace');
	t.true(walkNeeded(check({ settingsWalked: undefined, walkedAtUs: undefined })), 'never walked');
	t.true(walkNeeded(check({ nowUs: FORCE_WALK_EVERY * 60 * S })), '10 intervals after the last walk');
	t.false(walkNeeded(check({ nowUs: FORCE_WALK_EVERY * 60 * S - 1 })));
});

test('the kernel\'s count of timewait sockets is read from sockstat\'s TCP line; none without one', (t) => {
	t.is(sockstatTimeWait('sockets: used 210\nTCP: inuse 5 orphan 0 tw 1234567 alloc 9 mem 3\nUDP: inuse 2 mem 1\n'), 1_234_567);
	t.is(sockstatTimeWait('sockets: used 210\nUDP: inuse 2 mem 1\n'), undefined);
	t.is(sockstatTimeWait(''), undefined);
});

test('the kernel\'s count above the model\'s by what the model expired in the last second agrees: the kernel\'s timers lag under load, they do not disagree', (t) => {
	const tol = timeWaitTolerance(900_000);
	const lagging = (over: number, lately: number) => walkNeeded(check({ modelTimeWait: 900_000 - tol - over, modelExpiredLately: lately }));
	t.false(lagging(5_000, 5_000), 'the kernel has yet to end the 5,000 the model expired in the last second');
	t.true(lagging(5_001, 5_000), 'more than that: entries the kernel never reported');
	t.true(lagging(1, 0));
	// The other way (the kernel holds fewer) is never explained by its timers running late.
	t.true(walkNeeded(check({ modelTimeWait: 900_000 + tol + 1, modelExpiredLately: 100_000 })));
});

test('a model of counted entries (the agent\'s) agrees with the kernel within the seconds its counts cannot place: those it expired lately, those it holds that expire soon', (t) => {
	const tol = timeWaitTolerance(900_000);
	// The model holds 3,000 entries the kernel may have ended (read up to a reading's interval after they came).
	t.false(walkNeeded(check({ modelTimeWait: 900_000 + tol + 3_000, modelExpiringSoon: 3_000 })));
	t.true(walkNeeded(check({ modelTimeWait: 900_000 + tol + 3_001, modelExpiringSoon: 3_000 })), 'more than that: taken over, or ended by an RST');
	t.true(walkNeeded(check({ modelTimeWait: 900_000 - tol - 1, modelExpiringSoon: 100_000 })), 'never explains the kernel holding more');
	// A model of counts cannot be corrected by a walk (no cookies): holding more than the kernel is no reason to read one.
	t.false(walkNeeded(check({ modelTimeWait: 900_000 + tol + 50_000, counted: true })), 'tcp_tw_reuse took them over: step 6 would correct it');
	t.true(walkNeeded(check({ modelTimeWait: 900_000 - tol - 1, counted: true })), 'the kernel holds sockets the model does not know: a walk finds them');
	t.false(walkNeeded(check({ counted: true, settingsNow: { ...settings, timeWaitOverflow: 1 } })), 'counts hold the cap as the kernel does: an overflow is no reason');
	t.true(walkNeeded(check({ counted: true, settingsNow: { ...settings, portRange: { low: 10000, high: 60999 } } })), 'another setting still is');
	t.true(COUNTED_LATE_US >= 5_120_000 + 1_000_000, 'the wheel\'s slack at HZ 100 and a reading\'s interval');
	t.true(COUNTED_LATE_US <= (71 - 1) * 100_000, 'within what RecentExpiries keeps');
	t.true(COUNTED_EARLY_US >= 1_000_000, 'a reading\'s interval');
});
