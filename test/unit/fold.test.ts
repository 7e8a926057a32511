/**
 * The fold of records into the kernel's counters (src/model/fold.ts), record kind by record kind,
 * and the table both sides fill (src/event/counts.ts). That the fold equals the kernel's own
 * counting is test/integration/counts.test.ts's job, on a real run.
 */
import test from 'ava';
import { COUNT_COLUMN, COUNT_COLUMNS, CountKeyCache, CountTable, decodeCountKey, LIFETIME_BOUNDS_US } from '../../src/event/counts.js';
import { COUNT_KEY_SIZE, COUNT_SIZE, EventFlag, EventKind, OwnerSource, Side } from '../../src/event/layout.generated.js';
import { HOST_LITTLE_ENDIAN } from '../../src/event/host-order.js';
import { foldRecords } from '../../src/model/fold.js';
import { TCP_ESTABLISHED as ESTABLISHED, TCP_SYN_RECV as SYN_RECV, TCP_SYN_SENT as SYN_SENT } from '../../src/event/sock.js';
import { recordsBuffer, type RawRecord, type RawTask } from '../../testbed/records.js';

const C = COUNT_COLUMN;
/** TCP_FIN_WAIT2 (include/net/tcp_states.h): a timewait socket's substate when the peer's FIN had not come. */
const FIN_WAIT2 = 5;
const client = {
	kind: EventKind.TIME_WAIT,
	cgroupId: 4242n,
	lifetimeUs: 1500n,
	family: 2,
	saddr: [10, 200, 0, 1],
	daddr: [10, 200, 0, 2],
	sport: 40000,
	dport: 7101,
	netns: 4026532387,
	owner: 11,
	side: Side.CLIENT,
	ownerSource: OwnerSource.CONNECT,
	substate: 6,
} satisfies RawRecord;
const task: RawTask = { id: 11, pid: 8518, comm: 'tt-cli' };

function fold(records: (RawRecord | RawTask)[]): CountTable {
	const table = new CountTable();
	foldRecords(new Uint8Array(recordsBuffer(records, HOST_LITTLE_ENDIAN)), table);
	return table;
}

/** The one row of `table`, with its decoded key. */
function only(t: { is: (a: unknown, b: unknown, m?: string) => void }, table: CountTable): { key: ReturnType<typeof decodeCountKey>; row: Float64Array } {
	t.is(table.rows.size, 1, 'one key');
	const [key, row] = [...table.rows][0]!;
	return { key: decodeCountKey(key), row };
}

/** A row with `set` columns set, the rest 0. */
function row(set: Partial<Record<keyof typeof C, number>>, buckets: Record<number, number> = {}): number[] {
	const r = new Array<number>(COUNT_COLUMNS).fill(0);
	for (const [name, n] of Object.entries(set)) r[C[name as keyof typeof C]] = n;
	for (const [i, n] of Object.entries(buckets)) r[C.lifetime + Number(i)] = n;
	return r;
}

test('a client time_wait is counted under its owner and destination, with its lifetime in the 5 ms bucket', (t) => {
	const { key, row: r } = only(t, fold([task, client, { ...client, lifetimeUs: 4_000_000_000n }]));
	t.deepEqual(key, { netns: 4026532387, blamed: 11, cgroupId: 4242, family: 4, saddr: '10.200.0.1', daddr: '10.200.0.2', port: 7101, side: 'client' });
	// 4,000 s is past the last bound (1 h): in the count and the sum, in no bucket.
	t.deepEqual([...r], row({ timeWait: 2, lifetimeSumUs: 4_000_001_500, lifetimeCount: 2 }, { 1: 1 }));
});

test('a time_wait whose record says its timer went into an odd bucket is counted there too, in its substate\'s column', (t) => {
	const odd = { ...client, flags: EventFlag.ODD_BUCKET };
	const finWait2 = { ...client, substate: FIN_WAIT2 };
	const { row: r } = only(t, fold([task, odd, odd, client, { ...finWait2, flags: EventFlag.ODD_BUCKET | EventFlag.RECOVERED }, finWait2]));
	t.deepEqual([...r], row({ timeWait: 3, timeWaitOdd: 2, finWait2: 2, finWait2Odd: 1, lifetimeSumUs: 7500, lifetimeCount: 5 }, { 1: 5 }));
});

test('an accepted socket is counted under its local address and port whoever the peer, apart from the connections made to that port', (t) => {
	const accepted = { ...client, kind: EventKind.ACCEPT, side: Side.SERVER, sport: 7101, dport: 40000, lifetimeUs: 0n, oldState: SYN_RECV };
	const server = [...fold([accepted, { ...accepted, daddr: [10, 200, 0, 9], dport: 40001 }]).rows];
	t.is(server.length, 1, 'two peers, one key');
	t.like(decodeCountKey(server[0]![0]), { saddr: '10.200.0.1', daddr: '0.0.0.0', port: 7101, side: 'server' });
	t.is(server[0]![1][C.connections], 2);
	const table = fold([
		{ ...client, kind: EventKind.ACCEPT, side: Side.SERVER, sport: 7101, dport: 40000, lifetimeUs: 0n, oldState: SYN_RECV },
		{ ...client, kind: EventKind.CONNECT, lifetimeUs: 0n, oldState: SYN_SENT },
	]);
	const keys = [...table.rows].map(([k, r]) => ({ ...decodeCountKey(k), connections: r[C.connections] }));
	t.deepEqual(keys.map((k) => [k.side, k.port, k.connections]).sort(), [['client', 7101, 1], ['server', 7101, 1]]);
});

test('a key names the task blamed, as attribution.ts does: an accepted socket\'s closer, a connection\'s connect() caller whoever closed it', (t) => {
	const server = { ...client, side: Side.SERVER, ownerSource: OwnerSource.LISTEN, sport: 7101, dport: 40000 };
	const blamed = (records: RawRecord[]) => [...fold(records).rows.keys()].map((k) => decodeCountKey(k).blamed);
	// A pre-forked server: the listener's owner (11) accepted, a worker (12) closed.
	t.deepEqual(blamed([{ ...server, closer: 12 }]), [12]);
	t.deepEqual(blamed([{ ...server, closer: 0 }]), [11], 'not closed yet: the owner');
	t.deepEqual(blamed([{ ...client, closer: 12 }]), [11], 'a child closed the connection its parent made');
	t.deepEqual(blamed([{ ...server, owner: 0, ownerSource: OwnerSource.NONE, closer: 12 }]), [12], 'a socket older than twtrace: its closer');
	t.deepEqual(blamed([{ ...server, owner: 0, ownerSource: OwnerSource.NONE, closer: 0 }]), [0], 'nobody known');
});

test('each kind increments its own counter; resets keep lifetimes, connect failures count EADDRNOTAVAIL apart; task records, bind failures and active closes count nothing', (t) => {
	const { row: r } = only(t, fold([
		task,
		{ ...client, kind: EventKind.ACTIVE_CLOSE, oldState: ESTABLISHED },
		{ ...client, substate: 5, lifetimeUs: 70_000_000n }, // FIN_WAIT2 substate; 70 s: the 5 min bucket
		{ ...client, kind: EventKind.RESET, substate: 0, lifetimeUs: 0n, err: 104, oldState: ESTABLISHED }, // start not seen: no lifetime
		{ ...client, kind: EventKind.RESET, substate: 0, lifetimeUs: 1000n, oldState: ESTABLISHED }, // exactly the 1 ms bound
		{ ...client, kind: EventKind.CONNECT_FAIL, err: 99, lifetimeUs: 0n, oldState: SYN_SENT },
		{ ...client, kind: EventKind.CONNECT_FAIL, err: 111, lifetimeUs: 0n, oldState: SYN_SENT },
		{ ...client, kind: EventKind.BIND_FAIL, err: 98 },
	]));
	// The two failed connects started connections: the kernel counts each at its start.
	t.deepEqual([...r], row({ connections: 2, finWait2: 1, resets: 2, connectFails: 2, addrNotAvail: 1, lifetimeSumUs: 70_001_000, lifetimeCount: 2 }, { 0: 1, 10: 1 }));
});

test('a connection is counted once, by the record that ends its handshake: connect, connect_fail, or (server) accept, reset or active_close out of SYN_RECV', (t) => {
	const server = { ...client, side: Side.SERVER, lifetimeUs: 0n, substate: 0 };
	const { row: r } = only(t, fold([
		{ ...server, kind: EventKind.ACCEPT, oldState: SYN_RECV },
		{ ...server, kind: EventKind.RESET, oldState: SYN_RECV, err: 104 },
		{ ...server, kind: EventKind.ACTIVE_CLOSE, oldState: SYN_RECV }, // closed during a fast-open handshake
		{ ...server, kind: EventKind.ACTIVE_CLOSE, oldState: ESTABLISHED },
		{ ...server, kind: EventKind.RESET, oldState: ESTABLISHED },
	]));
	t.deepEqual([...r], row({ connections: 3, resets: 2 }));
});

test('the lifetime bounds are 1 ms to 1 h, as the metrics have always exported them', (t) => {
	t.deepEqual([...LIFETIME_BOUNDS_US], [1e3, 5e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6, 1e7, 6e7, 3e8, 3.6e9]);
});

test('a table adds packed kernel entries (host byte order) and other tables by key', (t) => {
	const keys = Buffer.alloc(2 * COUNT_KEY_SIZE);
	keys[COUNT_KEY_SIZE] = 1; // a second, different key
	const values = Buffer.alloc(2 * COUNT_SIZE);
	const put = (at: number, n: bigint) => (HOST_LITTLE_ENDIAN ? values.writeBigUInt64LE(n, at) : values.writeBigUInt64BE(n, at));
	put(8 * C.timeWait, 3n);
	put(COUNT_SIZE + 8 * C.resets, 2n ** 40n);
	put(8 * C.lifetimeSumUs, 2n ** 33n + 0xfffffffen); // both halves of the u64 set
	const table = new CountTable();
	table.addPacked(keys, values, 2);
	table.addPacked(keys, values, 1);
	t.is(table.rows.size, 2);
	t.is(table.total(C.timeWait), 6);
	t.is(table.total(C.resets), 2 ** 40);
	t.is(table.total(C.lifetimeSumUs), 2 * (2 ** 33 + 0xfffffffe));
	const sum = new CountTable().addTable(table).addTable(table);
	t.is(sum.total(C.timeWait), 12);
	t.is(sum.rows.size, 2);
});

test('a key of the wrong size is refused', (t) => {
	t.throws(() => decodeCountKey('00'), { instanceOf: RangeError });
});

test('keys decoded once: the cache hands out what decodeCountKey gives, the same object while it is named, and holds two generations at most', (t) => {
	const keys = [...fold([task, ...Array.from({ length: 5 }, (_, i) => ({ ...client, dport: 7000 + i }))]).rows.keys()];
	const cache = new CountKeyCache(2);
	const first = cache.get(keys[0]!);
	t.deepEqual(first, decodeCountKey(keys[0]!));
	t.is(cache.get(keys[0]!), first, 'a key named again is not decoded again');
	cache.get(keys[1]!);
	cache.get(keys[2]!); // the first generation (keys 0 and 1) is now the older one
	t.is(cache.get(keys[0]!), first, 'a key of the older generation comes over');
	for (const k of keys.slice(1)) cache.get(k); // two generations filled past key 0
	cache.get(keys[4]!);
	const again = cache.get(keys[0]!);
	t.not(again, first, 'a key dropped with its generation is decoded again');
	t.deepEqual(again, first);
	t.deepEqual(keys.map((k) => cache.get(k).port), [7000, 7001, 7002, 7003, 7004]);
});
