/**
 * A walk of one namespace as it is kept: the iter/tcp records as the kernel wrote them, the
 * namespace's settings, and the owners of its listening ports (from the listeners map, which a
 * replay no longer has). `top` reconciles from it at once; `record` stores it; a replay rebuilds
 * the same NetnsWalk from it, so live and replayed models see identical input.
 */
import { decodeSockets, type SocketEntry } from '../event/sock.js';
import type { NetnsSettings, NetnsWalk } from './aggregate.js';

export interface ListenerRecord {
	port: number;
	pid: number;
	comm: string;
}

export interface WalkRecord {
	netns: number;
	/** CLOCK_MONOTONIC µs when the walk started. */
	takenAtUs: number;
	settings: NetnsSettings;
	/** Owners of listening ports, known for those twtrace saw listen(). */
	listeners: ListenerRecord[];
	/** struct twt_sock records, in host byte order. */
	sockets: Uint8Array;
	/**
	 * The walk's records were not kept (more than the keeper's bound): `sockets` is empty and is not
	 * the namespace's table. How many bytes of records there were.
	 */
	omittedBytes?: number;
}

/** `sockets`: the records already decoded, when the caller has them (a walk is decoded once). */
export function walkFromRecord(record: WalkRecord, sockets: readonly SocketEntry[] = decodeSockets(record.sockets).sockets): NetnsWalk {
	const byPort = new Map(record.listeners.map((l) => [l.port, { pid: l.pid, comm: l.comm }]));
	return {
		netns: record.netns,
		takenAtUs: record.takenAtUs,
		sockets,
		settings: record.settings,
		listenerOwner: (port) => byPort.get(port),
	};
}
