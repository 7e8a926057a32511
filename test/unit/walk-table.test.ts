/**
 * Walks stored as changes (src/capture/walk-table.ts): a diff applied to its base gives the next
 * table, whatever changed, on random tables checked against a plain map; listening sockets come
 * first in walk order; and a capture written with changes reads back as the walks it was given.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EVENT_SIZE, SOCK_FIELDS, SOCK_SIZE } from '../../src/event/layout.generated.js';
import { WalkTable } from '../../src/capture/walk-table.js';
import { CaptureWriter } from '../../src/capture/writer.js';
import { readCaptureFile } from '../../src/capture/reader.js';
import { CAPTURE_VERSION, layoutFingerprint, type CaptureHeader } from '../../src/capture/format.js';

/** One struct twt_sock: the cookie, a state, and a byte that stands for everything else. */
function sock(cookie: number, state = 6, salt = 0): Buffer {
	const b = Buffer.alloc(SOCK_SIZE);
	b.writeBigUInt64LE(BigInt(cookie), SOCK_FIELDS.cookie.offset);
	b.writeUInt8(state, SOCK_FIELDS.state.offset);
	b.writeUInt8(salt, SOCK_FIELDS.substate.offset);
	return b;
}

/** cookie → record, sorted by cookie: order does not matter to what a table holds. */
function asMap(records: Uint8Array): [number, string][] {
	const out = new Map<number, string>();
	for (let at = 0; at < records.byteLength; at += SOCK_SIZE) {
		const r = Buffer.from(records.subarray(at, at + SOCK_SIZE));
		out.set(Number(r.readBigUInt64LE(SOCK_FIELDS.cookie.offset)), r.toString('hex'));
	}
	return [...out].sort((a, b) => a[0] - b[0]);
}

test('a diff applied to its base is the next table: random adds, removals and changes, against a plain map', (t) => {
	let seed = 7;
	const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
	let truth = new Map<number, Buffer>();
	let table = WalkTable.EMPTY;
	for (let round = 0; round < 40; round++) {
		const next = new Map(truth);
		for (const cookie of [...next.keys()]) if (random() < 0.2) next.delete(cookie);
		for (const cookie of [...next.keys()]) if (random() < 0.1) next.set(cookie, sock(cookie, 6, Math.floor(random() * 200) + 1));
		for (let i = 0; i < 50; i++) {
			const cookie = Math.floor(random() * 2 ** 40) + 1;
			next.set(cookie, sock(cookie, random() < 0.1 ? 10 : 6));
		}
		// In walk order (not sorted), as the kernel delivers them.
		const walked = WalkTable.fromRecords(Buffer.concat([...next.values()].reverse()));
		const delta = table.diff(walked);
		const applied = table.apply(delta);
		t.deepEqual(asMap(applied.records), asMap(Buffer.concat([...next.values()])), `round ${round}`);
		t.deepEqual([...applied.cookies], [...applied.cookies].sort((a, b) => a - b));
		t.true(delta.upserts.size <= next.size);
		truth = next;
		table = applied;
	}
	t.is(table.diff(table).upserts.size + table.diff(table).removed.length, 0, 'an unchanged table has an empty delta');
});

test('walk order puts listening sockets first, as iter/tcp does', (t) => {
	const table = WalkTable.fromRecords(Buffer.concat([sock(1), sock(2, 10), sock(3), sock(4, 10)]));
	const states = [];
	const order = table.walkOrder();
	for (let at = 0; at < order.length; at += SOCK_SIZE) states.push(order[at + SOCK_FIELDS.state.offset]);
	t.deepEqual(states, [10, 10, 6, 6]);
});

test('a capture stores later walks as changes and reads back every walk whole; far smaller than whole tables', (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-walks-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'c.twtcap');
	const header: CaptureHeader = {
		format: 'twtrace-capture', version: CAPTURE_VERSION, tool: 'test', host: { hostname: 'h', kernel: 'k', arch: 'x64', byteOrder: os.endianness() },
		startedAt: new Date(0).toISOString(), clock: { startUs: 1, epochOffsetUs: 0 }, layout: layoutFingerprint(), eventSize: EVENT_SIZE, sockSize: SOCK_SIZE,
		filters: { netns: [] }, walkIntervalMs: 1000, namespaces: [],
	};
	const settings = { portRange: { low: 40000, high: 40099 }, reservedPorts: new Set<number>(), finTimeoutSec: 60 };
	const writer = new CaptureWriter(file, header, { maxBytes: 1 << 30 });
	const walks: Buffer[] = [];
	let cookies = Array.from({ length: 5000 }, (_, i) => i + 1);
	for (let w = 0; w < 5; w++) {
		cookies = [...cookies.slice(100), ...Array.from({ length: 100 }, (_, i) => 100_000 + w * 100 + i)]; // 2 % churn per walk
		const records = Buffer.concat(cookies.map((c) => sock(c, c % 97 === 0 ? 10 : 6)));
		walks.push(records);
		t.true(writer.writeWalk({ netns: 9, takenAtUs: 10 + w, settings, listeners: [], sockets: records }));
	}
	writer.close({ endUs: 100, reason: 'test', drops: { ringFull: 0, mapFull: 0, missedRuns: 0, ownerMissing: 0, decodeErrors: 0, walkMissed: 0, unwitnessed: 0 } });
	const whole = walks.reduce((n, w) => n + w.length, 0);
	t.true(writer.bytes < whole / 3, `${writer.bytes} bytes written for ${whole} bytes of tables`);
	const capture = readCaptureFile(file);
	const read = capture.items.filter((i) => i.type === 'walk');
	t.is(read.length, 5);
	read.forEach((item, w) => item.type === 'walk' && t.deepEqual(asMap(item.walk.sockets), asMap(walks[w]!), `walk ${w}`));
});
