/**
 * A kept walk (event/walk-record.ts) as the model reconciles it: its sockets decoded, its
 * listeners' owners by port. Live and replayed walks go through here alike.
 */
import { decodeSockets, type SocketEntry } from '../event/sock.js';
import type { WalkRecord } from '../event/walk-record.js';
import type { NetnsWalk } from './reconcile.js';


/** `sockets`: the records already decoded, when the caller has them (a walk is decoded once). */
export function walkFromRecord(record: WalkRecord, sockets: readonly SocketEntry[] = decodeSockets(record.sockets).sockets): NetnsWalk {
	const byPort = new Map(record.listeners.map((l) => [l.port, { pid: l.pid, comm: l.comm }]));
	return {
		netns: record.netns,
		takenAtUs: record.takenAtUs,
		sockets,
		settings: record.settings,
		listenerOwner: (port) => byPort.get(port),
		...(record.timeWaitOmitted !== undefined ? { timeWaitOmitted: record.timeWaitOmitted } : {}),
		...(record.timeWaitCounted !== undefined ? { timeWaitCounted: record.timeWaitCounted } : {}),
		...(record.openOnly ? { openOnly: true } : {}),
	};
}
