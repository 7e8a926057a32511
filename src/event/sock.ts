/**
 * Bytes written by the iter/tcp program (struct twt_sock, one per socket) → SocketEntry[]. Pure
 * and total: a trailing partial record is ignored and counted by the caller via `trailingBytes`.
 */
import { HOST_LITTLE_ENDIAN } from './host-order.js';
import { AF_INET6 } from './kinds.js';
import { formatAddress, readU64 } from './decode.js';
import { SOCK_FIELDS as F, SOCK_SIZE } from './layout.generated.js';

export interface SocketEntry {
	readonly cookie: number;
	readonly netns: number;
	readonly family: 4 | 6;
	readonly saddr: string;
	readonly daddr: string;
	readonly sport: number;
	readonly dport: number;
	/** TCP_* state number (TIME_WAIT: 6 for every timewait socket). */
	state: number;
	/** Timewait socket: 6 (TIME_WAIT) or 5 (FIN_WAIT2); 0 otherwise. */
	substate: number;
	/** Timewait socket: CLOCK_MONOTONIC µs when its timer fires; 0 when not a timewait socket or unknown. */
	expiresUs: number;
	/** Timewait socket: how much later than its timer's own expiry the wheel runs it (kernel-facts §9); 0 or absent: not known. */
	slackUs?: number;
	/** An address as a key, cheaper than its text: the IPv4 word, or the IPv6 text. Equal keys, equal addresses. */
	addressKey(which: 'saddr' | 'daddr'): number | string;
}

export const TCP_ESTABLISHED = 1;
export const TCP_SYN_SENT = 2;
export const TCP_SYN_RECV = 3;
export const TCP_TIME_WAIT = 6;
export const TCP_LISTEN = 10;
export const TCP_NEW_SYN_RECV = 12;
/** The state of a walk's trailer record, which no socket has (TWT_WALK_TRAILER_STATE in bpf/twtrace.h). */
export const WALK_TRAILER_STATE = 0;

const little = HOST_LITTLE_ENDIAN;

export function decodeSockets(bytes: Uint8Array): { sockets: SocketEntry[]; trailingBytes: number } {
	const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
	const count = Math.floor(bytes.byteLength / SOCK_SIZE);
	const sockets: SocketEntry[] = new Array(count);
	for (let i = 0; i < count; i++) sockets[i] = new SocketRecord(bytes, v, i * SOCK_SIZE);
	return { sockets, trailingBytes: bytes.byteLength - count * SOCK_SIZE };
}

/**
 * Calls `fn` for each whole record of `bytes` with one reused SocketEntry that reads the record it
 * points at: no object per socket (a walk of millions must not cost millions of objects). `fn` must
 * not keep it. Returns the bytes of a trailing partial record.
 */
export function forEachSocket(bytes: Uint8Array, fn: (s: SocketEntry) => void): number {
	const cursor = new SocketCursor(bytes);
	const count = Math.floor(bytes.byteLength / SOCK_SIZE);
	for (let i = 0; i < count; i++) {
		cursor.at = i * SOCK_SIZE;
		fn(cursor);
	}
	return bytes.byteLength - count * SOCK_SIZE;
}

class SocketCursor implements SocketEntry {
	at = 0;
	readonly #bytes: Uint8Array;
	readonly #v: DataView;

	constructor(bytes: Uint8Array) {
		this.#bytes = bytes;
		this.#v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
	}

	get cookie(): number { return readU64(this.#v, this.at + F.cookie.offset, little); }
	get netns(): number { return this.#v.getUint32(this.at + F.netns.offset, little); }
	get family(): 4 | 6 { return this.#v.getUint16(this.at + F.family.offset, little) === AF_INET6 ? 6 : 4; }
	get sport(): number { return this.#v.getUint16(this.at + F.sport.offset, little); }
	get dport(): number { return this.#v.getUint16(this.at + F.dport.offset, little); }
	get state(): number { return this.#v.getUint8(this.at + F.state.offset); }
	get substate(): number { return this.#v.getUint8(this.at + F.substate.offset); }
	get expiresUs(): number { return readU64(this.#v, this.at + F.expires_us.offset, little); }
	get slackUs(): number { return this.#v.getUint32(this.at + F.slack_us.offset, little); }
	get saddr(): string { return formatAddress(this.#bytes, this.at + F.saddr.offset, this.family); }
	get daddr(): string { return formatAddress(this.#bytes, this.at + F.daddr.offset, this.family); }
	addressKey(which: 'saddr' | 'daddr'): number | string {
		return this.family === 4 ? this.#v.getUint32(this.at + F[which].offset, little) : this[which];
	}
}

/**
 * Numbers are read at once; addresses only when asked for. A walk at 250k TIME_WAIT sockets needs
 * the addresses of the few it has not seen enter TIME_WAIT, and formatting them all cost most of it.
 */
class SocketRecord implements SocketEntry {
	readonly cookie: number;
	readonly netns: number;
	readonly family: 4 | 6;
	readonly sport: number;
	readonly dport: number;
	readonly state: number;
	readonly substate: number;
	readonly expiresUs: number;
	readonly slackUs: number;
	readonly #bytes: Uint8Array;
	readonly #at: number;

	constructor(bytes: Uint8Array, v: DataView, at: number) {
		this.#bytes = bytes;
		this.#at = at;
		this.cookie = readU64(v, at + F.cookie.offset, little);
		this.netns = v.getUint32(at + F.netns.offset, little);
		this.family = v.getUint16(at + F.family.offset, little) === AF_INET6 ? 6 : 4;
		this.sport = v.getUint16(at + F.sport.offset, little);
		this.dport = v.getUint16(at + F.dport.offset, little);
		this.state = v.getUint8(at + F.state.offset);
		this.substate = v.getUint8(at + F.substate.offset);
		this.expiresUs = readU64(v, at + F.expires_us.offset, little);
		this.slackUs = v.getUint32(at + F.slack_us.offset, little);
	}

	get saddr(): string {
		return formatAddress(this.#bytes, this.#at + F.saddr.offset, this.family);
	}

	get daddr(): string {
		return formatAddress(this.#bytes, this.#at + F.daddr.offset, this.family);
	}

	addressKey(which: 'saddr' | 'daddr'): number | string {
		return this.family === 4 ? new DataView(this.#bytes.buffer, this.#bytes.byteOffset).getUint32(this.#at + F[which].offset, little) : this[which];
	}
}

