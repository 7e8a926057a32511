/**
 * Reading a walk a chunk at a time (src/pipeline/walk-reader.ts): every socket reaches the caller,
 * records split across reads included, and the walk's time is told apart: reading the kernel,
 * draining before each chunk, handling its sockets (what top --json's walks.last…Ms show).
 */
import test from 'ava';
import { SOCK_SIZE } from '../../src/event/layout.generated.js';
import { readWalk, type WalkTime } from '../../src/pipeline/walk-reader.js';
import { sockRecord } from '../../testbed/records.js';

/** Keeps the thread busy for `ms`: stands for a read in the kernel or work in JavaScript. */
function busy(ms: number): void {
	const until = performance.now() + ms;
	while (performance.now() < until);
}

/** A walk that hands out `records` `perRead` bytes at a time, each read taking `readMs`. */
function fakeWalk(records: Buffer, perRead: number, readMs: number) {
	let at = 0;
	let closed = false;
	return {
		read(buf: Buffer): number {
			busy(readMs);
			const n = Math.min(perRead, records.length - at, buf.length);
			records.copy(buf, 0, at, at + n);
			at += n;
			return n;
		},
		close: () => void (closed = true),
		closed: () => closed,
	};
}

test('every socket is handed over, records split across reads included, and the walk is closed', async (t) => {
	const records = Buffer.concat(Array.from({ length: 10 }, (_, i) => sockRecord({ cookie: 100 + i, sport: 40000 + i })));
	const w = fakeWalk(records, SOCK_SIZE + 7, 0);
	const cookies: number[] = [];
	const read = await readWalk(w, { each: (s) => cookies.push(Number(s.cookie)), keepBytes: 1 << 20 });
	t.deepEqual(cookies, Array.from({ length: 10 }, (_, i) => 100 + i));
	t.is(read?.bytes, records.length);
	t.deepEqual(read?.kept, records);
	t.true(w.closed());
});

test('a walk\'s time is split into reading the kernel, draining before each chunk and handling its sockets', async (t) => {
	const records = Buffer.concat(Array.from({ length: 4 }, (_, i) => sockRecord({ cookie: 1 + i, sport: 40000 + i })));
	const time: WalkTime = { readMs: 0, drainMs: 0, handleMs: 0 };
	const started = performance.now();
	// Four chunks of one socket each, and the read that finds the end: five reads of 4 ms.
	await readWalk(fakeWalk(records, SOCK_SIZE, 4), { each: () => busy(3), beforeChunk: () => busy(2), time });
	const wallMs = performance.now() - started;
	t.true(time.readMs >= 5 * 4, `read ${time.readMs} ms`);
	t.true(time.drainMs >= 4 * 2, `drain ${time.drainMs} ms`);
	t.true(time.handleMs >= 4 * 3, `handle ${time.handleMs} ms`);
	t.true(time.readMs + time.drainMs + time.handleMs <= wallMs, 'no more than the walk\'s wall time');
});

test('kept without timewait sockets: every socket is still handed over, the kept records are the others, and the timewait ones are counted', async (t) => {
	// 1,000 timewait sockets and 3 open ones: the bound holds the open ones, not the whole walk.
	const tw = Array.from({ length: 1000 }, (_, i) => sockRecord({ cookie: 1 + i, sport: 40000 + i, state: 6, substate: 6 }));
	const open = [0, 1, 2].map((i) => sockRecord({ cookie: 5000 + i, sport: 50000 + i, state: 1 }));
	const records = Buffer.concat([...tw.slice(0, 500), open[0]!, ...tw.slice(500), open[1]!, open[2]!]);
	let handed = 0;
	const read = await readWalk(fakeWalk(records, 4096 + 5, 0), { each: () => void handed++, keepBytes: 10 * SOCK_SIZE, keepTimeWait: false });
	t.is(handed, 1003, 'the model still sees every socket');
	t.is(read?.timeWaitOmitted, 1000);
	t.deepEqual(read?.kept, Buffer.concat(open), 'the open sockets, in walk order');
	const whole = await readWalk(fakeWalk(records, 4096 + 5, 0), { each: () => {}, keepBytes: 10 * SOCK_SIZE });
	t.is(whole?.kept, undefined, 'with them, past the bound: not kept');
	t.is(whole?.timeWaitOmitted, undefined);
});

test('a walk that left counted timewait sockets out ends with their number: read off, never handed over or kept as a socket', async (t) => {
	const sockets = Array.from({ length: 5 }, (_, i) => sockRecord({ cookie: 10 + i, sport: 40000 + i, state: i === 4 ? 10 : 1 }));
	// The trailer (bpf/twtrace.h TWT_WALK_TRAILER_STATE): state 0, the number left out in its cookie field.
	const trailer = sockRecord({ cookie: 1_234_567, sport: 0, state: 0 });
	const records = Buffer.concat([...sockets, trailer]);
	for (const perRead of [SOCK_SIZE + 5, SOCK_SIZE * 6, 13]) {
		const seen: number[] = [];
		const read = await readWalk(fakeWalk(records, perRead, 0), { each: (s) => seen.push(s.state), keepBytes: 1 << 20 });
		t.deepEqual(seen, [1, 1, 1, 1, 10], `${perRead} bytes a read`);
		t.is(read?.timeWaitCounted, 1_234_567);
		t.is(read?.bytes, 5 * SOCK_SIZE);
		t.deepEqual(read?.kept, Buffer.concat(sockets));
	}
	const plain = await readWalk(fakeWalk(Buffer.concat(sockets), SOCK_SIZE, 0), { each: () => undefined });
	t.is(plain?.timeWaitCounted, undefined, 'no trailer: nothing left out');
});
