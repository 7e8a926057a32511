/**
 * One event as a line of `twtrace trace --json` (NDJSON; schema in README.md, "Event schema").
 * Pure: the wall clock and cgroup names come in through EventContext.
 *
 * The line is built as a string, not as an object passed to JSON.stringify: at full churn this runs
 * 150,000 times a second, and building the object then serialising it cost ~3 µs per event, most of
 * the tracer's CPU (bench/RESULTS.md). test/unit/event-json.test.ts checks every line parses and
 * that strings from the kernel (comm can hold any byte) are escaped.
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
	/** The workload of a cgroup id ("nginx.service", "docker 479e1c2a9b3f", "pod … (burstable) …"), if any. */
	workload?: (id: number) => string | undefined;
}

export function eventJsonLine(e: TwtEvent, ctx: EventContext): string {
	const who = blame(e);
	const cgroupPath = ctx.cgroupPath(e.cgroupId);
	let out = `{"kind":"${e.kind}","ts":"${isoTime(e.tsUs + ctx.epochOffsetUs)}","pid":${who.pid},"tid":${who.tid},` +
		`"comm":${jsonString(who.comm)},"uid":${who.uid},"attributedBy":"${who.via}",` +
		`"cgroup":${cgroupPath === undefined ? e.cgroupId : jsonString(cgroupPath)},"workload":${jsonOrNull(ctx.workload?.(e.cgroupId))},"netns":${e.netns},` +
		`"family":"${e.family === 6 ? 'ipv6' : 'ipv4'}","saddr":"${e.saddr}","sport":${e.sport},"daddr":"${e.daddr}","dport":${e.dport}`;
	if (e.kind === 'bind_fail') return `${out},"errno":${errnoJson(e.err)}}`;
	const owned = e.ownerSource !== 'none';
	out += `,"cookie":${e.cookie},"side":"${e.side}","ownerPid":${owned ? e.pid : null},"ownerComm":${owned ? jsonString(e.comm) : null}`;
	switch (e.kind) {
		case 'time_wait':
			return `${out},"substate":${stateJson(e.substate)}${closeJson(e)},"recovered":${e.recovered}}`;
		case 'active_close':
			return `${out}${closeJson(e)}}`;
		case 'reset':
			return `${out},"origin":"${e.err === 0 ? 'local' : 'peer'}","errno":${e.err === 0 ? null : errnoJson(e.err)},` +
				`"state":${stateJson(e.oldState)}${closeJson(e)}}`;
		case 'connect_fail':
			return `${out},"errno":${e.err === 0 ? null : errnoJson(e.err)}}`;
		default:
			return `${out}}`;
	}
}

/** The end of a connection: how long it lived (null: its start was not seen) and who closed it. */
function closeJson(e: TwtEvent): string {
	const lifetimeMs = e.lifetimeUs === 0 ? null : Math.round(e.lifetimeUs) / 1000;
	return `,"lifetimeMs":${lifetimeMs},"closerPid":${e.closerPid || null},"closerComm":${e.closerPid ? jsonString(e.closerComm) : null}`;
}

function stateJson(state: number): string {
	const name = TCP_STATE_NAMES[state];
	return name === undefined ? String(state) : `"${name}"`;
}

function errnoJson(err: number): string {
	const name = errnoName(err);
	return name === undefined ? String(err) : `"${name}"`;
}

// Only '"', '\' and control characters need escaping in JSON; anything else is copied as is.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;
let lastRaw = '';
let lastQuoted = '""';

/** A JSON string literal. comm values repeat from event to event, so the last one is remembered. */
export function jsonString(s: string): string {
	if (s === lastRaw) return lastQuoted;
	const quoted = NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
	lastRaw = s;
	lastQuoted = quoted;
	return quoted;
}

let lastSecond = -1;
let lastSecondIso = '';

/** Epoch µs → ISO 8601 with milliseconds, as Date#toISOString; the date part is reused within a second. */
export function isoTime(epochUs: number): string {
	const ms = Math.floor(epochUs / 1000);
	const second = Math.floor(ms / 1000);
	if (second !== lastSecond) {
		lastSecond = second;
		lastSecondIso = new Date(second * 1000).toISOString().slice(0, 20); // "2026-11-21T06:43:34."
	}
	const frac = ms - second * 1000;
	return `${lastSecondIso}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
}

function jsonOrNull(s: string | undefined): string {
	return s === undefined ? 'null' : jsonString(s);
}
