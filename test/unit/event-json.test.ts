import test from 'ava';
import { ALL_KINDS } from '../../src/event/kinds.js';
import { eventJsonLine, isoTime, jsonString } from '../../src/views/event-json.js';
import { base } from '../helpers/events.js';

const ctx = { epochOffsetUs: 1_700_000_000_000_000, cgroupPath: (id: number) => (id === 9 ? '/app.slice/web.service' : undefined), workload: (id: number) => (id === 9 ? 'web.service' : undefined) };
const parse = (e = base, c = ctx) => JSON.parse(eventJsonLine(e, c)) as Record<string, unknown>;

test('time_wait JSON carries the documented fields, in order', (t) => {
	const line = eventJsonLine(base, ctx);
	t.deepEqual(Object.entries(JSON.parse(line)), Object.entries({
		kind: 'time_wait', ts: new Date(1_700_000_001_000).toISOString(), pid: 100, tid: 101, comm: 'owner', uid: 0,
		attributedBy: 'connect', cgroup: '/app.slice/web.service', workload: 'web.service', netns: 1, family: 'ipv4', saddr: '10.200.0.1', sport: 40000,
		daddr: '10.200.0.2', dport: 7101, cookie: 77, side: 'client', ownerPid: 100, ownerComm: 'owner',
		substate: 'TIME_WAIT', lifetimeMs: 2.5, closerPid: 200, closerComm: 'closer', recovered: false,
	}));
});

test('errno is a name in connect_fail, and a cgroup without a known path is its id', (t) => {
	const json = parse({ ...base, kind: 'connect_fail', err: 99, sport: 0 }, { epochOffsetUs: 0, cgroupPath: () => undefined, workload: () => undefined });
	t.is(json.errno, 'EADDRNOTAVAIL');
	t.is(json.cgroup, 9);
	t.is(json.workload, null);
});

test('every kind gives one line of valid JSON with its kind-specific fields', (t) => {
	const extra: Record<string, string[]> = {
		time_wait: ['substate', 'lifetimeMs', 'closerPid', 'closerComm', 'recovered'],
		active_close: ['lifetimeMs', 'closerPid', 'closerComm'],
		reset: ['origin', 'errno', 'state', 'lifetimeMs', 'closerPid', 'closerComm'],
		connect_fail: ['errno'],
		bind_fail: ['errno'],
		connect: [],
		accept: [],
	};
	for (const kind of ALL_KINDS) {
		const line = eventJsonLine({ ...base, kind, err: kind.endsWith('_fail') ? 98 : 0 }, ctx);
		t.false(line.includes('\n'), kind);
		const keys = Object.keys(JSON.parse(line));
		t.deepEqual(keys.slice(keys.indexOf('dport') + 1).filter((k) => !['cookie', 'side', 'ownerPid', 'ownerComm'].includes(k)), extra[kind], kind);
	}
});

test('unknown owners, unseen starts and unknown errnos are null or numbers, never made up', (t) => {
	const json = parse({ ...base, kind: 'reset', ownerSource: 'none', lifetimeUs: 0, closerPid: 0, err: 4095 });
	t.like(json, { ownerPid: null, ownerComm: null, lifetimeMs: null, closerPid: null, closerComm: null, origin: 'peer', errno: 4095 });
});

test('comm bytes that JSON must escape are escaped (a comm is any 15 bytes a process chose)', (t) => {
	for (const comm of ['a"b', 'back\\slash', 'tab\there', 'nul\u0000x', '\u001b[31mred', 'naïve', '日本']) {
		t.is(JSON.parse(jsonString(comm)), comm);
		t.is(parse({ ...base, comm }).comm, comm);
		t.is(parse({ ...base, comm: 'x', closerComm: comm }).closerComm, comm);
	}
});

test('isoTime equals Date#toISOString, across second and year boundaries', (t) => {
	const samples = [0, 999, 1000, 1_699_999_999_999_999, 1_700_000_000_000_000, 1_700_000_000_999_999, 1_735_689_599_999_500, 1_735_689_600_000_000];
	for (let i = 0; i < 2000; i++) samples.push(Math.floor(1.7e15 + i * 777_777.7));
	for (const us of samples) t.is(isoTime(us), new Date(Math.floor(us / 1000)).toISOString(), String(us));
});
