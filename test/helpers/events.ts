/** A decoded event to vary in unit tests: an outgoing IPv4 connection that entered TIME_WAIT. */
import type { TwtEvent } from '../../src/event/decode.js';

export const base: TwtEvent = {
	kind: 'time_wait', tsUs: 1_000_000, cookie: 77, cgroupId: 9, lifetimeUs: 2500, family: 4,
	saddr: '10.200.0.1', daddr: '10.200.0.2', sport: 40000, dport: 7101, netns: 1,
	pid: 100, tid: 101, uid: 0, comm: 'owner', ownerSource: 'connect',
	closerPid: 200, closerTid: 201, closerUid: 33, closerComm: 'closer',
	err: 0, side: 'client', substate: 6, oldState: 5, newState: 7, recovered: false, twSlackMs: 0,
};
