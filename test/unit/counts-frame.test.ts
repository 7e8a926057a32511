/**
 * Counts frames as the flight recorder keeps them and a capture holds them (src/capture/counts-frame.ts):
 * only the columns that moved, as varints, read back to the same numbers; the dense frames of
 * versions 5 and 6 still read; a frame that does not add up is corrupt, never a plausible count.
 */
import test from 'ava';
import { CaptureError } from '../../src/capture/format.js';
import { COUNTS_ENTRY_BYTES, COUNTS_HEAD_BYTES, CountsEncoding, encodeCountsPayload, encodeKeysPayload, KEY_ENTRY_BYTES, parseCountsPayload, parseKeysPayload } from '../../src/capture/counts-frame.js';
import { COUNT_COLUMN, COUNT_COLUMNS } from '../../src/event/counts.js';
import { COUNT_KEY_SIZE } from '../../src/event/layout.generated.js';
import { FrameSlab } from '../../src/pipeline/frame-slab.js';

const AT_US = 12_345_678_901;

/** Unsigned LEB128, as the frames write their masks and counts. */
function varint(value: number): Buffer {
	const bytes: number[] = [];
	for (let v = value; ; v = Math.floor(v / 128)) {
		if (v < 128) return Buffer.from([...bytes, v]);
		bytes.push((v % 128) | 128);
	}
}

/** `n` keys (distinct bytes) and a busy second's differences for each: 8 of the columns moved. */
function busy(n: number): { keys: Buffer; values: Float64Array } {
	const keys = Buffer.alloc(n * COUNT_KEY_SIZE);
	for (let i = 0; i < n; i++) keys.fill(i + 1, i * COUNT_KEY_SIZE, (i + 1) * COUNT_KEY_SIZE);
	const values = new Float64Array(n * COUNT_COLUMNS);
	for (let i = 0; i < n; i++) {
		const row = values.subarray(i * COUNT_COLUMNS);
		row[COUNT_COLUMN.connections] = 234 + i;
		row[COUNT_COLUMN.timeWait] = 230 + i;
		row[COUNT_COLUMN.resets] = i % 3;
		row[COUNT_COLUMN.lifetimeSumUs] = 117_000 * (i + 1);
		row[COUNT_COLUMN.lifetimeCount] = 230 + i;
		row[COUNT_COLUMN.lifetime] = 100;
		row[COUNT_COLUMN.lifetime + 1] = 120 + i;
		row[COUNT_COLUMNS - 1] = 10;
	}
	return { keys, values };
}

test('a sparse frame reads back to the same keys and differences, in about a third of the dense bytes', (t) => {
	const { keys, values } = busy(128);
	const payload = encodeCountsPayload(AT_US, keys, values);
	t.is(payload.readUInt32LE(12), CountsEncoding.sparse);
	const back = parseCountsPayload(payload);
	t.is(back.atUs, AT_US);
	t.is(back.count, 128);
	t.deepEqual(back.keys, keys);
	t.deepEqual(back.values, values);
	const dense = COUNTS_HEAD_BYTES + 128 * COUNTS_ENTRY_BYTES;
	t.true(payload.length < dense / 2, `${payload.length} bytes against ${dense} dense`);
});

test('counts up to 2^53 − 1 and an empty frame read back exactly', (t) => {
	const { keys, values } = busy(2);
	values[0] = Number.MAX_SAFE_INTEGER;
	values[1] = 2 ** 32;
	values[2] = 127;
	values[3] = 128;
	t.deepEqual(parseCountsPayload(encodeCountsPayload(AT_US, keys, values)).values, values);
	const empty = parseCountsPayload(encodeCountsPayload(AT_US, Buffer.alloc(0), new Float64Array(0)));
	t.is(empty.count, 0);
	t.throws(() => encodeCountsPayload(AT_US, keys, values.subarray(1)), { instanceOf: RangeError });
});

test('a row that is not counts is written dense, as given, and the reader refuses it', (t) => {
	const { keys, values } = busy(3);
	values[COUNT_COLUMNS + 4] = -1;
	const payload = encodeCountsPayload(AT_US, keys, values);
	t.is(payload.readUInt32LE(12), CountsEncoding.dense);
	t.is(payload.length, COUNTS_HEAD_BYTES + 3 * COUNTS_ENTRY_BYTES);
	t.throws(() => parseCountsPayload(payload), { instanceOf: CaptureError, message: /holds -1, not a count/ });
	values[COUNT_COLUMNS + 4] = 0.5;
	t.throws(() => parseCountsPayload(encodeCountsPayload(AT_US, keys, values)), { message: /holds 0.5, not a count/ });
});

test('a dense frame of versions 5 and 6 still reads', (t) => {
	const { keys, values } = busy(4);
	const head = Buffer.alloc(COUNTS_HEAD_BYTES);
	head.writeDoubleLE(AT_US, 0);
	head.writeUInt32LE(4, 8); // the third word was reserved then: 0, the dense encoding
	const le = Buffer.alloc(values.length * 8);
	values.forEach((v, i) => le.writeDoubleLE(v, i * 8));
	const back = parseCountsPayload(Buffer.concat([head, keys, le]));
	t.deepEqual(back.values, values);
	t.deepEqual(back.keys, keys);
});

test('a sparse frame that does not add up is corrupt: cut, extra bytes, a column past the last, an unknown encoding', (t) => {
	const { keys, values } = busy(5);
	const payload = encodeCountsPayload(AT_US, keys, values);
	const corrupt = (p: Buffer, message: RegExp) => t.throws(() => parseCountsPayload(p), { instanceOf: CaptureError, message });
	corrupt(payload.subarray(0, payload.length - 1), /ends inside a count/);
	corrupt(payload.subarray(0, COUNTS_HEAD_BYTES + 5 * COUNT_KEY_SIZE + 2), /does not hold its 5 keys/);
	corrupt(Buffer.concat([payload, Buffer.from([0])]), /1 bytes after its 5 keys' counts/);
	const wide = Buffer.from(payload);
	wide.writeUInt32LE(1, 8);
	// One key, its mask naming the column past the last (0 to COUNT_COLUMNS - 1): varint 2^COUNT_COLUMNS.
	corrupt(Buffer.concat([wide.subarray(0, COUNTS_HEAD_BYTES + COUNT_KEY_SIZE), varint(2 ** COUNT_COLUMNS)]), new RegExp(`names column ${COUNT_COLUMNS} of ${COUNT_COLUMNS}`));
	corrupt(Buffer.concat([wide.subarray(0, COUNTS_HEAD_BYTES + COUNT_KEY_SIZE), Buffer.from([1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1])]), /longer than 8 bytes/);
	const unknown = Buffer.from(payload);
	unknown.writeUInt32LE(3, 12);
	corrupt(unknown, /unknown encoding 3/);
	const short = Buffer.alloc(COUNTS_HEAD_BYTES - 1);
	corrupt(short, /too short for its head/);
});

/** A key table of `keys` under ids 1000, 1001, … (not their order: ids are the recorder's own). */
function keyTable(keys: Buffer): { ids: Uint32Array; table: Map<number, Buffer> } {
	const n = keys.length / COUNT_KEY_SIZE;
	const ids = Uint32Array.from({ length: n }, (_, i) => 1000 + ((i * 7) % n));
	const table = new Map<number, Buffer>();
	parseKeysPayload(encodeKeysPayload([...ids].map((id, i) => [id, keys.subarray(i * COUNT_KEY_SIZE, (i + 1) * COUNT_KEY_SIZE)] as const)), table);
	return { ids, table };
}

test('a keyed frame names its keys by the ids a keys frame defined: the same keys and differences, in a fraction of a sparse frame\'s bytes', (t) => {
	const { keys, values } = busy(128);
	const { ids, table } = keyTable(keys);
	const payload = encodeCountsPayload(AT_US, keys, values, ids);
	t.is(payload.readUInt32LE(12), CountsEncoding.keyed);
	const back = parseCountsPayload(payload, table);
	t.is(back.count, 128);
	t.deepEqual(back.keys, keys);
	t.deepEqual(back.values, values);
	const sparse = encodeCountsPayload(AT_US, keys, values).length;
	t.true(payload.length < sparse / 2, `${payload.length} bytes keyed against ${sparse} sparse`);
	// A row that is not counts is still written dense, with its keys, whatever the ids.
	values[4] = -1;
	t.is(encodeCountsPayload(AT_US, keys, values, ids).readUInt32LE(12), CountsEncoding.dense);
	t.throws(() => encodeCountsPayload(AT_US, keys, values, ids.subarray(1)), { instanceOf: RangeError });
});

test('a keyed frame is corrupt when it names an id no keys frame defined, or a keys frame gives an id another key', (t) => {
	const { keys, values } = busy(3);
	const { ids, table } = keyTable(keys);
	const payload = encodeCountsPayload(AT_US, keys, values, ids);
	const corrupt = (f: () => unknown, message: RegExp) => t.throws(f, { instanceOf: CaptureError, message });
	corrupt(() => parseCountsPayload(payload), /names key id 1000, which no keys frame before it defines/);
	table.delete(ids[2]!);
	corrupt(() => parseCountsPayload(payload, table), new RegExp(`names key id ${ids[2]}`));
	const again = new Map<number, Buffer>();
	parseKeysPayload(encodeKeysPayload([[5, keys.subarray(0, COUNT_KEY_SIZE)]]), again);
	parseKeysPayload(encodeKeysPayload([[5, keys.subarray(0, COUNT_KEY_SIZE)]]), again); // the same again: harmless
	corrupt(() => parseKeysPayload(encodeKeysPayload([[5, keys.subarray(COUNT_KEY_SIZE, 2 * COUNT_KEY_SIZE)]]), again), /defines key id 5 again, as another key/);
	corrupt(() => parseKeysPayload(Buffer.alloc(KEY_ENTRY_BYTES + 1), again), /not a whole number of 60-byte keys/);
	// A count of keys its bytes cannot hold is refused before anything is allocated for it.
	const huge = Buffer.from(payload);
	huge.writeUInt32LE(0xffff_ffff, 8);
	corrupt(() => parseCountsPayload(huge, table), /does not hold its 4294967295 keys/);
});

test('kept frames share a few large buffers, not node\'s 8 KiB pool; a large one gets its own', (t) => {
	const slab = new FrameSlab(1024);
	const small = Buffer.from('frame of a quiet second');
	const [a, b] = [slab.keep(small), slab.keep(small)];
	t.deepEqual(a, small);
	t.is(a.buffer, b.buffer, 'two frames, one slab');
	t.is(a.buffer.byteLength, 1024);
	t.not(a.buffer, small.buffer);
	const large = Buffer.alloc(600, 7);
	const own = slab.keep(large);
	t.deepEqual(own, large);
	t.is(own.buffer.byteLength, 600, 'larger than a quarter of a slab: a buffer of its own');
	const fill = Array.from({ length: 60 }, () => slab.keep(small));
	t.not(fill.at(-1)!.buffer, a.buffer, 'a full slab is followed by a new one');
	t.true(fill.every((f) => f.equals(small)));
});

test('a frame of the counters\' earlier layout (20 columns, before time_wait_odd) reads into today\'s first columns, the odd buckets\' counts 0', (t) => {
	const written = 20;
	t.deepEqual([COUNT_COLUMN.timeWaitOdd, COUNT_COLUMN.finWait2Odd], [written, written + 1], 'the odd buckets\' counts were added last');
	const { keys, values } = busy(3);
	const old = (row: number) => values.subarray(row * COUNT_COLUMNS, row * COUNT_COLUMNS + written);
	const head = (encoding: number) => {
		const h = Buffer.alloc(COUNTS_HEAD_BYTES);
		h.writeDoubleLE(AT_US, 0);
		h.writeUInt32LE(3, 8);
		h.writeUInt32LE(encoding, 12);
		return h;
	};
	const sparse = [head(CountsEncoding.sparse), keys];
	const dense = [head(CountsEncoding.dense), keys];
	for (let row = 0; row < 3; row++) {
		let mask = 0;
		old(row).forEach((v, c) => (mask |= v ? 1 << c : 0));
		sparse.push(varint(mask), ...[...old(row)].filter((v) => v).map(varint));
		for (const v of old(row)) {
			const b = Buffer.alloc(8);
			b.writeDoubleLE(v);
			dense.push(b);
		}
	}
	const expected = new Float64Array(values);
	for (let row = 0; row < 3; row++) expected.fill(0, row * COUNT_COLUMNS + written, (row + 1) * COUNT_COLUMNS);
	for (const frame of [sparse, dense]) {
		const back = parseCountsPayload(Buffer.concat(frame), undefined, written);
		t.deepEqual(back.keys, keys);
		t.deepEqual(back.values, expected);
	}
	// A sparse row names its columns; a dense one's length is its layout's, which the capture's header names.
	t.throws(() => parseCountsPayload(Buffer.concat(dense)), { instanceOf: CaptureError, message: /does not hold its 3 keys/ });
});
