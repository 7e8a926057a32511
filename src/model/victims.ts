/**
 * The victims of port exhaustion, live: processes whose connect() failed with EADDRNOTAVAIL (no
 * free local port towards a destination) or whose bind() failed with EADDRINUSE (the port is held),
 * kept per (process, call, target) with their first and last failure. Bounded: beyond MAX_VICTIMS
 * entries failures are only counted. Pure: time comes from the events.
 */
import { endpoint } from '../event/endpoint.js';
import type { TwtEvent } from '../event/decode.js';

export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;

/** A failure for want of a port: connect() EADDRNOTAVAIL (towards daddr:dport) or bind() EADDRINUSE (on saddr:sport). */
export interface PortFailure {
	call: 'connect' | 'bind';
	errno: 'EADDRNOTAVAIL' | 'EADDRINUSE';
	/** "daddr:dport" for connect, "saddr:sport" for bind. */
	target: string;
}

export function portFailure(e: TwtEvent): PortFailure | undefined {
	if (e.kind === 'connect_fail' && e.err === EADDRNOTAVAIL) return { call: 'connect', errno: 'EADDRNOTAVAIL', target: endpoint(e.daddr, e.dport) };
	if (e.kind === 'bind_fail' && e.err === EADDRINUSE) return { call: 'bind', errno: 'EADDRINUSE', target: endpoint(e.saddr, e.sport) };
	return undefined;
}

export interface VictimEntry extends PortFailure {
	pid: number;
	comm: string;
	netns: number;
	/** connect: the destination; bind: the requested local address and port (0: any). */
	addr: string;
	port: number;
	failures: number;
	firstUs: number;
	lastUs: number;
}

/** Distinct (process, call, target) kept; the rest are counted in `refused`. */
export const MAX_VICTIMS = 1000;

export class VictimTable {
	readonly #entries = new Map<string, VictimEntry>();
	/** Failures not kept because the table was full. */
	refused = 0;
	/** Every port failure seen, kept or not. */
	total = 0;

	/** Counts `e` if it is a failure for want of a port; `pid`/`comm`: whom the model blamed it on. */
	note(e: TwtEvent, pid: number, comm: string): void {
		const failure = portFailure(e);
		if (!failure) return;
		this.total++;
		const key = `${pid} ${comm} ${e.netns} ${failure.call} ${failure.target}`;
		let v = this.#entries.get(key);
		if (!v) {
			if (this.#entries.size >= MAX_VICTIMS) {
				this.refused++;
				return;
			}
			const connect = failure.call === 'connect';
			v = { ...failure, pid, comm, netns: e.netns, addr: connect ? e.daddr : e.saddr, port: connect ? e.dport : e.sport, failures: 0, firstUs: e.tsUs, lastUs: e.tsUs };
			this.#entries.set(key, v);
		}
		v.failures++;
		v.lastUs = Math.max(v.lastUs, e.tsUs);
	}

	/** Entries that failed at or after `sinceUs`, the most failures first. */
	since(sinceUs: number): VictimEntry[] {
		return [...this.#entries.values()].filter((v) => v.lastUs >= sinceUs).sort((a, b) => b.failures - a.failures || a.firstUs - b.firstUs);
	}

	/** Forgets entries whose last failure is older than `beforeUs` (a live model; a report keeps all). */
	forget(beforeUs: number): void {
		for (const [key, v] of this.#entries) if (v.lastUs < beforeUs) this.#entries.delete(key);
	}
}
