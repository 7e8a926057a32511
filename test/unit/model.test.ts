/**
 * The churn model on synthetic event streams with an explicit clock: TIME_WAIT expiry, the
 * FIN_WAIT2 substate, reconciliation with socket walks, grouping, rates and port headroom.
 */
import test from 'ava';
import type { TwtEvent } from '../../src/event/decode.js';
import { COUNT_COLUMN, COUNT_COLUMNS, LIFETIME_BOUNDS_US, type CountKey } from '../../src/event/counts.js';
import type { SocketEntry } from '../../src/event/sock.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import { newLifetimeHistogram, newOwner, recordLifetimes } from '../../src/model/owners.js';
import { parsePortList, parsePortRange, usablePorts, type NetnsSettings } from '../../src/facts/netns-settings.js';
import { secondsToExhaustion, sustainableRate } from '../../src/model/ports.js';
import { mergedLifetimes } from '../../src/model/groups.js';
import { snapshot, type SnapshotOptions } from '../../src/model/snapshot.js';
import { base } from '../helpers/events.js';

const S = 1_000_000;
const T0 = 1000 * S; // monotonic clocks do not start at 0

let cookie = 1;
function ev(overrides: Partial<TwtEvent>): TwtEvent {
	return { ...base, cookie: cookie++, ...overrides };
}
function tw(atS: number, overrides: Partial<TwtEvent> = {}): TwtEvent {
	return ev({ kind: 'time_wait', tsUs: T0 + atS * S, ...overrides });
}
function view(model: ChurnModel, atS: number, extra: Partial<SnapshotOptions> = {}) {
	model.tick(T0 + atS * S);
	return snapshot(model, { by: 'process', sort: 'timeWait', nowUs: T0 + atS * S, rateWindowUs: 5 * S, ...extra });
}
const settings = (over: Partial<NetnsSettings> = {}): NetnsSettings => ({
	portRange: { low: 40000, high: 40099 }, reservedPorts: new Set(), finTimeoutSec: 30, ...over,
});
function sock(over: Partial<SocketEntry>): SocketEntry {
	const s = { cookie: cookie++, netns: 1, family: 4 as const, saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40001, dport: 7101, state: 6, substate: 6, expiresUs: 0, ...over };
	return { ...s, addressKey: (which: 'saddr' | 'daddr') => s[which] };
}

test('a TIME_WAIT socket is held for exactly 60 s after it entered', (t) => {
	const m = new ChurnModel(T0);
	m.ingest([tw(10)]);
	t.is(view(m, 69.9).rows[0]!.timeWait, 1);
	t.is(view(m, 70).rows[0]!.timeWait, 0);
});

test('a FIN_WAIT2-substate socket lasts tcp_fin_timeout, unless a walk finds it re-armed as TIME_WAIT', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings: settings({ finTimeoutSec: 30 }) });
	const a = tw(1, { substate: 5 });
	const b = tw(1, { substate: 5 });
	m.ingest([a, b]);
	t.is(view(m, 30.9).rows[0]!.timeWait, 2);
	// At 20 s the peer's FIN arrived for b: the kernel re-armed its timer for 60 s (tcp_timewait_state_process).
	m.reconcile({ netns: 1, takenAtUs: T0 + 20 * S, sockets: [sock({ cookie: a.cookie, substate: 5, expiresUs: T0 + 31 * S }), sock({ cookie: b.cookie, expiresUs: T0 + 80 * S })], settings: settings() });
	t.is(view(m, 31).rows[0]!.timeWait, 1, 'a expired at its fin timeout');
	t.is(view(m, 79.9).rows[0]!.timeWait, 1);
	t.is(view(m, 80).rows[0]!.timeWait, 0);
});

test('a walk counts sockets that predate twtrace, owned by a listener when one owns the port', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({
		netns: 1, takenAtUs: T0, settings: settings(),
		sockets: [
			sock({ sport: 40001 }), sock({ sport: 40002 }),
			sock({ state: 10, sport: 8080, daddr: '0.0.0.0', dport: 0, substate: 0 }),
			sock({ sport: 8080, daddr: '10.200.0.9', dport: 50000 }),
		],
		listenerOwner: (port) => (port === 8080 ? { pid: 4242, comm: 'nginx' } : undefined),
	});
	const rows = view(m, 1).rows;
	t.like(rows.find((r) => r.comm === '(before start)'), { timeWait: 2, pid: 0, side: '-', topDest: '10.200.0.2:7101' });
	t.like(rows.find((r) => r.comm === 'nginx'), { timeWait: 1, pid: 4242, side: 'server' });
	t.is(view(m, 1).namespaces[0]!.walkedTimeWait, 3);
});

test('a walk removes TIME_WAIT entries the kernel no longer has (tw_reuse, RST, tcp_max_tw_buckets)', (t) => {
	const m = new ChurnModel(T0);
	const kept = tw(1);
	m.ingest([kept, tw(1), tw(1)]);
	m.reconcile({ netns: 1, takenAtUs: T0 + 2 * S, sockets: [sock({ cookie: kept.cookie, expiresUs: T0 + 61 * S })], settings: settings() });
	m.ingest([tw(2.5)]); // entered after the walk started: not judged by it
	t.is(view(m, 3).rows[0]!.timeWait, 2);
});

test('an event for a socket a walk found first moves it from "(before start)" to its owner', (t) => {
	const m = new ChurnModel(T0);
	const e = tw(1);
	m.reconcile({ netns: 1, takenAtUs: T0 + 1.5 * S, sockets: [sock({ cookie: e.cookie })], settings: settings() });
	m.ingest([e]); // drained after the walk
	const rows = view(m, 2).rows;
	t.is(rows.find((r) => r.comm === 'owner')?.timeWait, 1);
	t.is(rows.find((r) => r.comm === '(before start)')?.timeWait ?? 0, 0);
});

test('grouping by process keeps pids apart; by comm merges short-lived processes of one name', (t) => {
	const m = new ChurnModel(T0);
	for (let pid = 500; pid < 510; pid++) m.ingest([tw(1, { pid, comm: 'curl' })]);
	m.ingest([tw(1, { pid: 100, comm: 'owner' }), tw(1, { pid: 100, comm: 'owner' })]);
	const byProcess = view(m, 2).rows;
	t.is(byProcess.length, 11);
	t.like(byProcess[0], { pid: 100, comm: 'owner', timeWait: 2 });
	const byComm = view(m, 2, { by: 'comm' }).rows;
	t.deepEqual(byComm.map((r) => [r.comm, r.timeWait, r.processes]), [['curl', 10, 10], ['owner', 2, 1]]);
	t.is(view(m, 2, { by: 'dest' }).rows[0]!.dest, '10.200.0.2:7101');
});

test('rates are events per second over the window; lifetimes give p50 and p99', (t) => {
	const m = new ChurnModel(T0);
	for (let i = 0; i < 50; i++) m.ingest([ev({ kind: 'connect', tsUs: T0 + 10 * S + i * 0.1 * S })]); // 10/s during 10..15 s
	// Lifetimes come from the end of each connection (time_wait, reset), closes from active_close.
	for (let i = 1; i <= 100; i++) m.ingest([ev({ kind: 'active_close', tsUs: T0 + 14 * S, lifetimeUs: 7 }), ev({ kind: 'time_wait', cookie: 5000 + i, tsUs: T0 + 14 * S, lifetimeUs: i * 1000 })]);
	const row = view(m, 15).rows[0]!;
	t.is(Math.round(row.connectsPerSec), 10);
	t.is(Math.round(row.activeClosesPerSec), 20);
	t.true(Math.abs(row.lifetimeP50Ms! - 50) <= 1, String(row.lifetimeP50Ms));
	t.true(Math.abs(row.lifetimeP99Ms! - 99) <= 1, String(row.lifetimeP99Ms));
	t.is(Math.round(view(m, 15, { rateWindowUs: 1 * S }).rows[0]!.connectsPerSec), 10);
	t.is(view(m, 40).rows[0]!.connectsPerSec, 0, 'rates fall to 0 when the process stops');
});

test('without active_close events (top, serve) a close is counted when its socket enters TIME_WAIT', (t) => {
	const m = new ChurnModel(T0, { closesFromTimeWait: true });
	for (let i = 0; i < 30; i++) m.ingest([ev({ kind: 'time_wait', cookie: 100 + i, tsUs: T0 + 10 * S + i * 0.1 * S })]);
	t.is(Math.round(view(m, 13, { rateWindowUs: 3 * S }).rows[0]!.activeClosesPerSec), 10);
	const plain = new ChurnModel(T0);
	plain.ingest([ev({ kind: 'time_wait', cookie: 1, tsUs: T0 + 10 * S })]);
	t.is(view(plain, 11).rows[0]!.activeClosesPerSec, 0, 'with active_close events in the stream, a time_wait is not a second close');
});

test('the side that closes first holds the TIME_WAIT', (t) => {
	const m = new ChurnModel(T0);
	m.ingest([tw(1, { pid: 1, comm: 'cli' }), tw(1, { pid: 2, comm: 'srv', side: 'server', ownerSource: 'listen', closerPid: 2, closerComm: 'srv' })]);
	const rows = view(m, 2).rows;
	t.is(rows.find((r) => r.pid === 1)?.side, 'client');
	t.is(rows.find((r) => r.pid === 2)?.side, 'server');
});

test('the sparkline holds TIME_WAIT per second over the last 60 s', (t) => {
	const m = new ChurnModel(T0);
	m.ingest([tw(0.5), tw(0.5)]);
	m.tick(T0 + 0.9 * S);
	m.ingest([tw(30)]);
	m.tick(T0 + 30.5 * S);
	const h = view(m, 59).rows[0]!.history;
	t.is(h.length, 60);
	t.deepEqual([h[0], h[29], h[30], h[59]], [2, 2, 3, 3]);
	t.is(view(m, 61).rows[0]!.history[59], 1);
});

test('time to exhaustion: the shortcut for pools far from the edge answers as the walk between expiries does', (t) => {
	// The walk between expiries alone (ports.ts before the shortcut): the oracle.
	const walk = (s: { portsUsable: number; portsHeldOpen: number; timeWaitExpiring: Map<number, number>; ratePerSec: number }) => {
		const expiries = [...s.timeWaitExpiring.entries()].filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]);
		let held = s.portsHeldOpen + expiries.reduce((sum, [, n]) => sum + n, 0);
		if (held >= s.portsUsable) return 0;
		if (s.ratePerSec <= 0) return undefined;
		let from = 0;
		for (const [left, n] of expiries) {
			const to = Math.min(left, 60);
			const crossing = (s.portsUsable - held) / s.ratePerSec;
			if (crossing <= to) return Math.max(crossing, from);
			from = to;
			held -= n;
		}
		const crossing = (s.portsUsable - held) / s.ratePerSec;
		return crossing <= 60 ? Math.max(crossing, from) : undefined;
	};
	let seed = 12345;
	const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
	let shortcuts = 0;
	for (let i = 0; i < 2000; i++) {
		const left = new Map<number, number>();
		for (let k = Math.floor(random() * 6); k > 0; k--) left.set(Math.floor(random() * 62), Math.floor(random() * 40));
		// Rates around the edge (usable / 60 s less what is held), so that both sides of it are tried.
		const s = { portsUsable: 100, portsHeldOpen: Math.floor(random() * 30), nowSecond: 0, timeWaitExpiring: left, ratePerSec: Math.round(random() * 40) / 10 };
		const held = s.portsHeldOpen + [...left.values()].reduce((a, b) => a + b, 0);
		if (held < 100 && held + s.ratePerSec * 60 < 100) shortcuts++;
		t.is(secondsToExhaustion(s), walk(s), JSON.stringify({ ...s, timeWaitExpiring: [...left] }));
	}
	t.true(shortcuts > 200, `${shortcuts} cases took the shortcut`);
});

test('headroom of a 100-port range: sustainable rate, ports in use and time to exhaustion', (t) => {
	t.is(usablePorts({ low: 40000, high: 40099 }), 100);
	t.is(usablePorts({ low: 40000, high: 40099 }, parsePortList('40000-40009,8080')), 90);
	t.deepEqual(parsePortRange('32768\t60999\n'), { low: 32768, high: 60999 });
	t.is(Math.round(sustainableRate(28232)), 471);
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 0, timeWaitExpiring: new Map(), ratePerSec: 10 }), 10);
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 0, timeWaitExpiring: new Map(), ratePerSec: 1.6 }), undefined, '96 ports per 60 s fit');
	// 50 in TIME_WAIT expiring in 30 s, 2 new per second: 50 + 2T reaches 100 at T = 25 s.
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 0, timeWaitExpiring: new Map([[30, 50]]), ratePerSec: 2 }), 25);
	// ... but if they expire in 10 s, 2/s alone fills it only by 50 s.
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 0, timeWaitExpiring: new Map([[10, 50]]), ratePerSec: 2 }), 50);
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 100, nowSecond: 0, timeWaitExpiring: new Map(), ratePerSec: 0 }), 0);
	// Keys are the seconds the sockets expire at, on the model's clock: the same as above 1,000 s later.
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 1000, timeWaitExpiring: new Map([[1030, 50]]), ratePerSec: 2 }), 25);
	// Seconds already past (not yet expired by the model) each hold their ports now, 30 + 30 of 60, and free them at once after.
	t.is(secondsToExhaustion({ portsUsable: 60, portsHeldOpen: 0, nowSecond: 1000, timeWaitExpiring: new Map([[999, 30], [1000, 30]]), ratePerSec: 0 }), 0);
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 1000, timeWaitExpiring: new Map([[999, 30], [1000, 30]]), ratePerSec: 4 }), 25);

	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [sock({ state: 1, sport: 40050, cookie: 9999 })], settings: settings() });
	const events: TwtEvent[] = [];
	for (let i = 0; i < 40; i++) events.push(ev({ kind: 'connect', tsUs: T0 + 1 * S + i * 0.1 * S, sport: 40000 + i }), tw(1 + i * 0.1, { sport: 40000 + i }));
	m.ingest(events);
	const d = view(m, 5).destinations[0]!;
	t.like(d, { netns: 1, saddr: '10.200.0.1', daddr: '10.200.0.2', dport: 7101, portsInUse: 41, portsUsable: 100 });
	t.is(d.currentRate, 40 / 5, '40 connects in the 5 s since start');
	t.true(Math.abs(d.sustainableRate - 100 / 60) < 1e-9);
	t.true(d.secondsToExhaustion !== null && Math.abs(d.secondsToExhaustion - 59 / d.currentRate) < 0.2, String(d.secondsToExhaustion));
});

test('owners are bounded: beyond the limit events go to "(other)" and the overflow is counted', (t) => {
	const m = new ChurnModel(T0, { maxOwners: 5 });
	for (let pid = 1; pid <= 20; pid++) m.ingest([tw(1, { pid, comm: `p${pid}` })]);
	const s = view(m, 2);
	t.true(m.owners.size <= 6);
	t.is(s.rows.reduce((sum, r) => sum + r.timeWait, 0), 20);
	t.true(s.overflow.owners > 0);
});

test('--comm keeps only that command, also among walked sockets', (t) => {
	const m = new ChurnModel(T0, { comm: 'curl' });
	m.ingest([tw(1, { comm: 'curl' }), tw(1, { comm: 'wget', pid: 7 })]);
	m.reconcile({ netns: 1, takenAtUs: T0 + 2 * S, sockets: [sock({})], settings: settings() });
	t.deepEqual(view(m, 3).rows.map((r) => r.comm), ['curl']);
});

test('a busy owner\'s lifetimes move to a plain histogram with the same percentiles, merged with quiet ones', (t) => {
	const m = new ChurnModel(T0);
	const reference = newLifetimeHistogram();
	let seed = 3;
	const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
	for (let i = 0; i < 10_000; i++) {
		const lifetimeUs = 1 + Math.floor(random() * random() * 5_000_000);
		reference.recordValue(lifetimeUs);
		m.ingest([ev({ kind: 'time_wait', cookie: 10_000 + i, tsUs: T0 + S, lifetimeUs })]);
	}
	m.ingest([ev({ kind: 'time_wait', cookie: 99, pid: 7, comm: 'quiet', tsUs: T0 + S, lifetimeUs: 123 })]);
	reference.recordValue(123);
	const owners = [...m.owners.values()];
	t.is(owners.length, 2);
	const merged = mergedLifetimes(owners)!;
	for (const p of [1, 50, 90, 99, 99.9]) t.is(merged.getValueAtPercentile(p), reference.getValueAtPercentile(p), `p${p}`);
});

test('owners crossing to plain lifetimes together move a few at a time, their percentiles unchanged', (t) => {
	// 64 owners (a destination each, as the soak's) reach the packed histogram's limit in one reading:
	// moving all at once held the event loop ~80 ms. The rest stay packed until their turn.
	const owners = Array.from({ length: 64 }, (_, i) => newOwner(`o${i}`, { pid: 1, comm: 'c', cgroupId: 0, netns: 1, side: 'client', peer: `p${i}` }, T0));
	const startedMs = performance.now();
	for (const o of owners) recordLifetimes(o, 2_000, 4_000);
	for (const o of owners) recordLifetimes(o, 50_000, 200);
	const elapsedMs = performance.now() - startedMs;
	const plain = owners.filter((o) => o.lifetimes!.constructor.name !== 'PackedHistogram').length;
	// At most 4 a 50 ms window: the windows this loop spanned, each with its 4.
	t.true(plain <= 4 * (Math.floor(elapsedMs / 50) + 2), `${plain} of 64 moved in ${elapsedMs.toFixed(1)} ms`);
	const reference = newLifetimeHistogram(32);
	reference.recordValueWithCount(2_000, 4_000);
	reference.recordValueWithCount(50_000, 200);
	for (const o of owners) {
		t.is(o.lifetimes!.totalCount, 4_200);
		for (const p of [50, 99]) t.is(o.lifetimes!.getValueAtPercentile(p), reference.getValueAtPercentile(p), `p${p}`);
	}
	// Later readings move the rest.
	for (let round = 0; round < 40 && owners.some((o) => o.lifetimes!.constructor.name === 'PackedHistogram'); round++) {
		const until = performance.now() + 55;
		while (performance.now() < until); // the next window
		for (const o of owners) recordLifetimes(o, 2_000, 1);
	}
	t.is(owners.filter((o) => o.lifetimes!.constructor.name === 'PackedHistogram').length, 0);
});

test('events one at a time (top, serve) build the same model as batches (replay)', (t) => {
	const events: TwtEvent[] = [];
	for (let i = 0; i < 3000; i++) {
		const tsUs = T0 + i * 30_000; // 90 s: entries expire along the way
		const pid = 100 + (i % 3);
		events.push(ev({ kind: 'connect', pid, comm: `c${pid}`, tsUs, dport: 7000 + (i % 5) }));
		events.push(ev({ kind: 'time_wait', pid, comm: `c${pid}`, tsUs: tsUs + 10, cookie: 1_000_000 + i, dport: 7000 + (i % 5), lifetimeUs: 100 + i }));
	}
	const batched = new ChurnModel(T0);
	for (let i = 0; i < events.length; i += 64) batched.ingest(events.slice(i, i + 64));
	const single = new ChurnModel(T0);
	for (const e of events) single.ingestOne(e);
	const rows = (m: ChurnModel) => view(m, 95).rows.map((r) => [r.pid, r.timeWait, r.connectsPerSec, r.lifetimeP50Ms]);
	t.deepEqual(rows(single), rows(batched));
	t.is(single.timeWait.size, batched.timeWait.size);
});

test('a walked TIME_WAIT socket that entered after the attach with no event is counted as lost, not "(before start)"', (t) => {
	const m = new ChurnModel(T0);
	m.attachedUs = T0;
	m.reconcile({
		netns: 1, takenAtUs: T0 + 30 * S, settings: settings(),
		sockets: [
			sock({ sport: 40001, expiresUs: T0 + 50 * S }), // entered 10 s before the attach
			sock({ sport: 40002, expiresUs: T0 + 61 * S }), // 1 s after it: within the timer's slack, still "(before start)"
			sock({ sport: 40003, expiresUs: T0 + 80 * S }), // 20 s after it: its events were lost
			sock({ sport: 40004, substate: 5, expiresUs: T0 + 45 * S }), // FIN_WAIT2 substate (fin_timeout 30 s), entered 15 s after
		],
	});
	const rows = view(m, 31).rows;
	t.is(rows.find((r) => r.comm === '(before start)')?.timeWait, 2);
	t.is(rows.find((r) => r.comm === '(events lost)')?.timeWait, 2);
});

test('victims: a connect() EADDRNOTAVAIL lists who holds TIME_WAIT towards that destination, for a minute', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings: settings() });
	m.ingest([tw(1, { sport: 40010 }), tw(1, { sport: 40011 }), tw(1, { sport: 40012, pid: 300, comm: 'other' }), tw(1, { sport: 40013, daddr: '10.200.0.9' })]);
	const fail = { kind: 'connect_fail' as const, err: 99, pid: 500, comm: 'victim', ownerSource: 'syscall' as const, closerPid: 0, sport: 0 };
	m.ingest([ev({ ...fail, tsUs: T0 + 2 * S }), ev({ ...fail, tsUs: T0 + 3 * S }), ev({ ...fail, err: 111, tsUs: T0 + 3 * S })]);
	const v = view(m, 4).victims;
	t.is(v.length, 1, 'ECONNREFUSED is not a port failure');
	t.like(v[0], { pid: 500, comm: 'victim', call: 'connect', errno: 'EADDRNOTAVAIL', target: '10.200.0.2:7101', failures: 2, heldTimeWait: 3 });
	t.deepEqual(v[0]!.holders, [{ pid: 100, comm: 'owner', timeWait: 2 }, { pid: 300, comm: 'other', timeWait: 1 }]);
	t.is(view(m, 64).victims.length, 0, 'older than a minute: no longer shown');
});

test('a bind() EADDRINUSE on a server port lists the server holding TIME_WAIT on it', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings: settings() });
	m.ingest([tw(1, { side: 'server', sport: 8080, dport: 50000, closerPid: 42, closerComm: 'nginx' })]);
	m.ingest([ev({ kind: 'bind_fail', err: 98, tsUs: T0 + 2 * S, sport: 8080, daddr: '0.0.0.0', dport: 0, pid: 43, comm: 'nginx-new', ownerSource: 'syscall', closerPid: 0 })]);
	const v = view(m, 3).victims[0]!;
	t.like(v, { call: 'bind', errno: 'EADDRINUSE', target: '10.200.0.1:8080', pid: 43 });
	t.deepEqual(v.holders, [{ pid: 42, comm: 'nginx', timeWait: 1 }]);
});

test('TIME_WAIT overflow is counted from the first walk, not since the namespace was created', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings: settings({ timeWaitOverflow: 500 }) });
	t.is(view(m, 1).namespaces[0]!.overflowSinceStart, 0);
	m.reconcile({ netns: 1, takenAtUs: T0 + 5 * S, sockets: [], settings: settings({ timeWaitOverflow: 530 }) });
	t.is(view(m, 6).namespaces[0]!.overflowSinceStart, 30);
});

test('likely owners of sockets older than twtrace: from connect() calls and open connections, apart from exact counts', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, settings: settings(), sockets: [sock({ sport: 40001 }), sock({ sport: 40002 }), sock({ sport: 40003, daddr: '10.200.0.9' })] });
	m.ingest([ev({ kind: 'connect', tsUs: T0 + S, pid: 300, comm: 'batch', ownerSource: 'connect', sport: 40010 }),
		ev({ kind: 'connect_fail', err: 99, tsUs: T0 + S, pid: 300, comm: 'batch', ownerSource: 'syscall', sport: 0, closerPid: 0 })]);
	let rows = view(m, 2).rows;
	const unknown = rows.find((r) => r.comm === '(before start)')!;
	t.is(unknown.timeWait, 3);
	t.deepEqual(unknown.likely, [{ pid: 300, comm: 'batch', timeWait: 2, evidence: 'only process connecting to 10.200.0.2:7101 (2 connect() calls since start)' }]);
	t.is(rows.find((r) => r.pid === 300)!.timeWait, 0, 'inferred counts are not the process\'s own');

	// A second process holds connections open to it now: the share decides, and says so.
	m.setOpenSockets([
		{ pid: 400, comm: 'pool', netns: 1, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40050, dport: 7101, state: 1 },
		{ pid: 400, comm: 'pool', netns: 1, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40051, dport: 7101, state: 1 },
		{ pid: 400, comm: 'pool', netns: 1, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40052, dport: 7101, state: 1 },
		{ pid: 500, comm: 'nginx', netns: 1, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 8080, dport: 7101, state: 1 }, // not an ephemeral port
	], T0 + 2 * S);
	rows = view(m, 3).rows;
	t.deepEqual(rows.find((r) => r.comm === '(before start)')!.likely, [{ pid: 400, comm: 'pool', timeWait: 2, evidence: '60 % of the connections to 10.200.0.2:7101 of 2 processes (3 open now)' }]);
});

test('--family 6 leaves IPv4 sockets found by walks out: no "(before start)" and no destination for them', (t) => {
	const m = new ChurnModel(T0, { family: 6 });
	m.reconcile({
		netns: 1, takenAtUs: T0, settings: settings(),
		sockets: [sock({ sport: 40001 }), sock({ sport: 40002, state: 1 }), sock({ sport: 40003, family: 6, saddr: 'fd00::1', daddr: 'fd00::2' })],
	});
	const s = view(m, 1);
	t.is(s.rows.find((r) => r.comm === '(before start)')?.timeWait, 1);
	t.deepEqual(s.destinations.map((d) => d.daddr), ['fd00::2']);
});

test('IPv6 endpoints are written [addr]:port in rows, destinations\' peers and victims', (t) => {
	const m = new ChurnModel(T0);
	const v6 = { family: 6 as const, saddr: 'fd00:231::1', daddr: 'fd00:231::2', dport: 7010 };
	m.reconcile({ netns: 1, takenAtUs: T0, settings: settings(), sockets: [sock({ ...v6, sport: 40050 })] });
	m.ingest([tw(1, { ...v6, sport: 40001 }), ev({ kind: 'connect_fail', err: 99, tsUs: T0 + 2 * S, ...v6, sport: 0, pid: 7, comm: 'v', ownerSource: 'syscall', closerPid: 0 })]);
	const s = view(m, 3);
	t.is(s.rows.find((r) => r.comm === 'owner')!.topDest, '[fd00:231::2]:7010');
	t.is(s.victims[0]!.target, '[fd00:231::2]:7010');
	t.deepEqual(s.rows.find((r) => r.comm === '(before start)')!.likely?.map((l) => l.evidence), ['only process connecting to [fd00:231::2]:7010 (1 connect() calls since start)']);
});

test('the forecast heeds tcp_max_tw_buckets: past the cap closes skip TIME_WAIT, so a pool it keeps from filling never exhausts', (t) => {
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 0, nowSecond: 0, timeWaitExpiring: new Map([[30, 50]]), ratePerSec: 10, maxTimeWait: 50 }), undefined);
	t.is(secondsToExhaustion({ portsUsable: 100, portsHeldOpen: 60, nowSecond: 0, timeWaitExpiring: new Map(), ratePerSec: 10, maxTimeWait: 50 }), 4, 'open connections still fill it');
	const forecast = (maxTimeWaitBuckets: number | undefined) => {
		const m = new ChurnModel(T0);
		m.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings: settings({ maxTimeWaitBuckets }) });
		const events: TwtEvent[] = [];
		for (let i = 0; i < 40; i++) events.push(ev({ kind: 'connect', tsUs: T0 + S + i * 0.1 * S, sport: 40000 + i }), tw(1 + i * 0.1, { sport: 40000 + i }));
		m.ingest(events);
		return view(m, 5).destinations[0]!.secondsToExhaustion;
	};
	t.not(forecast(undefined), null, '8/s against 100 ports exhausts them without a cap');
	t.is(forecast(50), null, 'with tcp_max_tw_buckets 50 it never does');
});

test('ports in use never count a connection twice: open at the walk, then in TIME_WAIT; nor ports outside a narrowed range', (t) => {
	const m = new ChurnModel(T0);
	const open = [sock({ state: 1, sport: 40010 }), sock({ state: 1, sport: 40011 }), sock({ state: 1, sport: 40012 })];
	m.reconcile({ netns: 1, takenAtUs: T0 + 2 * S, sockets: open, settings: settings() });
	t.is(view(m, 3).destinations[0]!.portsInUse, 3);
	// Two of them close (they started before the walk; one's start was never seen), and one connection made after it.
	const closes = [tw(4, { sport: 40010, lifetimeUs: 3 * S }), tw(4, { sport: 40011, lifetimeUs: 0 }), tw(4.5, { sport: 40020, lifetimeUs: 100_000 })];
	m.ingest(closes);
	t.is(view(m, 5).destinations[0]!.portsInUse, 4, '1 open + 3 TIME_WAIT, not 3 open + 3 TIME_WAIT');
	// The range narrows to 40015-40099 while they are held: the sockets on 40010-40012 leave the pool.
	m.reconcile({
		netns: 1, takenAtUs: T0 + 6 * S, settings: settings({ portRange: { low: 40015, high: 40099 } }),
		sockets: [sock({ state: 1, sport: 40012 }), ...closes.map((e) => sock({ cookie: e.cookie, sport: e.sport, expiresUs: T0 + 64 * S }))],
	});
	const d = view(m, 7).destinations[0]!;
	t.is(d.portsInUse, 1, 'only 40020, in TIME_WAIT');
	t.is(d.portsUsable, 85);
});

test('connections accepted on a listener older than twtrace are "(listener before start)", not "(before start)"', (t) => {
	const m = new ChurnModel(T0);
	const accepted = { kind: 'accept' as const, side: 'server' as const, ownerSource: 'none' as const, pid: 0, comm: '', closerPid: 0, sport: 8080, dport: 50000 };
	m.ingest([ev({ ...accepted, tsUs: T0 + S }), ev({ ...accepted, tsUs: T0 + S, dport: 50001 })]);
	const rows = view(m, 2).rows;
	t.like(rows.find((r) => r.comm === '(listener before start)'), { acceptsPerSec: 2 / 2 });
	t.falsy(rows.find((r) => r.comm === '(before start)'));
});

test('a namespace\'s TIME_WAIT is the count now: exact at a walk, then kept by events and expiry until the next', (t) => {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [sock({ sport: 40001 })], settings: settings() });
	m.ingest(Array.from({ length: 300 }, (_, i) => tw(2 + i / 1000)));
	const ns = view(m, 5).namespaces[0]!;
	t.like(ns, { timeWait: 301, timeWaitFrom: 'model', walkedTimeWait: 1 }, 'the walk is 5 s old; the namespace holds 301 now');
	t.like(view(m, 62.5).namespaces[0], { timeWait: 0, walkedTimeWait: 1 }, 'all of them expired with the kernel\'s timers, the walked one included');
});

test('a filtered model sees part of a namespace: its total is the last walk\'s, said to be so', (t) => {
	const m = new ChurnModel(T0, { comm: 'owner' });
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [sock({ sport: 40001 }), sock({ sport: 40002 })], settings: settings() });
	m.ingest([tw(1), tw(1)]);
	t.like(view(m, 2).namespaces[0], { timeWait: 2, timeWaitFrom: 'walk', walkedTimeWait: 2 });
	t.is(view(m, 2).rows.find((r) => r.comm === 'owner')!.timeWait, 2, 'its own rows still count now');
});

test('TIME_WAIT older than twtrace on a port nobody listened on at first is counted against the process seen listening there since', (t) => {
	const m = new ChurnModel(T0);
	const old = Array.from({ length: 100 }, (_, i) => sock({ saddr: '10.200.0.2', sport: 7600, daddr: '10.200.0.1', dport: 41000 + i }));
	// The server that made them has exited: nothing listens on 7600 at the first walk.
	m.reconcile({ netns: 1, takenAtUs: T0, settings: settings(), sockets: old });
	t.like(view(m, 1).rows.find((r) => r.comm === '(before start)'), { timeWait: 100 });
	// It was restarted after twtrace began: its listen() was seen, and the next walk finds it listening.
	const listener = sock({ state: 10, saddr: '10.200.0.2', sport: 7600, daddr: '0.0.0.0', dport: 0, substate: 0 });
	const restarted = { pid: 4321, comm: 'restarted-serve' }; // 15 characters, all the kernel keeps
	m.reconcile({ netns: 1, takenAtUs: T0 + 5 * S, settings: settings(), sockets: [listener, ...old], listenerOwner: (port) => (port === 7600 ? restarted : undefined) });
	const rows = view(m, 6).rows;
	t.like(rows.find((r) => r.pid === 4321), { comm: 'restarted-serve', timeWait: 100, side: 'server', topDest: 'local 10.200.0.2:7600' });
	t.is(rows.find((r) => r.comm === '(before start)')?.timeWait ?? 0, 0, 'none left of unknown process');
	t.is(view(m, 6).namespaces[0]!.timeWait, 100, 'moved, not counted twice');
});

test('a server\'s TIME_WAIT older than twtrace, on a port whose listen() was not seen: the holder of the listening socket is the likely owner', (t) => {
	const m = new ChurnModel(T0);
	const listener = sock({ state: 10, saddr: '0.0.0.0', sport: 7600, daddr: '0.0.0.0', dport: 0, substate: 0 });
	const old = Array.from({ length: 50 }, (_, i) => sock({ saddr: '10.200.0.2', sport: 7600, daddr: '10.200.0.1', dport: 41000 + i }));
	m.reconcile({ netns: 1, takenAtUs: T0, settings: settings(), sockets: [listener, ...old] });
	const listening = (pid: number, comm: string) => ({ pid, comm, netns: 1, family: 4 as const, saddr: '0.0.0.0', daddr: '0.0.0.0', sport: 7600, dport: 0, state: 10 });
	m.setOpenSockets([listening(900, 'api-server')], T0 + S);
	let row = view(m, 2).rows.find((r) => r.comm === '(before start)')!;
	t.like(row, { timeWait: 50, side: 'server', topDest: 'local 10.200.0.2:7600' });
	t.deepEqual(row.likely, [{ pid: 900, comm: 'api-server', timeWait: 50, evidence: 'holds the listening socket of 10.200.0.2:7600' }]);
	t.falsy(view(m, 2).rows.find((r) => r.pid === 900), 'the inference adds nothing to its own count');

	// A pre-forked server: the parent and its workers all hold the listening socket. Not certain: the first, and why.
	m.setOpenSockets([listening(912, 'nginx'), listening(910, 'nginx'), listening(911, 'nginx')], T0 + 2 * S);
	row = view(m, 3).rows.find((r) => r.comm === '(before start)')!;
	t.deepEqual(row.likely, [{ pid: 910, comm: 'nginx', timeWait: 50, evidence: 'the first of 3 processes that hold the listening socket of 10.200.0.2:7600 (nginx): which of them made these sockets is not known' }]);
});

test('a model fed from the kernel\'s counts (countFrom: the agent) takes from events only the failures: the counted kinds are never taken twice', (t) => {
	const m = new ChurnModel(T0);
	m.countFrom(T0);
	t.is(m.ingestOne(ev({ kind: 'connect', tsUs: T0 + S })), undefined);
	t.is(m.ingestOne(tw(1)), undefined);
	t.is(m.ingestOne(ev({ kind: 'reset', tsUs: T0 + S })), undefined);
	t.truthy(m.ingestOne(ev({ kind: 'connect_fail', err: 99, tsUs: T0 + S })));
	const row = view(m, 2).rows[0]!;
	t.is(row.timeWait, 0, 'TIME_WAIT comes from the counts');
	t.deepEqual(row.connectFailures, { 99: 1 });
	t.is(m.victims.since(T0).length, 1, 'its victim listed');
});

test('ports in use from counts: a connection open at the walk that ends is not counted twice when its lifetime\'s bucket says it started before the walk', (t) => {
	const m = new ChurnModel(T0);
	m.countFrom(T0);
	const open = Array.from({ length: 5 }, (_, i) => sock({ state: 1, sport: 40010 + i }));
	m.reconcile({ netns: 1, takenAtUs: T0 + 10 * S, sockets: open, settings: settings() });
	t.is(view(m, 11).destinations[0]!.portsInUse, 5);
	const key: CountKey = { netns: 1, blamed: 7, cgroupId: 0, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', port: 7101, side: 'client' };
	const delta = new Float64Array(COUNT_COLUMNS);
	const bucket = (ms: number) => COUNT_COLUMN.lifetime + LIFETIME_BOUNDS_US.findIndex((b) => b >= ms * 1000);
	delta[COUNT_COLUMN.timeWait] = 7;
	delta[COUNT_COLUMN.lifetimeCount] = 7;
	delta[bucket(120_000)] = 3; // (1 min, 5 min]: open at the walk 10 s before
	delta[bucket(3)] = 2; // (1 ms, 5 ms]: made since
	delta[bucket(8_000)] = 2; // (5 s, 10 s]: it cannot say; left open until the next walk
	m.ingestCounts(key, { pid: 7, comm: 'counted' }, delta, T0 + 20 * S);
	t.is(view(m, 21).destinations[0]!.portsInUse, 2 + 7, '5 open less the 3 that surely were, and 7 in TIME_WAIT');
});

test('beside counts, a walk takes the timewait sockets armed before counting began, dated by their timer less the wheel\'s slack, and leaves the later ones to the counts', (t) => {
	const m = new ChurnModel(T0);
	m.attachedUs = T0 + 10 * S;
	m.countFrom(T0 + 10 * S);
	// Armed 1 s before counting began; the wheel runs its timer 2 s after its own expiry (HZ 250, kernel-facts §9).
	const before = sock({ state: 6, substate: 6, sport: 40001, expiresUs: T0 + 9 * S + 60 * S + 2 * S, slackUs: 2 * S });
	// Armed 0.5 s after counting began: the kernel counted it.
	const after = sock({ state: 6, substate: 6, sport: 40002, expiresUs: T0 + 10.5 * S + 60 * S + 1 * S, slackUs: 1 * S });
	m.reconcile({ netns: 1, takenAtUs: T0 + 12 * S, sockets: [before, after], settings: settings() });
	const rows = view(m, 12).rows;
	t.deepEqual(rows.map((r) => [r.comm, r.timeWait]), [['(before start)', 1]]);
	t.true(m.timeWait.has(before.cookie));
	t.false(m.timeWait.has(after.cookie));
});

test('counted entries stop at the namespace\'s tcp_max_tw_buckets, as the kernel refuses timewait sockets past it', (t) => {
	const m = new ChurnModel(T0);
	m.countFrom(T0);
	m.setSettings(1, settings({ maxTimeWaitBuckets: 100 }));
	const key: CountKey = { netns: 1, blamed: 7, cgroupId: 0, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', port: 7101, side: 'client' };
	const entries = (n: number) => {
		const delta = new Float64Array(COUNT_COLUMNS);
		delta[COUNT_COLUMN.timeWait] = n;
		return delta;
	};
	m.ingestCounts(key, { pid: 7, comm: 'counted' }, entries(80), T0 + 1 * S);
	m.ingestCounts(key, { pid: 7, comm: 'counted' }, entries(50), T0 + 2 * S);
	t.is(m.namespaceTimeWait(1).count, 100, 'the kernel held 100 and refused 30 (TcpExtTCPTimeWaitOverflow)');
	t.is(view(m, 3).rows[0]!.timeWait, 100);
	m.ingestCounts(key, { pid: 7, comm: 'counted' }, entries(50), T0 + 61.5 * S); // the first 80 have expired, the 20 not yet
	t.is(m.namespaceTimeWait(1).count, 20 + 50);
});

test('a key read again and again counts against one owner and destination; one the model forgot is found anew, and another task blamed gets its own', (t) => {
	const m = new ChurnModel(T0);
	m.countFrom(T0);
	const key: CountKey = { netns: 1, blamed: 7, cgroupId: 0, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', port: 7101, side: 'client' };
	const made = (n: number) => {
		const delta = new Float64Array(COUNT_COLUMNS);
		delta[COUNT_COLUMN.connections] = n;
		return delta;
	};
	for (let s = 1; s <= 3; s++) m.ingestCounts(key, { pid: 7, comm: 'counted' }, made(10), T0 + s * S);
	const first = m.owners.get([...m.owners.keys()][0]!)!;
	t.is(m.owners.size, 1);
	t.is(first.lastEventUs, T0 + 3 * S, 'each reading marks its owner active, cached or not');
	// Idle for two TIME_WAIT lengths: the model forgets the owner and the destination.
	m.tick(T0 + 200 * S);
	t.is(m.owners.size, 0);
	t.is(m.destinations.size, 0);
	m.ingestCounts(key, { pid: 7, comm: 'counted' }, made(4), T0 + 201 * S);
	const again = [...m.owners.values()];
	t.is(again.length, 1, 'the same key counts against a new owner the model keeps');
	t.not(again[0], first);
	t.is(m.destinations.size, 1);
	// The key's task now named otherwise (the kernel sends a new task record when a pid or name changes).
	m.ingestCounts(key, { pid: 8, comm: 'renamed' }, made(1), T0 + 202 * S);
	t.deepEqual([...m.owners.values()].map((o) => [o.pid, o.comm]).sort(), [[7, 'counted'], [8, 'renamed']]);
	const rows = view(m, 203).rows;
	t.deepEqual(rows.map((r) => [r.comm, r.connectsPerSec * 5]).sort(), [['counted', 4], ['renamed', 1]], 'connections over the 5 s window');
});
