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
/** A record in 32-bit words: records are copied and compared a word at a time, not by a native call each. */
const WORDS = SOCK_SIZE / 4;
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
		const src = words(sockets.subarray(0, n * SOCK_SIZE));
		const keys = new Float64Array(n);
		// Two 32-bit reads, not a BigInt per socket: a walk holds up to millions.
		const [lo, hi] = little ? [0, 1] : [1, 0];
		for (let i = 0; i < n; i++) {
			const at = i * WORDS + COOKIE / 4;
			keys[i] = src[at + lo]! + src[at + hi]! * 2 ** 32;
		}
		const order = sortedOrder(keys);
		const cookies = new Float64Array(n);
		const records = Buffer.alloc(n * SOCK_SIZE);
		const dst = words(records);
		let kept = 0;
		for (let j = 0; j < n; j++) {
			const i = order[j]!;
			if (kept > 0 && cookies[kept - 1] === keys[i]) kept--; // the later record of one cookie wins
			cookies[kept] = keys[i]!;
			copyRecord(src, i, dst, kept);
			kept++;
		}
		return new WalkTable(cookies.subarray(0, kept), records.subarray(0, kept * SOCK_SIZE));
	}

	/** The records as 32-bit words (made once). */
	get #words(): Uint32Array {
		return (this.#wordsCache ??= words(this.records));
	}

	#wordsCache: Uint32Array | undefined;

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
				if (!sameRecord(this.#words, i, next.#words, j)) upsertAt.push(j);
				i++, j++;
			}
		}
		const records = Buffer.alloc(upsertAt.length * SOCK_SIZE);
		const dst = words(records);
		const src = next.#words;
		upsertAt.forEach((at, k) => copyRecord(src, at, dst, k));
		return { removed: Float64Array.from(removed), upserts: new WalkTable(Float64Array.from(upsertAt, (at) => next.cookies[at]!), records) };
	}

	/** This table with `delta` applied. */
	apply(delta: WalkDelta): WalkTable {
		const { removed, upserts } = delta;
		const cookies = new Float64Array(this.size + upserts.size);
		const records = Buffer.alloc(cookies.length * SOCK_SIZE);
		const dst = words(records);
		let n = 0;
		let i = 0;
		let j = 0;
		let r = 0;
		const put = (table: WalkTable, at: number) => {
			cookies[n] = table.cookies[at]!;
			copyRecord(table.#words, at, dst, n);
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

/** Index bits packed beside a cookie for the native sort: 2^21 sockets a walk. */
const INDEX_BITS = 21;

/**
 * The indexes of `keys` in ascending order (ties by index). The native numeric sort of a
 * Float64Array is an order of magnitude faster than a comparator: when every cookie and index fit
 * in a double's 53 bits together (cookies below 2^32, a per-boot counter), they are packed and
 * sorted natively; otherwise by comparator.
 */
function sortedOrder(keys: Float64Array): Uint32Array {
	const n = keys.length;
	const order = new Uint32Array(n);
	let max = 0;
	for (let i = 0; i < n; i++) if (keys[i]! > max) max = keys[i]!;
	if (n < 2 ** INDEX_BITS && max < 2 ** (53 - INDEX_BITS)) {
		const packed = new Float64Array(n);
		for (let i = 0; i < n; i++) packed[i] = keys[i]! * 2 ** INDEX_BITS + i;
		packed.sort();
		for (let i = 0; i < n; i++) order[i] = packed[i]! - Math.floor(packed[i]! / 2 ** INDEX_BITS) * 2 ** INDEX_BITS;
		return order;
	}
	for (let i = 0; i < n; i++) order[i] = i;
	return order.sort((a, b) => keys[a]! - keys[b]! || a - b);
}

/** `bytes` as 32-bit words, copying it first when it does not start on a 4-byte boundary. */
function words(bytes: Uint8Array): Uint32Array {
	const aligned = bytes.byteOffset % 4 === 0 ? bytes : Uint8Array.from(bytes);
	return new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

function copyRecord(src: Uint32Array, from: number, dst: Uint32Array, to: number): void {
	const a = from * WORDS;
	const b = to * WORDS;
	for (let k = 0; k < WORDS; k++) dst[b + k] = src[a + k]!;
}

function sameRecord(a: Uint32Array, i: number, b: Uint32Array, j: number): boolean {
	const x = i * WORDS;
	const y = j * WORDS;
	for (let k = 0; k < WORDS; k++) if (a[x + k] !== b[y + k]) return false;
	return true;
}
