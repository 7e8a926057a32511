/**
 * Walks stored as changes against the previous walk of the same namespace. Between two walks a
 * minute apart most sockets are the same (a TIME_WAIT socket's record, timer included, does not
 * change in its 60 s), so a capture stores the cookies gone and the records new or changed, not
 * the whole table again: a 50 s recording on a host holding 136k TIME_WAIT sockets was 97 MiB of
 * repeated tables before.
 *
 * A WalkTable is a walk's struct twt_sock records sorted by socket cookie (unique for the socket's
 * life and inherited by its timewait socket: docs/kernel-facts.md §1.4), so that a diff and its
 * application are merges. 8 + SOCK_SIZE bytes a socket, no object per socket. Immutable.
 */
import os from 'node:os';
import { SOCK_FIELDS, SOCK_SIZE } from '../event/layout.generated.js';

/** Records are in host byte order (a capture from a host of the other order is refused before this). */
const little = os.endianness() === 'LE';

const COOKIE = SOCK_FIELDS.cookie.offset;
const STATE = SOCK_FIELDS.state.offset;
const TCP_LISTEN = 10;

export interface WalkDelta {
	/** Cookies no longer in the table, ascending. */
	removed: Float64Array;
	/** Records new or changed, sorted by cookie. */
	upserts: WalkTable;
}

export class WalkTable {
	static readonly EMPTY = new WalkTable(new Float64Array(0), Buffer.alloc(0));

	/** `records`: SOCK_SIZE each, in the order of `cookies` (ascending). */
	private constructor(readonly cookies: Float64Array, readonly records: Buffer) {}

	get size(): number {
		return this.cookies.length;
	}

	/** A walk's records, in any order (a cookie found twice keeps its last record). */
	static fromRecords(sockets: Uint8Array): WalkTable {
		const n = Math.floor(sockets.byteLength / SOCK_SIZE);
		const view = new DataView(sockets.buffer, sockets.byteOffset, sockets.byteLength);
		const keys = new Float64Array(n);
		for (let i = 0; i < n; i++) keys[i] = Number(view.getBigUint64(i * SOCK_SIZE + COOKIE, little));
		const order = new Uint32Array(n);
		for (let i = 0; i < n; i++) order[i] = i;
		order.sort((a, b) => keys[a]! - keys[b]! || a - b);
		const cookies = new Float64Array(n);
		const records = Buffer.allocUnsafe(n * SOCK_SIZE);
		let kept = 0;
		for (let j = 0; j < n; j++) {
			const i = order[j]!;
			if (kept > 0 && cookies[kept - 1] === keys[i]) kept--; // the later record of one cookie wins
			cookies[kept] = keys[i]!;
			records.set(sockets.subarray(i * SOCK_SIZE, (i + 1) * SOCK_SIZE), kept * SOCK_SIZE);
			kept++;
		}
		return new WalkTable(cookies.subarray(0, kept), records.subarray(0, kept * SOCK_SIZE));
	}

	#record(i: number): Buffer {
		return this.records.subarray(i * SOCK_SIZE, (i + 1) * SOCK_SIZE);
	}

	/** What changed from this table to `next`. */
	diff(next: WalkTable): WalkDelta {
		const removed: number[] = [];
		const upsertAt: number[] = [];
		let i = 0;
		let j = 0;
		while (i < this.size || j < next.size) {
			const a = i < this.size ? this.cookies[i]! : Infinity;
			const b = j < next.size ? next.cookies[j]! : Infinity;
			if (a < b) removed.push(a), i++;
			else if (b < a) upsertAt.push(j), j++;
			else {
				if (!this.#record(i).equals(next.#record(j))) upsertAt.push(j);
				i++, j++;
			}
		}
		const records = Buffer.allocUnsafe(upsertAt.length * SOCK_SIZE);
		upsertAt.forEach((at, k) => next.records.copy(records, k * SOCK_SIZE, at * SOCK_SIZE, (at + 1) * SOCK_SIZE));
		return { removed: Float64Array.from(removed), upserts: new WalkTable(Float64Array.from(upsertAt, (at) => next.cookies[at]!), records) };
	}

	/** This table with `delta` applied. */
	apply(delta: WalkDelta): WalkTable {
		const { removed, upserts } = delta;
		const cookies = new Float64Array(this.size + upserts.size);
		const records = Buffer.allocUnsafe(cookies.length * SOCK_SIZE);
		let n = 0;
		let i = 0;
		let j = 0;
		let r = 0;
		const put = (table: WalkTable, at: number) => {
			cookies[n] = table.cookies[at]!;
			table.records.copy(records, n * SOCK_SIZE, at * SOCK_SIZE, (at + 1) * SOCK_SIZE);
			n++;
		};
		while (i < this.size || j < upserts.size) {
			const a = i < this.size ? this.cookies[i]! : Infinity;
			const b = j < upserts.size ? upserts.cookies[j]! : Infinity;
			if (b <= a) {
				put(upserts, j++);
				if (a === b) i++;
				continue;
			}
			while (r < removed.length && removed[r]! < a) r++;
			if (r < removed.length && removed[r] === a) i++;
			else put(this, i++);
		}
		return new WalkTable(cookies.subarray(0, n), records.subarray(0, n * SOCK_SIZE));
	}

	/**
	 * The records as a walk delivers them to the model: listening sockets first, as iter/tcp walks
	 * the listening hash before the established one (bpf_iter_tcp_batch), so that a timewait socket
	 * on a listener's port is known to be the server's end.
	 */
	walkOrder(): Buffer {
		const out = Buffer.allocUnsafe(this.records.length);
		let n = 0;
		for (const listening of [true, false]) {
			for (let i = 0; i < this.size; i++) {
				if ((this.records[i * SOCK_SIZE + STATE] === TCP_LISTEN) !== listening) continue;
				this.records.copy(out, n * SOCK_SIZE, i * SOCK_SIZE, (i + 1) * SOCK_SIZE);
				n++;
			}
		}
		return out;
	}
}

/** Removed cookies as they are stored: u64 little-endian each. */
export function encodeCookies(cookies: Float64Array): Buffer {
	const out = Buffer.allocUnsafe(cookies.length * 8);
	for (let i = 0; i < cookies.length; i++) out.writeBigUInt64LE(BigInt(cookies[i]!), i * 8);
	return out;
}

export function decodeCookies(bytes: Uint8Array): Float64Array {
	const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
	const out = new Float64Array(bytes.byteLength / 8);
	for (let i = 0; i < out.length; i++) out[i] = Number(view.getBigUint64(i * 8, true));
	return out;
}
