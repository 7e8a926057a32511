/**
 * The live feed's one walk scheduler, on a fake kernel (test/helpers/fake-kernel.ts): with a model,
 * a full walk at start and every interval, a namespace first seen in events by itself; with or
 * without one (trace), suspect checks of the closes that wait too long, and after detaching one of
 * every close still waiting. The feed runs these on its own timer: nothing here calls it but to emit events.
 */
import test, { type ExecutionContext } from 'ava';
import { ChurnModel } from '../../src/model/churn-model.js';
import { LiveFeed } from '../../src/pipeline/live-feed.js';
import { LivePipeline } from '../../src/pipeline/live-pipeline.js';
import { base } from '../helpers/events.js';
import { eventually, FakeKernel } from '../helpers/fake-kernel.js';
import { sockRecord } from '../../testbed/records.js';

const S = 1_000_000;
const filters = { netns: [], kinds: [] };

/** A feed with a model on `k`, stopped after the test whatever its outcome (its timer would keep the process alive). */
function modelFeed(t: ExecutionContext, k: FakeKernel, walkIntervalMs = 5000) {
	const model = new ChurnModel(k.nowUs);
	const walks: number[] = [];
	const feed = new LiveFeed({ objectPath: '', filters, ringBytes: 4096, model, walkIntervalMs, upkeepMs: 5 }, { onWalk: (w) => walks.push(w.netns) }, k.parts());
	t.teardown(() => feed.stop());
	return { model, feed, walks };
}

test('with a model, the first walk at start makes the namespace\'s count the table\'s, records split across reads included', async (t) => {
	const k = new FakeKernel();
	k.table(1, Array.from({ length: 7 }, (_, i) => sockRecord({ cookie: 100 + i, sport: 40000 + i })));
	const { model, feed, walks } = modelFeed(t, k);
	await eventually(() => feed.walks.completed === 1);
	t.is(model.timeWait.countIn(1), 7);
	t.deepEqual(walks, [1]);
	t.like(model.namespaces.get(1), { walkedTimeWait: 7 });
	await feed.stop();
});

test('the feed walks again when the interval has passed, on its own timer', async (t) => {
	const k = new FakeKernel();
	k.table(1, [sockRecord({ cookie: 1, sport: 40001 })]);
	const { feed } = modelFeed(t, k, 5000);
	await eventually(() => feed.walks.completed === 1);
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.is(feed.walks.completed, 1, 'not before its time');
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.completed === 2);
	t.deepEqual(k.opened, [1, 1]);
	await feed.stop();
});

test('a due walk is not read while the kernel\'s count of the namespace agrees with the model\'s; read when it does not, when a setting changed, and 10 intervals after the last', async (t) => {
	const k = new FakeKernel();
	const records = Array.from({ length: 100 }, (_, i) => sockRecord({ cookie: 100 + i, sport: 40000 + i, expiresUs: k.nowUs + 120 * S }));
	k.table(1, records);
	k.kernelCounts.set(1, 100);
	const { model, feed, walks } = modelFeed(t, k, 5000);
	await eventually(() => feed.walks.completed === 1);
	t.deepEqual(walks, [1], 'the first walk is always read');
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.skipped === 1);
	t.deepEqual(walks, [1], 'the counts agree: the due walk is not read');
	t.is(feed.walks.completed, 1, 'nor counted as a pass');
	k.kernelCounts.set(1, 100 + 70); // beyond the tolerance (64 + 0.05 %, 65 here): entries the model never saw
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.completed === 2);
	t.deepEqual(walks, [1, 1]);
	k.kernelCounts.set(1, 100 + 64); // within it
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.skipped === 2);
	k.table(1, records, { ...k.tables.get(1)!.settings, timeWaitOverflow: 3 }); // the kernel refused timewait sockets
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.completed === 3);
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.skipped === 3);
	k.nowUs += 50 * S; // 10 intervals after the last walk read
	await eventually(() => feed.walks.completed === 4);
	t.deepEqual(walks, [1, 1, 1, 1]);
	t.is(model.timeWait.countIn(1), 100);
	await feed.stop();
});

test('a model that leaves sockets out (--port) reads every due walk: its count cannot be the kernel\'s', async (t) => {
	const k = new FakeKernel();
	k.table(1, [sockRecord({ cookie: 1, sport: 40001, expiresUs: k.nowUs + 120 * S })]);
	k.kernelCounts.set(1, 1);
	const model = new ChurnModel(k.nowUs, { port: 7000 });
	const feed = new LiveFeed({ objectPath: '', filters, ringBytes: 4096, model, walkIntervalMs: 5000, upkeepMs: 5 }, {}, k.parts());
	t.teardown(() => feed.stop());
	await eventually(() => feed.walks.completed === 1);
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.completed === 2);
	t.is(feed.walks.skipped, 0);
	await feed.stop();
});

test('a paused feed (a slow reader) is not drained by its upkeep until resumed', async (t) => {
	const k = new FakeKernel();
	const feed = new LiveFeed({ objectPath: '', filters, ringBytes: 4096, upkeepMs: 5 }, {}, k.parts());
	t.teardown(() => feed.stop());
	await eventually(() => k.drains > 0);
	feed.pause();
	const paused = k.drains;
	await new Promise((resolve) => setTimeout(resolve, 50));
	t.is(k.drains, paused);
	feed.resume();
	await eventually(() => k.drains > paused);
	await feed.stop();
});

test('a namespace first seen in events is walked at once, by itself, and counts as no full pass', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { model, feed } = modelFeed(t, k);
	await eventually(() => feed.walks.completed === 1);
	k.table(9, [sockRecord({ cookie: 5, sport: 40005, netns: 9 }), sockRecord({ cookie: 6, sport: 40006, netns: 9 })]);
	k.emit([{ ...base, netns: 9, cookie: 77, tsUs: k.nowUs }]);
	await eventually(() => model.timeWait.countIn(9) === 3);
	t.deepEqual(k.opened, [1, 9], 'namespace 1 is not read again before its time');
	t.is(feed.walks.completed, 1);
	await feed.stop();
});

test('a namespace asked about (a view\'s --netns) that no walk read is walked soon, by itself; one asked again is not', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { model, feed } = modelFeed(t, k, 600_000);
	await eventually(() => feed.walks.completed === 1);
	k.table(9, [sockRecord({ cookie: 5, sport: 40005, netns: 9 })]); // held since before the agent started; no event shows it
	feed.askedAbout([9]);
	await eventually(() => model.timeWait.countIn(9) === 1);
	feed.askedAbout([9, 1]);
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.deepEqual(k.opened, [1, 9]);
	await feed.stop();
});

test('a namespace that cannot be entered is listed with the reason, and not tried at every upkeep', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { model, feed } = modelFeed(t, k);
	await eventually(() => feed.walks.completed === 1);
	k.unreachable.set(9, 'no way in');
	k.emit([{ ...base, netns: 9, tsUs: k.nowUs }]);
	await eventually(() => feed.unwalked.get(9) === 'no way in');
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.deepEqual(k.opened, [1]);
	t.true(model.namespaces.has(9));
	await feed.stop();
});

const IN_TIME_WAIT = { found: true, isTimeWait: true, state: 6, expiresMs: 58_000 } as const;
const HALF_CLOSED = { found: true, isTimeWait: false, state: 5, expiresMs: 0 } as const;

test('the closes that wait too long are looked up each second: in TIME_WAIT delivered, gone forgotten, still closing asked again later', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { feed } = modelFeed(t, k, 60_000);
	await eventually(() => feed.walks.completed === 1);
	k.close(10n, 1, 42, 0.5); // an RTT old: its event may be on its way
	k.close(11n, 1, 42, 2);
	k.close(12n, 1, 43, 2);
	k.close(13n, 1, 42, 2);
	k.sockets.set(11n, IN_TIME_WAIT); // entered TIME_WAIT unreported (kernel-facts §8)
	k.sockets.set(13n, HALF_CLOSED); // 12n: no such socket, it ended
	k.nowUs += S;
	await eventually(() => k.lookups.length === 1);
	t.deepEqual(k.lookups[0]!.cookies, [11n, 12n, 13n], 'only the closes older than 1.5 s, in one batch for their namespace');
	t.true([42, 43].every((pid) => k.lookups[0]!.pids.includes(pid)), 'the closes\' own processes are ways in');
	t.deepEqual(k.recovered, [11n]);
	t.deepEqual(k.forgotten, [11n, 12n], 'settled: delivered, or ended without TIME_WAIT');
	t.deepEqual([...k.closes.keys()], [10n, 13n]);
	t.deepEqual(k.opened, [1], 'no table read for it');

	// The half-closed socket: again after 1 s, then after 2 s; the young close once it is old enough.
	k.nowUs += S;
	await eventually(() => k.lookups.length === 2);
	t.deepEqual(k.lookups[1]!.cookies, [10n, 13n]);
	t.deepEqual(k.forgotten, [11n, 12n, 10n]);
	k.nowUs += S;
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.is(k.lookups.length, 2, 'not every second: 2 s after the last look');
	k.nowUs += S;
	await eventually(() => k.lookups.length === 3);
	t.deepEqual(k.lookups[2]!.cookies, [13n]);
	await feed.stop();
});

test('a suspect in a namespace with no way in waits, and ways in are looked for again, not at every check', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { feed } = modelFeed(t, k, 600_000);
	await eventually(() => feed.walks.completed === 1);
	const before = k.discovered;
	k.unreachable.set(9, 'no way in');
	k.close(20n, 9, 77, 2);
	k.sockets.set(20n, IN_TIME_WAIT);
	k.nowUs += S;
	await eventually(() => k.discovered === before + 1);
	k.nowUs += S;
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.is(k.discovered, before + 1, 'not again within 10 s');
	k.unreachable.delete(9);
	k.nowUs += 2 * S;
	await eventually(() => k.recovered.length === 1);
	t.deepEqual(k.recovered, [20n], 'delivered once a way in is found');
	await feed.stop();
});

test('without a model (trace): no table is read; suspects are looked up, and every close still waiting once more after detaching', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const events: number[] = [];
	const feed = new LiveFeed({ objectPath: '', filters, ringBytes: 4096, witness: true, upkeepMs: 5 }, { onEvents: (es) => events.push(es.length) }, k.parts());
	t.teardown(() => feed.stop());
	k.emit([{ ...base, netns: 4, pid: 42, tsUs: k.nowUs }]);
	t.deepEqual(events, [1]);
	k.close(30n, 4, 0, 2); // its owner unknown: the process seen in the namespace is the way in
	k.sockets.set(30n, IN_TIME_WAIT);
	k.nowUs += S;
	await eventually(() => k.recovered.length === 1);
	t.true(k.lookups[0]!.pids.includes(42));
	k.close(31n, 4, 42, 0.1);
	k.sockets.set(31n, IN_TIME_WAIT);
	await feed.stop({ last: true });
	t.true(k.detached, 'detached first: no event is on its way any more');
	t.deepEqual(k.recovered, [30n, 31n], 'the young close too, after detaching');
	t.deepEqual(k.opened, [], 'trace never reads whole tables');
	t.true(k.stopped);
});

test('stop() stops the upkeep: no walk after it, and it is idempotent', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { feed } = modelFeed(t, k, 1000);
	await eventually(() => feed.walks.completed === 1);
	const first = await feed.stop();
	k.nowUs += 10 * S;
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.deepEqual(k.opened, [1]);
	t.is(await feed.stop(), first);
});

test('the pipeline answers snapshots from the fed model, with the namespace walked and its likely owners', async (t) => {
	const k = new FakeKernel();
	// As iter/tcp gives them: the listening hash first, then the established one (timewait sockets included).
	k.table(1, [sockRecord({ cookie: 2, state: 10, sport: 7600, saddr: [0, 0, 0, 0], daddr: [0, 0, 0, 0], dport: 0 }),
		sockRecord({ cookie: 1, sport: 7600, saddr: [10, 200, 0, 2], daddr: [10, 200, 0, 1], dport: 41000 })]);
	const pipeline = new LivePipeline({
		objectPath: '', filters, ringBytes: 4096, model: {}, upkeepMs: 5, parts: k.parts(),
		openSockets: { walk: async () => [{ pid: 900, comm: 'api', netns: 1, family: 4, saddr: '0.0.0.0', daddr: '0.0.0.0', sport: 7600, dport: 0, state: 10 }], close: () => {} },
	});
	t.teardown(() => pipeline.stop());
	await eventually(() => pipeline.feed.walks.completed === 1);
	await eventually(() => pipeline.model.openSockets.walkedAtUs !== undefined);
	const reply = pipeline.snapshotReply({ by: 'process', sort: 'timeWait', windowMs: 1000 });
	t.like(reply.snapshot.namespaces[0], { netns: 1, timeWait: 1, walkedTimeWait: 1 });
	t.like(reply.snapshot.rows[0], { comm: '(before start)', timeWait: 1, likely: [{ pid: 900, comm: 'api', timeWait: 1 }] });
	t.is(reply.walks.completed, 1);
});

test('a due walk\'s check brings the model up to now first (upToNow: the agent reads the kernel\'s counters), so entries since the last reading are no reason to walk', async (t) => {
	const k = new FakeKernel();
	k.table(1, Array.from({ length: 100 }, (_, i) => sockRecord({ cookie: 100 + i, sport: 40000 + i, expiresUs: k.nowUs + 120 * S })));
	k.kernelCounts.set(1, 100);
	const model = new ChurnModel(k.nowUs);
	let broughtUp = 0;
	const feed = new LiveFeed({ objectPath: '', filters, ringBytes: 4096, model, walkIntervalMs: 5000, upkeepMs: 5 }, {
		// As if reading the counters found 500 entries the kernel counted since the last reading.
		upToNow: () => void (broughtUp++ === 0 && model.timeWait.addCounted(model.owners.values().next().value!, undefined, 1, k.nowUs, k.nowUs + 60 * S, 500)),
	}, k.parts());
	t.teardown(() => feed.stop());
	await eventually(() => feed.walks.completed === 1);
	k.kernelCounts.set(1, 600);
	k.nowUs += 5 * S;
	await eventually(() => feed.walks.skipped === 1);
	t.true(broughtUp >= 1);
	t.is(feed.walks.completed, 1, 'the model, brought up to now, agrees with the kernel: no walk read');
	await feed.stop();
});
