/**
 * One socket looked up by its 4-tuple and cookie through sock_diag (linux/inet_diag.h): the request
 * (SOCK_DIAG_BY_FAMILY, not a dump: the kernel answers from its hash table, inet_diag_find_one_icsk,
 * timewait sockets included) and its reply. Pure: bytes in, bytes out; native/netlink.ts sends them.
 *
 * The kernel fills a timewait socket's reply with its substate as the state and timer 3
 * (inet_twsk_diag_fill): that is how a socket in TIME_WAIT is told from a full one in FIN_WAIT2.
 */
import type { ClosedSocket } from '../event/closing.js';
import { HOST_LITTLE_ENDIAN } from '../event/host-order.js';

const NLMSG_HDR = 16;
const NLMSG_ERROR = 2;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
/** inet_diag_req_v2: family, protocol, ext, pad, states (u32), then the socket id (48 bytes). */
const REQ_BYTES = 8 + 48;
/** inet_diag_msg: family, state, timer, retrans, then the id, then expires (ms), rqueue, wqueue, uid, inode. */
const MSG_STATE = NLMSG_HDR + 1;
const MSG_TIMER = NLMSG_HDR + 2;
const MSG_EXPIRES = NLMSG_HDR + 4 + 48;
/** idiag_timer of a timewait socket. */
const TIMER_TIME_WAIT = 3;
const TCPF_ALL = 0xfff;

/** A socket to look up: as it was at its close (struct twt_closing), and its cookie. */
export interface SocketKey extends ClosedSocket {
	cookie: bigint;
}

export type Lookup =
	/** No socket with that 4-tuple and cookie (it ended, or its tuple now belongs to another). */
	| { found: false }
	| { found: true; isTimeWait: boolean; /** TCP_*: a timewait socket's substate. */ state: number; expiresMs: number };

/** The request for `key`, with netlink sequence number `seq`. */
export function encodeLookup(key: SocketKey, seq: number, little = HOST_LITTLE_ENDIAN): Buffer {
	const b = Buffer.alloc(NLMSG_HDR + REQ_BYTES);
	const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
	v.setUint32(0, b.length, little);
	v.setUint16(4, SOCK_DIAG_BY_FAMILY, little);
	v.setUint16(6, NLM_F_REQUEST, little);
	v.setUint32(8, seq, little);
	b[16] = key.family === 6 ? AF_INET6 : AF_INET;
	b[17] = IPPROTO_TCP;
	v.setUint32(20, TCPF_ALL, little);
	// struct inet_diag_sockid: ports and addresses in network order, the cookie as two host u32.
	v.setUint16(24, key.sport, false);
	v.setUint16(26, key.dport, false);
	b.set(key.saddr.subarray(0, 16), 28);
	b.set(key.daddr.subarray(0, 16), 44);
	v.setUint32(60, key.boundDevIf, little); // idiag_if: a socket bound to a device is found only by naming it
	v.setUint32(64, Number(key.cookie & 0xffff_ffffn), little);
	v.setUint32(68, Number(key.cookie >> 32n), little);
	return b;
}

/** The reply to one lookup; `undefined` for a reply that is neither (not ours, or cut short). */
export function decodeLookup(reply: Uint8Array, length: number, little = HOST_LITTLE_ENDIAN): Lookup | { error: number } | undefined {
	if (length < NLMSG_HDR + 4) return undefined;
	const v = new DataView(reply.buffer, reply.byteOffset, length);
	const type = v.getUint16(4, little);
	if (type === NLMSG_ERROR) {
		const errno = -v.getInt32(NLMSG_HDR, little);
		// ENOENT: nothing has that 4-tuple; ESTALE: something has, but not this cookie.
		return errno === 2 || errno === 116 ? { found: false } : { error: errno };
	}
	if (type !== SOCK_DIAG_BY_FAMILY || length < MSG_EXPIRES + 4) return undefined;
	return { found: true, isTimeWait: v.getUint8(MSG_TIMER) === TIMER_TIME_WAIT, state: v.getUint8(MSG_STATE), expiresMs: v.getUint32(MSG_EXPIRES, little) };
}
