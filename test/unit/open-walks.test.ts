/**
 * Open-socket walks (src/pipeline/open-walks.ts): a namespace's open sockets from the processes that
 * hold them and the closes in flight, in place of a walk of a table whose timewait sockets the
 * kernel's counters hold. Their records, when a namespace may be read so, and the feed's use of them
 * on a fake kernel. The kernel's side (iter/task_file, the closing map) is test/integration/open-walk.test.ts.
 */
import test, { type ExecutionContext } from 'ava';
import { closingSockRecord, type Closing } from '../../src/event/closing.js';
import { SOCK_SIZE } from '../../src/event/layout.generated.js';
import { decodeSockets, TCP_TIME_WAIT } from '../../src/event/sock.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { OpenWalks, openSocketRecords } from '../../src/pipeline/open-walks.js';
import { LiveFeed } from '../../src/pipeline/live-feed.js';
import { eventually, FakeKernel } from '../helpers/fake-kernel.js';
import { sockRecord } from '../../testbed/records.js';

const S = 1_000_000;
const ESTABLISHED = 1;
const LISTEN = 10;
const cookies = (records: Uint8Array) => decodeSockets(records).sockets.map((s) => Number(s.cookie));

const closing = (netns: number, sport: number): Closing => ({
	claim: 0, closedNs: 1n, netns, pid: 7, closerPid: 7,
	socket: { family: 4, saddr: new Uint8Array([10, 200, 0, 1, ...new Array(12).fill(0)]), daddr: new Uint8Array([10, 200, 0, 2, ...new Array(12).fill(0)]), sport, dport: 7000, boundDevIf: 0 },
});

test('a close in flight is a socket record in FIN_WAIT1 with its 4-tuple, namespace and cookie, and no timer', (t) => {
	const [s] = decodeSockets(closingSockRecord(42n, closing(9, 40123))).sockets;
	t.like(s, { cookie: 42, netns: 9, family: 4, state: 4, sport: 40123, dport: 7000, saddr: '10.200.0.1', daddr: '10.200.0.2', expiresUs: 0 });
});

test('an open-socket walk\'s records: the namespace\'s sockets processes hold, each once however many hold it, then its closes no process holds', (t) => {
	const held = Buffer.concat([
		sockRecord({ cookie: 1, sport: 40001, netns: 5, state: ESTABLISHED }),
		sockRecord({ cookie: 1, sport: 40001, netns: 5, state: ESTABLISHED }), // a forked child holds it too
		sockRecord({ cookie: 2, sport: 80, netns: 5, state: LISTEN }),
		sockRecord({ cookie: 3, sport: 40003, netns: 6, state: ESTABLISHED }), // another namespace
		sockRecord({ cookie: 0, sport: 40004, netns: 5, state: ESTABLISHED }), // never seen by twtrace: known by its 4-tuple
		sockRecord({ cookie: 0, sport: 40004, netns: 5, state: ESTABLISHED }),
		sockRecord({ cookie: 0, sport: 40005, netns: 5, state: ESTABLISHED }),
	]);
	const closes = Buffer.concat([closingSockRecord(1n, closing(5, 40001)), closingSockRecord(8n, closing(5, 40008)), closingSockRecord(9n, closing(6, 40009))]);
	const records = openSocketRecords(5, held, closes);
	t.is(records.length % SOCK_SIZE, 0);
	t.deepEqual(cookies(records), [1, 2, 0, 0, 8], 'the shut-down socket still held by its process comes once, as the process holds it');
	t.deepEqual(decodeSockets(records).sockets.map((s) => s.sport), [40001, 80, 40004, 40005, 40008]);
	t.deepEqual(cookies(openSocketRecords(6, held, new Uint8Array())), [3]);
	t.deepEqual(cookies(openSocketRecords(6, held, closes)), [3, 9], 'each namespace\'s own closes');
});

/** A walker whose hazards a test moves. */
function hazardous() {
	const w = { hazards: 0 };
	const walker = { home: 1, discover: () => [], open: () => undefined, lookup: () => [], peek: () => ({ error: 'unused' }) };
	const session = { closesInFlight: () => new Uint8Array(), openWalkHazards: () => w.hazards };
	return { w, walks: new OpenWalks(walker as never, session, async () => new Uint8Array()) };
}

test('a namespace is read by open-socket walks once a walk of its table took no timewait socket of its own, and while no hazard came', (t) => {
	const { w, walks } = hazardous();
	t.false(walks.allowed(5), 'never walked');
	walks.tableWalked(5, walks.before(), 3);
	t.false(walks.allowed(5), 'the walk found timewait sockets older than counting');
	walks.tableWalked(5, walks.before(), 0);
	t.true(walks.allowed(5));
	t.false(walks.allowed(6), 'each namespace by its own walk');
	const before = walks.before();
	w.hazards++;
	walks.tableWalked(6, before, 0);
	t.false(walks.allowed(6), 'a close was not kept during the walk');
	t.false(walks.allowed(5), 'a hazard anywhere sends every namespace back to its table');
	walks.tableWalked(5, walks.before(), 0);
	t.true(walks.allowed(5), 'until a walk of it after the hazard');
	walks.stop();
	t.false(walks.allowed(5), 'after the tracepoints are detached, closes are no longer kept');
	t.is(walks.before(), undefined);
});

test('without the process walk (another pid namespace, an old kernel) or without counting, every walk reads the table', (t) => {
	const walker = { home: 1, discover: () => [], open: () => undefined, lookup: () => [], peek: () => ({ error: 'unused' }) } as never;
	const off = new OpenWalks(walker, { closesInFlight: () => new Uint8Array(), openWalkHazards: () => 0 }, undefined);
	off.tableWalked(5, off.before(), 0);
	t.false(off.allowed(5));
});

function feedOn(t: ExecutionContext, k: FakeKernel) {
	const model = new ChurnModel(k.nowUs);
	const walks: { netns: number; openOnly?: boolean; timeWaitCounted?: number; sockets: Uint8Array }[] = [];
	const reads = { processSockets: 0 };
	const processSockets = async () => (reads.processSockets++, Buffer.concat(k.processSockets));
	const feed = new LiveFeed({ objectPath: '', filters: { netns: [], kinds: [] }, ringBytes: 4096, model, walkIntervalMs: 1000, upkeepMs: 5, walksLeaveCounted: true, keepRaw: true, processSockets },
		{ onWalk: (w) => walks.push(w) }, k.parts());
	t.teardown(() => feed.stop());
	return { model, feed, walks, reads };
}

test('the feed reads open-socket walks once a table walk left nothing of its own, counts them, and goes back to the table after a hazard', async (t) => {
	const k = new FakeKernel();
	const open = [sockRecord({ cookie: 1, sport: 40001, state: ESTABLISHED }), sockRecord({ cookie: 2, sport: 40002, state: ESTABLISHED })];
	k.table(1, open);
	k.processSockets = [open[0]!]; // the other is an orphan now: its close is in flight
	k.close(2n, 1, 7, 0.5);
	k.sockets.set(2n, { found: true, isTimeWait: false, state: 5, expiresMs: 0 }); // FIN_WAIT2, as a suspect check finds it
	k.kernelCounts.set(1, 0);
	const { model, feed, walks, reads } = feedOn(t, k);
	await eventually(() => feed.walks.completed === 1);
	t.deepEqual(k.opened, [1], 'the first walk reads the table');
	k.nowUs += 1 * S; // a due walk, which the kernel's count (equal to the model's) says not to read
	await eventually(() => feed.walks.skipped === 1);
	t.is(reads.processSockets, 0, 'the processes are not walked for a walk not read');
	k.nowUs += 10 * S; // a forced walk: 10 intervals
	await eventually(() => feed.walks.completed === 2);
	t.deepEqual(k.opened, [1], 'the forced walk read no table');
	t.is(reads.processSockets, 1);
	t.like(feed.walks, { openOnly: 1, lastOpenOnly: 1, lastTable: 0 });
	t.like(walks[1], { netns: 1, openOnly: true, timeWaitCounted: 0 });
	t.deepEqual(cookies(walks[1]!.sockets), [1, 2], 'the held socket, and the close in flight');
	t.is([...model.destinations.values()].reduce((n, d) => n + d.portsHeldOpen, 0), 2, 'both hold their ports open');
	t.false(decodeSockets(walks[1]!.sockets).sockets.some((s) => s.state === TCP_TIME_WAIT));
	k.hazards++;
	k.nowUs += 10 * S;
	await eventually(() => feed.walks.completed === 3);
	t.deepEqual(k.opened, [1, 1], 'a hazard: the table again');
	await feed.stop();
});

test('an open-socket walk removes no TIME_WAIT entry (it visits none) and takes the namespace\'s count from the kernel\'s', (t) => {
	const settings = { portRange: { low: 40000, high: 40999 }, reservedPorts: new Set<number>(), finTimeoutSec: 60 };
	const model = new ChurnModel(1000 * S);
	const timeWait = decodeSockets(Buffer.concat([sockRecord({ cookie: 1, sport: 40001, expiresUs: 1050 * S }), sockRecord({ cookie: 2, sport: 40002, expiresUs: 1050 * S })])).sockets;
	model.reconcile({ netns: 1, takenAtUs: 1000 * S, settings, sockets: timeWait });
	t.is(model.timeWait.countIn(1), 2);
	const established = decodeSockets(sockRecord({ cookie: 3, sport: 40003, state: ESTABLISHED })).sockets;
	model.reconcile({ netns: 1, takenAtUs: 1001 * S, settings, sockets: established, timeWaitCounted: 5, openOnly: true });
	t.is(model.timeWait.countIn(1), 2, 'kept');
	t.like(model.namespaces.get(1), { walkedTimeWait: 5 });
	model.reconcile({ netns: 1, takenAtUs: 1002 * S, settings, sockets: established });
	t.is(model.timeWait.countIn(1), 0, 'a walk of the table that does not find them removes them');
});
