/**
 * Tracing filters answered from a model built without them (the agent's): the snapshot narrowed
 * to what --netns, --pid, --comm, --port and --family ask, the query that carries them, and when
 * an agent's own filters cannot answer (its model left those sockets out).
 */
import test from 'ava';
import type { TwtEvent } from '../../src/event/decode.js';
import { ChurnModel } from '../../src/model/churn-model.js';
import type { NetnsSettings } from '../../src/facts/netns-settings.js';
import { snapshot } from '../../src/model/snapshot.js';
import { parseSnapshotQuery } from '../../src/agent/server.js';
import { snapshotQueryString } from '../../src/agent/wire.js';
import { whyAgentCannotAnswer } from '../../src/source/agent-choice.js';
import { base } from '../helpers/events.js';

const S = 1_000_000;
const T0 = 1000 * S;
const settings: NetnsSettings = { portRange: { low: 40000, high: 40999 }, reservedPorts: new Set(), finTimeoutSec: 60 };
let cookie = 1;
const tw = (over: Partial<TwtEvent>): TwtEvent => ({ ...base, tsUs: T0 + S, cookie: cookie++, ...over });

/** Two namespaces: a churner (pid 10) and a client (pid 20, IPv6) in 1, a server (pid 30) in 2; a victim in 1. */
function hostModel(): ChurnModel {
	const m = new ChurnModel(T0);
	m.reconcile({ netns: 1, takenAtUs: T0, sockets: [], settings });
	m.reconcile({ netns: 2, takenAtUs: T0, sockets: [], settings });
	const events: TwtEvent[] = [];
	for (let i = 0; i < 30; i++) events.push(tw({ netns: 1, pid: 10, comm: 'churner', sport: 40000 + i, dport: 7800 }));
	for (let i = 0; i < 5; i++) events.push(tw({ netns: 1, pid: 20, comm: 'client6', family: 6, saddr: 'fd00::1', daddr: 'fd00::2', sport: 40100 + i, dport: 443 }));
	for (let i = 0; i < 7; i++) events.push(tw({ netns: 2, pid: 30, comm: 'server', closerPid: 30, closerComm: 'server', side: 'server', ownerSource: 'listen', saddr: '10.200.0.2', sport: 7800, daddr: '10.200.0.1', dport: 41000 + i }));
	events.push({ ...base, kind: 'connect_fail', err: 99, tsUs: T0 + 2 * S, cookie: cookie++, netns: 1, pid: 40, comm: 'victim', ownerSource: 'syscall', sport: 0, dport: 7800, closerPid: 0 });
	m.ingest(events);
	return m;
}

const view = (m: ChurnModel, v: Parameters<typeof snapshot>[1]['view']) => snapshot(m, { by: 'process', sort: 'timeWait', nowUs: T0 + 3 * S, rateWindowUs: 5 * S, view: v });
const rowPids = (s: ReturnType<typeof view>) => s.rows.map((r) => r.pid).sort();

test('--netns keeps that namespace\'s rows, destinations, victims and total; other namespaces are gone', (t) => {
	const s = view(hostModel(), { netns: [2] });
	t.deepEqual(rowPids(s), [30]);
	t.deepEqual(s.namespaces.map((n) => [n.netns, n.timeWait]), [[2, 7]]);
	t.deepEqual(s.victims, []);
	t.true(s.destinations.every((d) => d.netns === 2));
});

test('--pid keeps that process\'s rows and the destinations it uses, with their whole counts', (t) => {
	const m = hostModel();
	const s = view(m, { pid: 10 });
	t.deepEqual(rowPids(s), [10]);
	t.deepEqual(s.destinations.map((d) => `${d.daddr}:${d.dport} ${d.portsInUse}`), ['10.200.0.2:7800 30']);
	t.deepEqual(s.victims, [], 'the victim is another process');
	t.is(s.namespaces.length, 2, 'namespace totals are the namespaces\', whatever the process');
});

test('--comm, --port and --family keep what matches them', (t) => {
	const m = hostModel();
	t.deepEqual(rowPids(view(m, { comm: 'client6' })), [20]);
	t.deepEqual(rowPids(view(m, { port: 7800 })), [10, 30, 40], 'outgoing to 7800, accepted on 7800, and the victim connecting to it');
	t.deepEqual(view(m, { port: 7800 }).victims.map((v) => v.comm), ['victim']);
	t.deepEqual(rowPids(view(m, { family: 6 })), [20]);
	t.deepEqual(view(m, { family: 6 }).destinations.map((d) => d.daddr), ['fd00::2']);
	t.deepEqual(rowPids(view(m, { netns: [1], port: 443 })), [20]);
});

test('no view, or an empty one, is the whole model', (t) => {
	const m = hostModel();
	t.deepEqual(rowPids(view(m, undefined)), rowPids(view(m, {})));
	t.deepEqual(rowPids(view(m, {})), [10, 20, 30, 40]);
});

test('the filters travel in the snapshot query and come back the same', (t) => {
	const q = { by: 'process' as const, sort: 'timeWait' as const, windowMs: 1000, view: { netns: [4026532177, 7], pid: 42, comm: 'a b&c', port: 7800, family: 6 as const } };
	t.deepEqual(parseSnapshotQuery(new URLSearchParams(snapshotQueryString(q))).view, q.view);
	t.is(parseSnapshotQuery(new URLSearchParams('by=process')).view, undefined);
	t.throws(() => parseSnapshotQuery(new URLSearchParams('netns=1,x')), { message: /netns=1,x: inode numbers/ });
	t.throws(() => parseSnapshotQuery(new URLSearchParams('port=70000')), { message: /port=70000: 1-65535/ });
	t.throws(() => parseSnapshotQuery(new URLSearchParams('family=5')), { message: /family=5: 4 or 6/ });
});

test('an agent answers what its own filters cover; otherwise it says which filter of its own leaves it out', (t) => {
	const none = { netns: [], comm: null, pid: null, port: null, family: null };
	t.is(whyAgentCannotAnswer(none, { netns: [5], pid: 9, comm: 'x', port: 80, family: 4 }), undefined, 'no filters cover all');
	const two = { ...none, netns: [5, 6] };
	t.is(whyAgentCannotAnswer(two, { netns: [6] }), undefined);
	t.is(whyAgentCannotAnswer(two, { netns: [6, 7] }), 'the agent traces only --netns 5 6; --netns 7 is outside them');
	t.is(whyAgentCannotAnswer(two, { pid: 3 }), 'the agent traces only --netns 5 6; other namespaces are outside them');
	t.is(whyAgentCannotAnswer({ ...none, comm: 'api' }, { comm: 'api', port: 80 }), undefined);
	t.is(whyAgentCannotAnswer({ ...none, comm: 'api' }, { comm: 'web' }), 'the agent traces only --comm api, not web');
	t.is(whyAgentCannotAnswer({ ...none, port: 443 }, { pid: 1 }), 'the agent traces only --port 443');
	t.is(whyAgentCannotAnswer({ ...none, family: '6' }, { family: 6 }), undefined);
});
