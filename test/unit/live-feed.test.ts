/**
 * The live feed's one walk scheduler, on a fake kernel (test/helpers/fake-kernel.ts): with a model,
 * a full walk at start and every interval, a namespace first seen in events by itself, a witness
 * walk when a close waits too long; without one (trace), witness walks only, and a last one after
 * detaching. The feed runs these on its own timer: nothing here calls it but to emit events.
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

test('a close that waits too long for its end brings a witness walk of the walked namespaces, within seconds', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const { feed } = modelFeed(t, k, 60_000);
	await eventually(() => feed.walks.completed === 1);
	k.staleClose = true;
	k.nowUs += 2 * S; // before the 3 s gap after a walk: not yet
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.deepEqual(k.witnessed, []);
	k.nowUs += 2 * S;
	await eventually(() => k.witnessed.length === 1);
	t.deepEqual(k.witnessed[0], [1]);
	t.is(feed.walks.completed, 1, 'a witness walk is no full pass');
	await feed.stop();
});

test('without a model (trace): no walk at start, witness walks only, and a last one after detaching', async (t) => {
	const k = new FakeKernel();
	k.table(1, []);
	const events: number[] = [];
	const feed = new LiveFeed({ objectPath: '', filters, ringBytes: 4096, socketWalks: true, walkIntervalMs: 1000, upkeepMs: 5 }, { onEvents: (es) => events.push(es.length) }, k.parts());
	t.teardown(() => feed.stop());
	k.emit([{ ...base, netns: 4, pid: 42, tsUs: k.nowUs }]);
	t.deepEqual(events, [1]);
	await new Promise((resolve) => setTimeout(resolve, 30));
	t.deepEqual(k.opened, [], 'trace never reads whole tables');
	t.deepEqual(k.witnessed, []);
	k.nowUs += S;
	await eventually(() => k.witnessed.length === 1);
	t.deepEqual(k.witnessed[0], [1, 4], 'this namespace and those seen in events');
	t.is(k.discovered, 1, 'ways in looked for first: the processes seen in a namespace may be gone');
	await feed.stop({ lastWalk: true, lastWalkMs: Infinity });
	t.true(k.detached, 'detached before the last walk: no event is on its way any more');
	t.is(k.witnessed.length, 2);
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
