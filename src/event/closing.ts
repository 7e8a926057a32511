/**
 * The `closing` map's values (struct twt_closing in bpf/twtrace.h): an active close waiting for its
 * socket's end, with what a lookup of that socket needs (its 4-tuple, family and bound device) and
 * the processes that are ways into its network namespace. Pure; the offsets come from the generated layout.
 */
import { CLOSING_FIELDS as C, CLOSING_SIZE, OWNER_FIELDS as O, SOCK_FIELDS as S, SOCK_SIZE } from './layout.generated.js';
import { HOST_LITTLE_ENDIAN } from './host-order.js';

export { CLOSING_SIZE };

const AF_INET6 = 10;

/** A socket as it was at its active close: enough to look it up again (sock_diag). */
export interface ClosedSocket {
	family: 4 | 6;
	/** Local and remote address in network order, 16 bytes (IPv4: the first 4, the rest zero). */
	saddr: Uint8Array;
	daddr: Uint8Array;
	sport: number;
	dport: number;
	/** SO_BINDTODEVICE's ifindex, 0 for none: the kernel's lookup matches on it. */
	boundDevIf: number;
}

export interface Closing {
	/** enum twt_claim: 0 while nobody has delivered the socket's time_wait event. */
	claim: number;
	/** CLOCK_MONOTONIC ns of ESTABLISHED -> FIN_WAIT1. */
	closedNs: bigint;
	netns: number;
	/** The socket's owner and closer (0: unknown): processes that may still be in its namespace. */
	pid: number;
	closerPid: number;
	socket: ClosedSocket;
}

/** The claim and age of a value, without the rest: what a pass over the whole map reads. */
export function closingClaim(value: Uint8Array, little = HOST_LITTLE_ENDIAN): { claim: number; closedNs: bigint; netns: number } {
	const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
	return {
		claim: v.getUint32(C.claim.offset, little),
		closedNs: v.getBigUint64(C.closed_ns.offset, little),
		netns: v.getUint32(C.netns.offset, little),
	};
}

/** A struct twt_closing; undefined when `value` is shorter than the struct. Copies what it keeps. */
export function decodeClosing(value: Uint8Array, little = HOST_LITTLE_ENDIAN): Closing | undefined {
	if (value.byteLength < CLOSING_SIZE) return undefined;
	const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
	const bytes = (f: { offset: number; size: number }) => value.slice(f.offset, f.offset + f.size);
	return {
		...closingClaim(value, little),
		pid: v.getUint32(C.owner.offset + O.pid.offset, little),
		closerPid: v.getUint32(C.owner.offset + O.closer_pid.offset, little),
		socket: {
			family: v.getUint16(C.family.offset, little) === AF_INET6 ? 6 : 4,
			saddr: bytes(C.saddr),
			daddr: bytes(C.daddr),
			sport: v.getUint16(C.sport.offset, little),
			dport: v.getUint16(C.dport.offset, little),
			boundDevIf: v.getUint32(C.bound_dev_if.offset, little),
		},
	};
}

const AF_INET = 2;
const TCP_FIN_WAIT1 = 4;

/**
 * A close in flight as the struct twt_sock a walk of the table would have found (state FIN_WAIT1,
 * the last transition seen; no timer): an orphan's record for an open-socket walk. Pure.
 */
export function closingSockRecord(cookie: bigint, c: Closing, little = HOST_LITTLE_ENDIAN): Uint8Array {
	const record = new Uint8Array(SOCK_SIZE);
	const v = new DataView(record.buffer);
	v.setBigUint64(S.cookie.offset, cookie, little);
	record.set(c.socket.saddr.subarray(0, S.saddr.size), S.saddr.offset);
	record.set(c.socket.daddr.subarray(0, S.daddr.size), S.daddr.offset);
	v.setUint32(S.netns.offset, c.netns, little);
	v.setUint16(S.sport.offset, c.socket.sport, little);
	v.setUint16(S.dport.offset, c.socket.dport, little);
	v.setUint16(S.family.offset, c.socket.family === 6 ? AF_INET6 : AF_INET, little);
	record[S.state.offset] = TCP_FIN_WAIT1;
	return record;
}
