/**
 * Which process an event is blamed on, as users know it (kernel-facts §1.2, §7):
 * - an outgoing connection: the process that called connect(), even when a forked child closed it;
 * - an accepted connection: the process that held and closed the socket (a pre-forked server's
 *   worker), falling back to the process that called listen() while it is still open;
 * - a socket that predates twtrace: whoever closed it, if seen.
 */
import type { TwtEvent } from '../event/decode.js';

export interface Blame {
	pid: number;
	tid: number;
	uid: number;
	comm: string;
	/** How the blamed process was identified. */
	via: 'connect' | 'listen' | 'close' | 'syscall' | 'unknown';
}

export function blame(e: TwtEvent): Blame {
	const closer = e.closerPid !== 0;
	const owner = e.ownerSource !== 'none';
	if (owner && (e.side === 'client' || e.ownerSource === 'syscall' || !closer)) {
		return { pid: e.pid, tid: e.tid, uid: e.uid, comm: e.comm, via: e.ownerSource as Exclude<typeof e.ownerSource, 'none'> };
	}
	if (closer) return { pid: e.closerPid, tid: e.closerTid, uid: e.closerUid, comm: e.closerComm, via: 'close' };
	return { pid: 0, tid: 0, uid: 0, comm: '', via: 'unknown' };
}
