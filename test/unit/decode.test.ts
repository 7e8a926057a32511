import test from 'ava';
import { Decoder, FIELD_PROPERTIES, formatIpv6, isDecodeFailure, type TwtEvent } from '../../src/event/decode.js';
import { EVENT_FIELDS, EVENT_SIZE, EventFlag, EventKind, OwnerSource, Side } from '../../src/event/layout.generated.js';
import { TaskTable } from '../../src/event/tasks.js';
import { recordBuffer, recordsBuffer, type RawRecord, type RawTask } from '../../testbed/records.js';

const timeWait = {
	kind: EventKind.TIME_WAIT,
	tsUs: 123_456_789_012n,
	cookie: 0x1_0000_0005n,
	cgroupId: 4242n,
	lifetimeUs: 1500n,
	family: 2,
	saddr: [10, 200, 0, 1],
	daddr: [10, 200, 0, 2],
	sport: 40000,
	dport: 7101,
	netns: 4026532387,
	owner: 11,
	closer: 12,
	side: Side.CLIENT,
	ownerSource: OwnerSource.CONNECT,
	substate: 6,
	oldState: 5,
	newState: 7,
	twSlackMs: 1234,
} satisfies RawRecord;
const ownerTask: RawTask = { id: 11, pid: 8518, tid: 8519, uid: 1000, comm: 'tt-cli' };
const closerTask: RawTask = { id: 12, pid: 8520, tid: 8521, uid: 1001, comm: 'tt-child' };

/** Decodes `event` after the task records of its owner and closer; returns the event. */
function decodeOne(event: RawRecord, littleEndian = true, tasks: RawTask[] = [ownerTask, closerTask], readAs = littleEndian): TwtEvent {
	const buf = recordsBuffer([...tasks, event], littleEndian);
	const decoder = new Decoder(buf, new TaskTable(), readAs);
	for (let i = 0; i < tasks.length; i++) if (decoder.decode(i * EVENT_SIZE, EVENT_SIZE) !== undefined) throw new Error('a task record decoded as an event');
	const r = decoder.decode(tasks.length * EVENT_SIZE, EVENT_SIZE);
	if (r === undefined || isDecodeFailure(r)) throw new Error(`decode failed: ${JSON.stringify(r)}`);
	return r;
}

test('an IPv4 time_wait record decodes field by field', (t) => {
	t.deepEqual(decodeOne(timeWait), {
		kind: 'time_wait',
		tsUs: 123_456_789_012,
		cookie: 0x1_0000_0005,
		cgroupId: 4242,
		lifetimeUs: 1500,
		family: 4,
		saddr: '10.200.0.1',
		daddr: '10.200.0.2',
		sport: 40000,
		dport: 7101,
		netns: 4026532387,
		pid: 8518,
		tid: 8519,
		uid: 1000,
		comm: 'tt-cli',
		ownerSource: 'connect',
		closerPid: 8520,
		closerTid: 8521,
		closerUid: 1001,
		closerComm: 'tt-child',
		err: 0,
		side: 'client',
		substate: 6,
		oldState: 5,
		newState: 7,
		recovered: false,
		twSlackMs: 1234,
	});
});

test('a time_wait record flagged as found by a walk decodes as recovered; other flag bits do not', (t) => {
	t.true(decodeOne({ ...timeWait, flags: EventFlag.RECOVERED }).recovered);
	t.false(decodeOne({ ...timeWait, flags: 0x80 }).recovered);
});

test('an IPv6 record decodes its 16-byte addresses in RFC 5952 form', (t) => {
	const v6 = [0xfd, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
	const e = decodeOne({ ...timeWait, family: 10, saddr: v6, daddr: [...v6.slice(0, 15), 2] });
	t.is(e.family, 6);
	t.is(e.saddr, 'fd00:200::1');
	t.is(e.daddr, 'fd00:200::2');
});

test('a big-endian record decodes when the decoder is told the byte order', (t) => {
	const e = decodeOne(timeWait, false);
	t.is(e.netns, 4026532387);
	t.is(e.comm, 'tt-cli', 'task records too');
	t.is(e.tsUs, 123_456_789_012);
	t.is(e.sport, 40000);
});

test('a record read in the wrong byte order does not match (byte order matters)', (t) => {
	const e = decodeOne(timeWait, false, [], true);
	t.not(e.sport, 40000);
});

test('a short record is a counted failure, not a throw', (t) => {
	const buf = recordBuffer(timeWait);
	t.deepEqual(new Decoder(buf).decode(0, EVENT_SIZE - 1), { reason: 'short', length: EVENT_SIZE - 1 });
	t.deepEqual(new Decoder(buf).decode(0, 0), { reason: 'short', length: 0 });
});

test('an unknown kind is a failure that names the kind', (t) => {
	for (const kind of [0, EventKind._MAX, 255]) {
		t.deepEqual(new Decoder(recordBuffer({ ...timeWait, kind })).decode(0, EVENT_SIZE), { reason: 'unknown-kind', length: EVENT_SIZE, kind });
	}
});

test('a comm of the full 16 bytes without a NUL stays within its field', (t) => {
	const e = decodeOne(timeWait, true, [{ ...ownerTask, comm: 'abcdefghijklmnop' }, { ...closerTask, comm: 'x' }]);
	t.is(e.comm, 'abcdefghijklmnop');
	t.is(e.closerComm, 'x');
});

test('an event names no task until its task record arrives; an id never sent is counted, not guessed', (t) => {
	const tasks = new TaskTable();
	const buf = recordsBuffer([timeWait, ownerTask, timeWait, { ...timeWait, owner: 0, closer: 0 }]);
	const decoder = new Decoder(buf, tasks);
	const [before, task, after, none] = [0, 1, 2, 3].map((i) => decoder.decode(i * EVENT_SIZE, EVENT_SIZE)) as [TwtEvent, undefined, TwtEvent, TwtEvent];
	t.like(before, { pid: 0, comm: '', closerPid: 0 });
	t.is(task, undefined);
	t.like(after, { pid: 8518, tid: 8519, uid: 1000, comm: 'tt-cli', closerPid: 0 });
	t.like(none, { pid: 0, comm: '', closerPid: 0 });
	t.is(tasks.unknown, 3, 'owner and closer of the first, the closer of the second; id 0 means none, not unknown');
});

test('a task table is bounded: beyond its size the oldest task is forgotten', (t) => {
	const tasks = new TaskTable(2);
	for (const id of [1, 2, 3]) tasks.set(id, { pid: id, tid: id, uid: 0, comm: `t${id}` });
	t.is(tasks.size, 2);
	t.is(tasks.get(1).pid, 0);
	t.is(tasks.get(3).comm, 't3');
});

test('every record field maps to a decoded property (padding excepted)', (t) => {
	const e = decodeOne(timeWait);
	for (const [field, property] of Object.entries(FIELD_PROPERTIES)) {
		t.true(field in EVENT_FIELDS);
		if (property === 'task:owner') t.is(e.pid, ownerTask.pid);
		else if (property === 'task:closer') t.is(e.closerPid, closerTask.pid);
		else if (property !== 'padding') t.true(property in e, `${field} → ${property}`);
	}
});

test('formatIpv6 compresses the longest zero run and prints v4-mapped addresses', (t) => {
	const b = (...g: number[]) => new Uint8Array(g.flatMap((x) => [x >> 8, x & 0xff]));
	t.is(formatIpv6(b(0, 0, 0, 0, 0, 0, 0, 1)), '::1');
	t.is(formatIpv6(b(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1)), '2001:db8::1:0:0:1');
	t.is(formatIpv6(b(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6)), '2001:db8:1:2:3:4:5:6');
	t.is(formatIpv6(b(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001)), '::ffff:10.0.0.1');
	t.is(formatIpv6(b(0, 0, 0, 0, 0, 0, 0, 0)), '::');
});

test('addresses remembered from the previous record are reused only when the bytes are the same', (t) => {
	const tasks: RawTask[] = [{ id: 1, pid: 1, comm: 'alpha' }, { id: 2, pid: 2, comm: 'alphb' }, { id: 3, pid: 3, comm: 'alpha-long-name' }];
	const events = [
		{ ...timeWait, owner: 1, closer: 1, saddr: [10, 0, 0, 1] },
		{ ...timeWait, owner: 1, closer: 1, saddr: [10, 0, 0, 1] },
		{ ...timeWait, owner: 2, closer: 3, saddr: [10, 0, 0, 2] },
		{ ...timeWait, owner: 1, closer: 1, family: 10, saddr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1] },
		{ ...timeWait, owner: 1, closer: 1, saddr: [10, 0, 0, 1] },
	];
	const decoder = new Decoder(recordsBuffer([...tasks, ...events]));
	const got = [...tasks, ...events].map((_, i) => decoder.decode(i * EVENT_SIZE, EVENT_SIZE)).filter((e): e is TwtEvent => e !== undefined);
	t.deepEqual(got.map((e) => [e.comm, e.closerComm, e.saddr]), [
		['alpha', 'alpha', '10.0.0.1'],
		['alpha', 'alpha', '10.0.0.1'],
		['alphb', 'alpha-long-name', '10.0.0.2'],
		['alpha', 'alpha', '::ffff:10.0.0.1'],
		['alpha', 'alpha', '10.0.0.1'],
	]);
});

test('a record read through the reused view (Decoder.at) has every field decode() gives it', (t) => {
	const events = [timeWait, { ...timeWait, kind: EventKind.CONNECT, family: 10, saddr: [0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], flags: EventFlag.RECOVERED }, { ...timeWait, owner: 0, closer: 99 }];
	const records = [ownerTask, closerTask, ...events];
	const buf = recordsBuffer(records);
	const decoded = new Decoder(buf);
	const viewed = new Decoder(buf);
	for (let i = 0; i < records.length; i++) {
		const a = decoded.decode(i * EVENT_SIZE, EVENT_SIZE);
		const b = viewed.at(i * EVENT_SIZE, EVENT_SIZE);
		if (a === undefined || b === undefined) {
			t.is(a, b, `record ${i}: a task record either way`);
			continue;
		}
		if (isDecodeFailure(a)) throw new Error('unexpected failure');
		if (isDecodeFailure(b)) throw new Error('unexpected failure');
		for (const key of Object.keys(a) as (keyof TwtEvent)[]) t.is(b[key], a[key], `record ${i}: ${key}`);
	}
	t.is(viewed.tasks.unknown, decoded.tasks.unknown, 'the same unknown task is counted');
});
