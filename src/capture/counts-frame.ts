/**
 * The payload of a counts frame (format.ts): the kernel's counters' differences over a second, per
 * key that moved. Three encodings, named by the head's third word:
 *
 *   head      = atUs(f64) keys(u32) encoding(u32)
 *   DENSE     (0, versions 5 and 6) = key(struct twt_count_key)* value(f64 × COUNT_COLUMNS)*
 *   SPARSE    (1, version 7)        = key(struct twt_count_key)* (mask(varint) value(varint)*)*
 *   KEYED     (2, version 8)        = (id(varint) mask(varint) value(varint)*)*
 *
 * In SPARSE and KEYED, a key's mask has bit c set for each column c that moved, and its values
 * follow in column order, as unsigned LEB128 varints. A busy key moves about 8 of its 22 columns a
 * second (connections, time_wait, lifetime_sum_us, lifetime_count, a few lifetime buckets, and
 * time_wait_odd in the seconds whose entries go into an odd timer-wheel bucket), each a few bytes long. A capture
 * in an earlier counters' layout has fewer columns, the first ones of today's (format.ts
 * READABLE_COUNT_LAYOUTS). Differences of counters that only go up are whole numbers from 0; a row that is
 * not is written DENSE, so that the reader refuses it as it was given (a recorder never invents a
 * count).
 *
 * KEYED names each key by an id that a KEYS frame before it defined (id(u32) key(struct
 * twt_count_key))*: the flight recorder keeps a frame a second for 15 minutes, and the same keys
 * move second after second, so their 56 bytes were most of a SPARSE frame (README, the soak). A
 * served window starts with one KEYS frame for the ids its frames name.
 */
import { COUNT_KEY_SIZE, COUNT_SIZE } from '../event/layout.generated.js';
import { CaptureError } from './format-error.js';

/** A counts frame's fixed part: atUs (f64), the number of keys (u32), its encoding (u32). */
export const COUNTS_HEAD_BYTES = 16;
/** A dense counts frame's bytes per key: the key as the kernel keeps it, the differences as float64s. */
export const COUNTS_ENTRY_BYTES = COUNT_KEY_SIZE + COUNT_SIZE;
export const CountsEncoding = { dense: 0, sparse: 1, keyed: 2 } as const;
/** A KEYS frame's bytes per key: its id (u32), then the key as the kernel keeps it. */
export const KEY_ENTRY_BYTES = 4 + COUNT_KEY_SIZE;
const COLUMNS = COUNT_SIZE / 8;
/** The longest varint of a safe integer (53 bits, 7 a byte). */
const MAX_VARINT_BYTES = 8;

/**
 * A counts frame's payload: `keys` (COUNT_KEY_SIZE bytes each, as read from the kernel) and their
 * differences (`values`, COUNT_SIZE / 8 numbers each, in struct twt_count order), read at `atUs`.
 * Sparse when every value is a count, dense otherwise; with `ids` (one per key, defined by a KEYS
 * frame the reader sees first), a sparse frame names its keys by id (KEYED).
 */
export function encodeCountsPayload(atUs: number, keys: Uint8Array, values: Float64Array, ids?: ArrayLike<number>): Buffer {
	const n = keys.byteLength / COUNT_KEY_SIZE;
	if (!Number.isInteger(n) || values.length !== n * COLUMNS) throw new RangeError(`a counts frame of ${keys.byteLength} key bytes and ${values.length} values`);
	if (ids && (ids.length !== n || !Array.prototype.every.call(ids, (id: number) => id >>> 0 === id))) throw new RangeError(`a counts frame of ${n} keys named by ${ids.length} ids, each a u32`);
	const sparse = allCounts(values);
	const keyed = sparse && ids !== undefined;
	const keyBytes = keyed ? n * 5 : keys.byteLength;
	const bound = COUNTS_HEAD_BYTES + keyBytes + (sparse ? n * 3 + countValueBytes(values) : values.length * 8);
	const out = Buffer.allocUnsafe(bound);
	out.writeDoubleLE(atUs, 0);
	out.writeUInt32LE(n, 8);
	out.writeUInt32LE(keyed ? CountsEncoding.keyed : sparse ? CountsEncoding.sparse : CountsEncoding.dense, 12);
	let at = COUNTS_HEAD_BYTES;
	if (!keyed) {
		out.set(keys, at);
		at += keys.byteLength;
	}
	if (!sparse) {
		for (let i = 0; i < values.length; i++) at = out.writeDoubleLE(values[i]!, at);
		return out;
	}
	for (let row = 0, key = 0; row < values.length; row += COLUMNS, key++) {
		if (keyed) at = writeVarint(out, at, ids[key]!);
		let mask = 0;
		for (let c = 0; c < COLUMNS; c++) if (values[row + c] !== 0) mask |= 1 << c;
		at = writeVarint(out, at, mask);
		for (let c = 0; c < COLUMNS; c++) if (values[row + c] !== 0) at = writeVarint(out, at, values[row + c]!);
	}
	return out.subarray(0, at);
}

/** A KEYS frame's payload: each id and the key it names (COUNT_KEY_SIZE bytes). */
export function encodeKeysPayload(entries: readonly (readonly [id: number, key: Uint8Array])[]): Buffer {
	const out = Buffer.allocUnsafe(entries.length * KEY_ENTRY_BYTES);
	entries.forEach(([id, key], i) => {
		if (id >>> 0 !== id || key.byteLength !== COUNT_KEY_SIZE) throw new RangeError(`a key id ${id} of ${key.byteLength} bytes`);
		out.writeUInt32LE(id, i * KEY_ENTRY_BYTES);
		out.set(key, i * KEY_ENTRY_BYTES + 4);
	});
	return out;
}

/**
 * A KEYS frame read into `table` (id → key). An id defined again must name the same key: a capture
 * whose ids change meaning would credit one key's counts to another.
 */
export function parseKeysPayload(payload: Buffer, table: Map<number, Buffer>): void {
	if (payload.length % KEY_ENTRY_BYTES !== 0) throw new CaptureError(`a keys frame of ${payload.length} bytes is not a whole number of ${KEY_ENTRY_BYTES}-byte keys`);
	for (let at = 0; at < payload.length; at += KEY_ENTRY_BYTES) {
		const id = payload.readUInt32LE(at);
		const key = payload.subarray(at + 4, at + KEY_ENTRY_BYTES);
		const known = table.get(id);
		if (known && !known.equals(key)) throw new CaptureError(`a keys frame defines key id ${id} again, as another key`);
		table.set(id, key);
	}
}

/**
 * A counts frame's payload, read back and checked: every value a count, every byte accounted for.
 * A KEYED frame's ids are looked up in `keyTable` (the KEYS frames read before it). `written`: the
 * columns its rows hold, fewer than today's in an earlier counters' layout (format.ts
 * READABLE_COUNT_LAYOUTS): they are the first ones, the rest read as 0.
 */
export function parseCountsPayload(payload: Buffer, keyTable?: ReadonlyMap<number, Buffer>, written = COLUMNS): { atUs: number; keys: Buffer; values: Float64Array; count: number } {
	if (payload.length < COUNTS_HEAD_BYTES) throw new CaptureError('a counts frame too short for its head');
	const atUs = payload.readDoubleLE(0);
	const n = payload.readUInt32LE(8);
	const encoding = payload.readUInt32LE(12);
	if (!isCount(atUs)) throw new CaptureError('a counts frame\'s time is malformed');
	if (encoding !== CountsEncoding.dense && encoding !== CountsEncoding.sparse && encoding !== CountsEncoding.keyed) throw new CaptureError(`a counts frame of unknown encoding ${encoding}`);
	const keyed = encoding === CountsEncoding.keyed;
	const keysEnd = keyed ? COUNTS_HEAD_BYTES : COUNTS_HEAD_BYTES + n * COUNT_KEY_SIZE;
	// Each key takes its bytes, or (KEYED) an id and a mask of a byte at least: checked before anything is allocated for n.
	const least = encoding === CountsEncoding.dense ? keysEnd + n * written * 8 : keysEnd + n * (keyed ? 2 : 1);
	if (encoding === CountsEncoding.dense ? payload.length !== least : payload.length < least) {
		throw new CaptureError(`a counts frame of ${payload.length} bytes does not hold its ${n} keys`);
	}
	const keys = keyed ? Buffer.allocUnsafe(n * COUNT_KEY_SIZE) : payload.subarray(COUNTS_HEAD_BYTES, keysEnd);
	const values = new Float64Array(n * COLUMNS);
	if (encoding === CountsEncoding.dense) {
		for (let i = 0; i < n * written; i++) {
			const v = payload.readDoubleLE(keysEnd + i * 8);
			// Differences of counters that only go up: a negative or fractional one was not written by twtrace.
			if (!isCount(v)) throw new CaptureError(`a counts frame holds ${v}, not a count`);
			values[Math.floor(i / written) * COLUMNS + (i % written)] = v;
		}
		return { atUs, keys, values, count: n };
	}
	const cursor = { at: keysEnd };
	for (let row = 0, i = 0; row < values.length; row += COLUMNS, i++) {
		if (keyed) {
			const id = readVarint(payload, cursor);
			const key = keyTable?.get(id);
			if (!key) throw new CaptureError(`a counts frame names key id ${id}, which no keys frame before it defines`);
			key.copy(keys, i * COUNT_KEY_SIZE);
		}
		const mask = readVarint(payload, cursor);
		if (mask >= 2 ** written) throw new CaptureError(`a counts frame names column ${Math.floor(Math.log2(mask))} of ${written}`);
		for (let c = 0; c < written; c++) if (mask & (1 << c)) values[row + c] = readVarint(payload, cursor);
	}
	if (cursor.at !== payload.length) throw new CaptureError(`a counts frame of ${payload.length} bytes holds ${payload.length - cursor.at} bytes after its ${n} keys' counts`);
	return { atUs, keys, values, count: n };
}

/** Whether every value is a count: a loop, as `values.every(isCount)` boxed each double it passed (bench:heap). */
function allCounts(values: Float64Array): boolean {
	for (let i = 0; i < values.length; i++) {
		const v = values[i]!;
		if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Math.floor(v) === v)) return false;
	}
	return true;
}

/** Bytes the varints of `values` take at most (0s are left out by the mask). */
function countValueBytes(values: Float64Array): number {
	let bytes = 0;
	for (let i = 0; i < values.length; i++) if (values[i] !== 0) bytes += values[i]! < 128 ? 1 : values[i]! < 16_384 ? 2 : MAX_VARINT_BYTES;
	return bytes;
}

/** Unsigned LEB128 of a safe integer, by arithmetic (bitwise operators stop at 32 bits). */
function writeVarint(out: Buffer, at: number, value: number): number {
	let v = value;
	while (v >= 128) {
		out[at++] = (v % 128) | 128;
		v = Math.floor(v / 128);
	}
	out[at++] = v;
	return at;
}

function readVarint(payload: Buffer, cursor: { at: number }): number {
	let value = 0;
	let scale = 1;
	for (let i = 0; i < MAX_VARINT_BYTES; i++) {
		if (cursor.at >= payload.length) throw new CaptureError('a counts frame ends inside a count');
		const byte = payload[cursor.at++]!;
		value += (byte & 127) * scale;
		if (byte < 128) {
			if (!Number.isSafeInteger(value)) throw new CaptureError(`a counts frame holds a count over 2^53`);
			return value;
		}
		scale *= 128;
	}
	throw new CaptureError(`a counts frame holds a count longer than ${MAX_VARINT_BYTES} bytes`);
}

/** A count as a capture holds it: a whole number from 0, exact as a double (the reader checks its header's with it too). */
export function isCount(v: unknown): v is number {
	return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
