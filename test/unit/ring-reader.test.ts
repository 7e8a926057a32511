/**
 * The ring drain against a ring built in ordinary memory with the kernel's framing
 * (kernel/bpf/ringbuf.c): BUSY stops the drain, DISCARD is skipped, a record that wraps is read
 * from the second copy of the data area, and the consumer position is handed back.
 */
import test from 'ava';
import type { RingViews } from '../../native/ring-map.js';
import { BURST_BYTES_PER_MS, drainDelayMs, maxDrainDelayMs, RingReader } from '../../src/tracer/ring-reader.js';

const PAGE = 4096;
const DATA = 4096;
const BUSY = 0x8000_0000;
const DISCARD = 0x4000_0000;

class FakeRing {
	readonly memory = new ArrayBuffer(PAGE + 2 * DATA);
	readonly views: RingViews = {
		consumerPos: new BigInt64Array(new ArrayBuffer(8)),
		producerPos: new BigInt64Array(this.memory, 0, 1),
		memory: this.memory,
		dataOffset: PAGE,
		dataBytes: DATA,
	};
	readonly #bytes = new Uint8Array(this.memory);
	#producer = 0;

	/** Appends a record whose payload is `payload`; both copies of the data area are written, as the double mapping would show. */
	push(payload: number[], flags = 0): number {
		const at = this.#producer;
		const total = (payload.length + 8 + 7) & ~7;
		const rec = new Uint8Array(total);
		new DataView(rec.buffer).setUint32(0, (payload.length | flags) >>> 0, true);
		rec.set(payload, 8);
		for (let i = 0; i < total; i++) {
			const pos = (at + i) % DATA;
			this.#bytes[PAGE + pos] = rec[i]!;
			this.#bytes[PAGE + DATA + pos] = rec[i]!;
		}
		this.#producer += total;
		this.views.producerPos[0] = BigInt(this.#producer);
		return at;
	}

	setHeader(at: number, value: number): void {
		for (const base of [PAGE, PAGE + DATA]) new DataView(this.memory).setUint32(base + (at % DATA), value >>> 0, true);
	}

	/** Simulates a long-running ring: both positions start near the end of the data area. */
	startAt(pos: number): void {
		this.#producer = pos;
		this.views.producerPos[0] = BigInt(pos);
		this.views.consumerPos[0] = BigInt(pos);
	}
}

function reader(ring: FakeRing) {
	const seen: number[][] = [];
	let released = 0;
	const bytes = new Uint8Array(ring.memory);
	const r = new RingReader(ring.views, (offset, length) => seen.push([...bytes.subarray(offset, offset + length)]), () => released++);
	return { r, seen, released: () => released };
}

test('committed records arrive in order and the consumer position follows', (t) => {
	const ring = new FakeRing();
	const { r, seen } = reader(ring);
	ring.push([1, 2, 3]);
	ring.push([4, 5, 6, 7, 8, 9, 10, 11, 12]);
	t.is(r.drain(), 2);
	t.deepEqual(seen, [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12]]);
	t.is(ring.views.consumerPos[0], ring.views.producerPos[0]);
	t.is(r.drain(), 0);
});

test('a BUSY record stops the drain until it is committed', (t) => {
	const ring = new FakeRing();
	const { r, seen } = reader(ring);
	ring.push([1]);
	const busyAt = ring.push([2], BUSY);
	ring.push([3]);
	t.is(r.drain(), 1);
	t.deepEqual(seen, [[1]]);
	t.is(Number(ring.views.consumerPos[0]), busyAt);
	ring.setHeader(busyAt, 1);
	t.is(r.drain(), 2);
	t.deepEqual(seen, [[1], [2], [3]]);
});

test('a DISCARD record is skipped but consumed', (t) => {
	const ring = new FakeRing();
	const { r, seen } = reader(ring);
	ring.push([1], DISCARD);
	ring.push([2]);
	t.is(r.drain(), 1);
	t.deepEqual(seen, [[2]]);
	t.is(ring.views.consumerPos[0], ring.views.producerPos[0]);
});

test('a record that wraps past the end of the data area is read whole from the second mapping', (t) => {
	const ring = new FakeRing();
	ring.startAt(10 * DATA - 16); // positions never wrap; only their offset in the area does
	const { r, seen } = reader(ring);
	const payload = Array.from({ length: 40 }, (_, i) => i);
	ring.push(payload);
	t.is(r.drain(), 1);
	t.deepEqual(seen, [payload]);
	t.is(Number(ring.views.consumerPos[0]), 10 * DATA - 16 + 48);
});

test('positions beyond 2^32 bytes are handled exactly', (t) => {
	const ring = new FakeRing();
	ring.startAt(2 ** 33 + 8);
	const { r, seen } = reader(ring);
	ring.push([9]);
	t.is(r.drain(), 1);
	t.deepEqual(seen, [[9]]);
	t.is(ring.views.consumerPos[0], BigInt(2 ** 33 + 24));
});

test('close drains the rest once, releases once, and later drains return nothing', (t) => {
	const ring = new FakeRing();
	const { r, seen, released } = reader(ring);
	ring.push([1]);
	r.close();
	t.deepEqual(seen, [[1]]);
	t.is(released(), 1);
	ring.push([2]);
	t.is(r.drain(), 0);
	r.close();
	t.is(released(), 1);
	t.deepEqual(seen, [[1]]);
});

test('while paused the timer does not drain', async (t) => {
	const ring = new FakeRing();
	const { r, seen } = reader(ring);
	r.pause();
	r.start({ intervalMs: 5 });
	ring.push([1]);
	await new Promise((res) => setTimeout(res, 30));
	t.deepEqual(seen, []);
	r.resume();
	await new Promise((res) => setTimeout(res, 30));
	t.deepEqual(seen, [[1]]);
	r.close();
});

test('the drain paces itself by what it finds: rarely when the ring stays empty, often when it fills', (t) => {
	const ring = 8 << 20;
	const max = maxDrainDelayMs(ring, 10);
	t.is(max, 131, 'an 8 MiB ring: a quarter of it at 16 MB/s');
	t.is(drainDelayMs(0, 100, ring, 10, max), max, 'nothing found: the longest wait');
	// 13 MB/s (full churn, every kind): an eighth of the ring in about 80 ms.
	t.is(drainDelayMs(13_000 * 50, 50, ring, 10, max), 81);
	t.is(drainDelayMs(200_000 * 10, 10, ring, 10, max), 10, 'never more often than the shortest wait');
	t.is(maxDrainDelayMs(256 << 10, 10), 10, 'a small ring (--ring-size 256K) is drained at the shortest wait');
	t.is(maxDrainDelayMs(64 << 20, 10), 250, 'a large one at most four times a second when idle');
});

test('a burst after a quiet spell finds room: the longest wait fills at most a quarter of the ring at the assumed burst rate', (t) => {
	for (const ring of [1 << 20, 8 << 20, 32 << 20]) {
		const max = maxDrainDelayMs(ring, 10);
		t.true(max * BURST_BYTES_PER_MS <= ring / 4 + BURST_BYTES_PER_MS, `${ring} bytes: ${max} ms`);
	}
});

test('a handler that pauses the reader stops the timer drain after that record; resuming drains the rest at once', async (t) => {
	const ring = new FakeRing();
	const seen: number[] = [];
	const bytes = new Uint8Array(ring.memory);
	const r: RingReader = new RingReader(ring.views, (offset) => {
		seen.push(bytes[offset]!);
		if (bytes[offset] === 2) r.pause(); // the consumer says it is full after the second record
	}, () => {});
	for (const v of [1, 2, 3, 4]) ring.push([v]);
	r.start({ intervalMs: 5, maxIntervalMs: 5 });
	await new Promise((res) => setTimeout(res, 30));
	t.deepEqual(seen, [1, 2], 'the rest waits in the ring');
	t.is(Number(ring.views.consumerPos[0]), 32, 'the records handed on are released to the kernel');
	r.resume();
	await new Promise((res) => setImmediate(res));
	await new Promise((res) => setTimeout(res, 1));
	t.deepEqual(seen, [1, 2, 3, 4]);
	r.close();
});

test('drain() on demand reads everything even when the handler pauses: stop and walks must not leave events behind', (t) => {
	const ring = new FakeRing();
	const seen: number[] = [];
	const bytes = new Uint8Array(ring.memory);
	const r: RingReader = new RingReader(ring.views, (offset) => {
		seen.push(bytes[offset]!);
		r.pause();
	}, () => {});
	for (const v of [1, 2, 3]) ring.push([v]);
	t.is(r.drain(), 3);
	t.deepEqual(seen, [1, 2, 3]);
	r.close();
});
