/**
 * One event as the NDJSON object of `twtrace trace --json` (schema in README.md, "Event schema").
 * Pure: the wall clock and cgroup names come in through EventContext.
 */
import type { TwtEvent } from '../event/decode.js';
import { TCP_STATE_NAMES } from '../event/kinds.js';
import { blame } from '../model/attribution.js';
import { errnoName } from '../event/errno.js';

export interface EventContext {
	/** Adds to a CLOCK_MONOTONIC µs timestamp to give Unix epoch µs. */
	epochOffsetUs: number;
	/** Path of a cgroup v2 id relative to the cgroup root ("/system.slice/nginx.service"), if known. */
	cgroupPath: (id: number) => string | undefined;
}

export type EventJson = Record<string, string | number | boolean | null>;

export function eventJson(e: TwtEvent, ctx: EventContext): EventJson {
	const who = blame(e);
	const out: EventJson = {
		kind: e.kind,
		ts: new Date((e.tsUs + ctx.epochOffsetUs) / 1000).toISOString(),
		pid: who.pid,
		tid: who.tid,
		comm: who.comm,
		uid: who.uid,
		attributedBy: who.via,
		cgroup: ctx.cgroupPath(e.cgroupId) ?? e.cgroupId,
		netns: e.netns,
		family: e.family === 6 ? 'ipv6' : 'ipv4',
		saddr: e.saddr,
		sport: e.sport,
		daddr: e.daddr,
		dport: e.dport,
	};
	if (e.kind === 'bind_fail') {
		out.errno = errnoName(e.err) ?? e.err;
		return out;
	}
	out.cookie = e.cookie;
	out.side = e.side;
	out.ownerPid = e.ownerSource === 'none' ? null : e.pid;
	out.ownerComm = e.ownerSource === 'none' ? null : e.comm;
	switch (e.kind) {
		case 'time_wait':
			out.substate = TCP_STATE_NAMES[e.substate] ?? e.substate;
			addClose(out, e);
			break;
		case 'active_close':
			addClose(out, e);
			break;
		case 'reset':
			out.origin = e.err === 0 ? 'local' : 'peer';
			out.errno = e.err === 0 ? null : errnoName(e.err) ?? e.err;
			out.state = TCP_STATE_NAMES[e.oldState] ?? e.oldState;
			addClose(out, e);
			break;
		case 'connect_fail':
			out.errno = e.err === 0 ? null : errnoName(e.err) ?? e.err;
			break;
		default:
			break;
	}
	return out;
}

/** The end of a connection: how long it lived and who closed it (null: not seen). */
function addClose(out: EventJson, e: TwtEvent): void {
	out.lifetimeMs = lifetimeMs(e);
	out.closerPid = e.closerPid || null;
	out.closerComm = e.closerPid ? e.closerComm : null;
}

/** null when the start of the connection was not seen. */
function lifetimeMs(e: TwtEvent): number | null {
	return e.lifetimeUs === 0 ? null : Math.round(e.lifetimeUs) / 1000;
}
