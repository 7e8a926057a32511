/**
 * One event as a line of `twtrace trace`, for people: fixed columns first, then key=value details.
 */
import type { TwtEvent } from '../event/decode.js';
import { TCP_STATE_NAMES } from '../event/kinds.js';
import { blame } from '../model/attribution.js';
import { errnoName } from '../event/errno.js';
import { isoTime, type EventContext } from './event-json.js';

export const TEXT_HEADER = `${'TIME'.padEnd(12)} ${'KIND'.padEnd(12)} ${'PID'.padStart(7)} ${'COMM'.padEnd(15)} ${'LOCAL'.padEnd(22)}    ${'REMOTE'.padEnd(22)} DETAILS`;

export function eventText(e: TwtEvent, ctx: EventContext): string {
	const who = blame(e);
	const time = isoTime(e.tsUs + ctx.epochOffsetUs).slice(11, 23);
	const local = endpoint(e.saddr, e.sport, e.family);
	const remote = e.kind === 'bind_fail' ? '-' : endpoint(e.daddr, e.dport, e.family);
	const details: string[] = [];
	if (e.kind !== 'bind_fail') details.push(`side=${e.side}`);
	if (who.via === 'close' && e.ownerSource !== 'none') details.push(`owner=${e.pid}/${e.comm}`);
	if ((e.kind === 'time_wait' || e.kind === 'active_close' || e.kind === 'reset') && e.closerPid && e.closerPid !== who.pid) {
		details.push(`closer=${e.closerPid}/${e.closerComm}`);
	}
	if (e.kind === 'time_wait') details.push(`substate=${TCP_STATE_NAMES[e.substate]}`);
	if (e.recovered) details.push('recovered-by-walk');
	if (e.kind === 'reset') details.push(e.err ? `peer ${errnoName(e.err) ?? e.err}` : 'local abort', `from=${TCP_STATE_NAMES[e.oldState]}`);
	if (e.kind === 'connect_fail' || e.kind === 'bind_fail') details.push(e.err ? `errno=${errnoName(e.err) ?? e.err}` : 'closed before established');
	if (e.lifetimeUs && e.kind !== 'connect' && e.kind !== 'accept') details.push(`lifetime=${formatUs(e.lifetimeUs)}`);
	if (who.via === 'unknown') details.push('owner=unknown(before start)');
	return `${time.padEnd(12)} ${e.kind.padEnd(12)} ${String(who.pid || '-').padStart(7)} ${(who.comm || '-').padEnd(15)} ${local.padEnd(22)} -> ${remote.padEnd(22)} ${details.join(' ')}`;
}

function endpoint(addr: string, port: number, family: 4 | 6): string {
	return family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

function formatUs(us: number): string {
	if (us < 1000) return `${us}us`;
	if (us < 1_000_000) return `${(us / 1000).toFixed(1)}ms`;
	return `${(us / 1_000_000).toFixed(2)}s`;
}
