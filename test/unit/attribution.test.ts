import test from 'ava';
import type { TwtEvent } from '../../src/event/decode.js';
import { blame } from '../../src/model/attribution.js';
import { eventJson } from '../../src/views/event-json.js';

const base: TwtEvent = {
	kind: 'time_wait', tsUs: 1_000_000, cookie: 77, cgroupId: 9, lifetimeUs: 2500, family: 4,
	saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40000, dport: 7101, netns: 1,
	pid: 100, tid: 101, uid: 0, comm: 'owner', ownerSource: 'connect',
	closerPid: 200, closerTid: 201, closerUid: 33, closerComm: 'closer',
	err: 0, side: 'client', substate: 6, oldState: 5, newState: 7,
};

test('an outgoing connection is blamed on the connect() caller even when another process closed it', (t) => {
	t.like(blame(base), { pid: 100, comm: 'owner', via: 'connect' });
});

test('an accepted connection is blamed on the worker that closed it, not the listener', (t) => {
	t.like(blame({ ...base, side: 'server', ownerSource: 'listen' }), { pid: 200, tid: 201, uid: 33, comm: 'closer', via: 'close' });
});

test('an accepted connection not yet closed is blamed on the listener', (t) => {
	t.like(blame({ ...base, kind: 'accept', side: 'server', ownerSource: 'listen', closerPid: 0, closerComm: '' }), { pid: 100, via: 'listen' });
});

test('a socket older than twtrace is blamed on its closer, or on nobody', (t) => {
	t.like(blame({ ...base, side: 'unknown', ownerSource: 'none', pid: 0, comm: '' }), { pid: 200, via: 'close' });
	t.like(blame({ ...base, side: 'unknown', ownerSource: 'none', pid: 0, comm: '', closerPid: 0 }), { pid: 0, via: 'unknown' });
});

test('a bind failure is blamed on the calling process', (t) => {
	t.like(blame({ ...base, kind: 'bind_fail', ownerSource: 'syscall', closerPid: 0, side: 'unknown' }), { pid: 100, via: 'syscall' });
});

test('time_wait JSON carries the documented fields', (t) => {
	const json = eventJson(base, { epochOffsetUs: 1_700_000_000_000_000, cgroupPath: (id) => (id === 9 ? '/app.slice' : undefined) });
	t.deepEqual(json, {
		kind: 'time_wait', ts: new Date(1_700_000_001_000).toISOString(), pid: 100, tid: 101, comm: 'owner', uid: 0,
		attributedBy: 'connect', cgroup: '/app.slice', netns: 1, family: 'ipv4', saddr: '10.200.0.1', sport: 40000,
		daddr: '10.200.0.2', dport: 7101, cookie: 77, side: 'client', ownerPid: 100, ownerComm: 'owner',
		substate: 'TIME_WAIT', lifetimeMs: 2.5, closerPid: 200, closerComm: 'closer',
	});
});

test('errno is a name in connect_fail, and a cgroup without a known path is its id', (t) => {
	const json = eventJson({ ...base, kind: 'connect_fail', err: 99, sport: 0 }, { epochOffsetUs: 0, cgroupPath: () => undefined });
	t.is(json.errno, 'EADDRNOTAVAIL');
	t.is(json.cgroup, 9);
});
