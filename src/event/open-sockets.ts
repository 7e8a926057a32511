/**
 * Bytes written by the iter/task_file program (struct twt_open_socket, one per TCP socket a process holds
 * open) → OpenSocket[]. Pure and total: a trailing partial record is ignored.
 */
import { cString, HOST_LITTLE_ENDIAN } from './host-order.js';
import { formatAddress } from './decode.js';
import { AF_INET6 } from './kinds.js';
import { OPEN_SOCKET_FIELDS as F, OPEN_SOCKET_SIZE } from './layout.generated.js';

export interface OpenSocket {
	pid: number;
	comm: string;
	netns: number;
	family: 4 | 6;
	saddr: string;
	daddr: string;
	sport: number;
	dport: number;
	/** TCP_* state number. */
	state: number;
}

const little = HOST_LITTLE_ENDIAN;

export function decodeOpenSockets(bytes: Uint8Array): OpenSocket[] {
	const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
	const out: OpenSocket[] = [];
	for (let at = 0; at + OPEN_SOCKET_SIZE <= bytes.byteLength; at += OPEN_SOCKET_SIZE) {
		const family = v.getUint16(at + F.family.offset, little) === AF_INET6 ? 6 : 4;
		out.push({
			pid: v.getUint32(at + F.pid.offset, little),
			comm: cString(bytes.subarray(at + F.comm.offset, at + F.comm.offset + F.comm.size)),
			netns: v.getUint32(at + F.netns.offset, little),
			family,
			saddr: formatAddress(bytes, at + F.saddr.offset, family),
			daddr: formatAddress(bytes, at + F.daddr.offset, family),
			sport: v.getUint16(at + F.sport.offset, little),
			dport: v.getUint16(at + F.dport.offset, little),
			state: v.getUint8(at + F.state.offset),
		});
	}
	return out;
}
