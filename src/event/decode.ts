/**
 * Bytes of one record → TwtEvent. A `struct twt_task` record goes into the stream's TaskTable instead
 * (decode() returns undefined for it); an event's owner and closer ids are resolved through that
 * table. Total: kernel input never makes it throw; a record of the wrong size or an unknown kind
 * comes back as a DecodeFailure for the caller to count.
 */
import { HOST_LITTLE_ENDIAN } from './host-order.js';
import { EVENT_FIELDS as F, EVENT_SIZE, EventFlag, EventKind, TASK_FIELDS as T } from './layout.generated.js';
import { NO_TASK, TaskTable, type TaskInfo } from './tasks.js';
import { AF_INET6, kindName, OWNER_SOURCE_NAMES, SIDE_NAMES, type EventKindName, type OwnerSourceName, type SideName } from './kinds.js';

export interface TwtEvent {
	kind: EventKindName;
	/** CLOCK_MONOTONIC microseconds (bpf_ktime_get_ns). */
	tsUs: number;
	/** Socket cookie: a counter (net/core/sock_diag.c, gen_cookie), exact as a number for ~2^53 sockets. */
	cookie: number;
	cgroupId: number;
	lifetimeUs: number;
	family: 4 | 6;
	saddr: string;
	daddr: string;
	sport: number;
	dport: number;
	netns: number;
	pid: number;
	tid: number;
	uid: number;
	comm: string;
	ownerSource: OwnerSourceName;
	closerPid: number;
	closerTid: number;
	closerUid: number;
	closerComm: string;
	/** Positive errno, 0 when none. */
	err: number;
	side: SideName;
	/** TCP state number: TIME_WAIT (6) or FIN_WAIT2 (5) for time_wait, else 0. */
	substate: number;
	oldState: number;
	newState: number;
	/**
	 * time_wait found by a socket walk: the kernel ran no program when this socket entered TIME_WAIT
	 * (README, "Design notes"). tsUs is then when the walk found it.
	 */
	recovered: boolean;
	/**
	 * time_wait with substate TIME_WAIT: ms after the nominal 60 s at which the kernel's timer wheel
	 * will end it (bpf/twtrace.bpf.c wheel_fire_jiffies); 0 otherwise or when HZ is unknown.
	 */
	twSlackMs: number;
}

export type DecodeFailure = { reason: 'short' | 'unknown-kind'; length: number; kind?: number };

/**
 * Which TwtEvent property each record field becomes. Keyed by every field of the generated layout,
 * so a field added to bpf/twtrace.h without a decoder is a compile error.
 */
export const FIELD_PROPERTIES: { readonly [K in keyof typeof F]: keyof TwtEvent | 'padding' | 'task:owner' | 'task:closer' } = {
	ts_us: 'tsUs', cookie: 'cookie', cgroup_id: 'cgroupId', lifetime_us: 'lifetimeUs',
	saddr: 'saddr', daddr: 'daddr', netns: 'netns', owner: 'task:owner', closer: 'task:closer', err: 'err',
	sport: 'sport', dport: 'dport', family: 'family', kind: 'kind', side: 'side',
	owner_source: 'ownerSource', substate: 'substate', oldstate: 'oldState', newstate: 'newState',
	flags: 'recovered', tw_slack_ms: 'twSlackMs', _pad: 'padding',
};

const hostLittleEndian = HOST_LITTLE_ENDIAN;

/** Decodes records out of one memory region (a mapped ring, or a capture buffer). */
export class Decoder {
	readonly #view: DataView;
	readonly #bytes: Buffer;
	readonly #little: boolean;
	/** The stream's tasks: shared by every decoder of one stream (a capture has one per frame). */
	readonly tasks: TaskTable;
	// Consecutive events mostly come from the same few addresses; building a string costs ~100 ns,
	// comparing the raw words ~10 ns. One remembered value per field (bench/decode.ts).
	readonly #saddr = new StringMemo();
	readonly #daddr = new StringMemo();

	/** `littleEndian` defaults to the host's: the kernel writes records in host byte order. */
	constructor(memory: ArrayBuffer, tasks = new TaskTable(), littleEndian = hostLittleEndian) {
		this.#view = new DataView(memory);
		this.#bytes = Buffer.from(memory);
		this.#little = littleEndian;
		this.tasks = tasks;
	}

	/**
	 * Decodes the record of `length` bytes at byte `offset`: an event, or undefined for a task record
	 * (taken into `tasks`). Never throws for offsets inside the region.
	 */
	decode(offset: number, length: number): TwtEvent | DecodeFailure | undefined {
		// Reads the fields itself rather than copying them out of at()'s view: through the getters a
		// decode cost a third more (bench/decode.ts), and trace decodes every event. The two are held
		// to the same result field by field by test/unit/decode.test.ts.
		if (length < EVENT_SIZE) return { reason: 'short', length };
		const v = this.#view;
		const le = this.#little;
		const kindValue = v.getUint8(offset + F.kind.offset);
		if (kindValue === EventKind.TASK) {
			this.#takeTask(offset);
			return undefined;
		}
		const kind = kindName(kindValue);
		if (!kind) return { reason: 'unknown-kind', length, kind: kindValue };
		const family = v.getUint16(offset + F.family.offset, le) === AF_INET6 ? 6 : 4;
		const owner = this.tasks.get(v.getUint32(offset + F.owner.offset, le));
		const closer = this.tasks.get(v.getUint32(offset + F.closer.offset, le));
		return {
			kind,
			tsUs: this.#u64(offset + F.ts_us.offset),
			cookie: this.#u64(offset + F.cookie.offset),
			cgroupId: this.#u64(offset + F.cgroup_id.offset),
			lifetimeUs: this.#u64(offset + F.lifetime_us.offset),
			family,
			saddr: this.#address(this.#saddr, offset + F.saddr.offset, family),
			daddr: this.#address(this.#daddr, offset + F.daddr.offset, family),
			sport: v.getUint16(offset + F.sport.offset, le),
			dport: v.getUint16(offset + F.dport.offset, le),
			netns: v.getUint32(offset + F.netns.offset, le),
			pid: owner.pid,
			tid: owner.tid,
			uid: owner.uid,
			comm: owner.comm,
			ownerSource: OWNER_SOURCE_NAMES[v.getUint8(offset + F.owner_source.offset)] ?? 'none',
			closerPid: closer.pid,
			closerTid: closer.tid,
			closerUid: closer.uid,
			closerComm: closer.comm,
			err: v.getInt32(offset + F.err.offset, le),
			side: SIDE_NAMES[v.getUint8(offset + F.side.offset)] ?? 'unknown',
			substate: v.getUint8(offset + F.substate.offset),
			oldState: v.getUint8(offset + F.oldstate.offset),
			newState: v.getUint8(offset + F.newstate.offset),
			recovered: (v.getUint8(offset + F.flags.offset) & EventFlag.RECOVERED) !== 0,
			twSlackMs: v.getUint16(offset + F.tw_slack_ms.offset, le),
		};
	}

	#u64(at: number): number {
		return readU64(this.#view, at, this.#little);
	}

	/**
	 * The record at `offset` as a reused TwtEvent that reads its fields from memory when asked: no
	 * object per event (top and serve ingest millions). Valid until the next at() call and only while
	 * the memory holds the record: consumers must not keep it. undefined for a task record (taken
	 * into `tasks`), a DecodeFailure as decode() gives.
	 */
	at(offset: number, length: number): TwtEvent | DecodeFailure | undefined {
		if (length < EVENT_SIZE) return { reason: 'short', length };
		const kindValue = this.#view.getUint8(offset + F.kind.offset);
		if (kindValue === EventKind.TASK) {
			this.#takeTask(offset);
			return undefined;
		}
		const kind = kindName(kindValue);
		if (!kind) return { reason: 'unknown-kind', length, kind: kindValue };
		const c = (this.#cursor ??= new EventCursor(this.#view, this.#little, (at, family, which) => this.#address(which === 'saddr' ? this.#saddr : this.#daddr, at, family)));
		c.move(offset, kind, this.tasks.get(this.#view.getUint32(offset + F.owner.offset, this.#little)), this.tasks.get(this.#view.getUint32(offset + F.closer.offset, this.#little)));
		return c;
	}

	#cursor: EventCursor | undefined;

	#takeTask(at: number): void {
		const v = this.#view;
		const le = this.#little;
		const b = this.#bytes;
		const commAt = at + T.comm.offset;
		let end = commAt;
		while (end < commAt + T.comm.size && b[end] !== 0) end++;
		this.tasks.set(v.getUint32(at + T.id.offset, le), {
			pid: v.getUint32(at + T.pid.offset, le),
			tid: v.getUint32(at + T.tid.offset, le),
			uid: v.getUint32(at + T.uid.offset, le),
			comm: b.toString('utf8', commAt, end),
		});
	}

	#address(memo: StringMemo, at: number, family: 4 | 6): string {
		const words = family === 4 ? 1 : 4;
		if (memo.matches(this.#view, at, words)) return memo.value;
		return memo.remember(this.#view, at, words, formatAddress(this.#bytes, at, family));
	}
}

/** A TwtEvent over ring or capture memory, moved from record to record (Decoder.at). */
class EventCursor implements TwtEvent {
	kind: EventKindName = 'connect';
	#at = 0;
	#owner: TaskInfo = NO_TASK;
	#closer: TaskInfo = NO_TASK;
	readonly #v: DataView;
	readonly #le: boolean;
	readonly #address: (at: number, family: 4 | 6, which: 'saddr' | 'daddr') => string;

	constructor(v: DataView, le: boolean, address: (at: number, family: 4 | 6, which: 'saddr' | 'daddr') => string) {
		this.#v = v;
		this.#le = le;
		this.#address = address;
	}

	move(at: number, kind: EventKindName, owner: TaskInfo, closer: TaskInfo): void {
		this.#at = at;
		this.kind = kind;
		this.#owner = owner;
		this.#closer = closer;
	}

	get tsUs(): number { return readU64(this.#v, this.#at + F.ts_us.offset, this.#le); }
	get cookie(): number { return readU64(this.#v, this.#at + F.cookie.offset, this.#le); }
	get cgroupId(): number { return readU64(this.#v, this.#at + F.cgroup_id.offset, this.#le); }
	get lifetimeUs(): number { return readU64(this.#v, this.#at + F.lifetime_us.offset, this.#le); }
	get family(): 4 | 6 { return this.#v.getUint16(this.#at + F.family.offset, this.#le) === AF_INET6 ? 6 : 4; }
	get saddr(): string { return this.#address(this.#at + F.saddr.offset, this.family, 'saddr'); }
	get daddr(): string { return this.#address(this.#at + F.daddr.offset, this.family, 'daddr'); }
	get sport(): number { return this.#v.getUint16(this.#at + F.sport.offset, this.#le); }
	get dport(): number { return this.#v.getUint16(this.#at + F.dport.offset, this.#le); }
	get netns(): number { return this.#v.getUint32(this.#at + F.netns.offset, this.#le); }
	get pid(): number { return this.#owner.pid; }
	get tid(): number { return this.#owner.tid; }
	get uid(): number { return this.#owner.uid; }
	get comm(): string { return this.#owner.comm; }
	get ownerSource(): OwnerSourceName { return OWNER_SOURCE_NAMES[this.#v.getUint8(this.#at + F.owner_source.offset)] ?? 'none'; }
	get closerPid(): number { return this.#closer.pid; }
	get closerTid(): number { return this.#closer.tid; }
	get closerUid(): number { return this.#closer.uid; }
	get closerComm(): string { return this.#closer.comm; }
	get err(): number { return this.#v.getInt32(this.#at + F.err.offset, this.#le); }
	get side(): SideName { return SIDE_NAMES[this.#v.getUint8(this.#at + F.side.offset)] ?? 'unknown'; }
	get substate(): number { return this.#v.getUint8(this.#at + F.substate.offset); }
	get oldState(): number { return this.#v.getUint8(this.#at + F.oldstate.offset); }
	get newState(): number { return this.#v.getUint8(this.#at + F.newstate.offset); }
	get recovered(): boolean { return (this.#v.getUint8(this.#at + F.flags.offset) & EventFlag.RECOVERED) !== 0; }
	get twSlackMs(): number { return this.#v.getUint16(this.#at + F.tw_slack_ms.offset, this.#le); }
}

/** The last string decoded for one field, with the (up to four) 32-bit words it came from. */
class StringMemo {
	value = '';
	#words = 0;
	#w0 = 0;
	#w1 = 0;
	#w2 = 0;
	#w3 = 0;

	matches(v: DataView, at: number, words: number): boolean {
		// Byte order does not matter for an equality test, so read the host's.
		return words === this.#words && v.getInt32(at, true) === this.#w0 &&
			(words === 1 || (v.getInt32(at + 4, true) === this.#w1 && v.getInt32(at + 8, true) === this.#w2 && v.getInt32(at + 12, true) === this.#w3));
	}

	remember(v: DataView, at: number, words: number, value: string): string {
		this.#words = words;
		this.#w0 = v.getInt32(at, true);
		this.#w1 = words > 1 ? v.getInt32(at + 4, true) : 0;
		this.#w2 = words > 1 ? v.getInt32(at + 8, true) : 0;
		this.#w3 = words > 1 ? v.getInt32(at + 12, true) : 0;
		this.value = value;
		return value;
	}
}

/** u64 as a number: exact below 2^53 (timestamps in µs, cookies, cgroup ids all stay far below). */
export function readU64(v: DataView, at: number, little: boolean): number {
	const lo = v.getUint32(at + (little ? 0 : 4), little);
	const hi = v.getUint32(at + (little ? 4 : 0), little);
	return hi * 0x1_0000_0000 + lo;
}

/** The 16-byte address field at `at` as text: dotted IPv4 (first 4 bytes) or RFC 5952 IPv6. */
export function formatAddress(b: Uint8Array, at: number, family: 4 | 6): string {
	return family === 4 ? `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}` : formatIpv6(b.subarray(at, at + 16));
}

export function isDecodeFailure(r: TwtEvent | DecodeFailure): r is DecodeFailure {
	return 'reason' in r;
}

/** RFC 5952 text form: lowercase, longest run of two or more zero groups as "::", v4-mapped as ::ffff:a.b.c.d. */
export function formatIpv6(bytes: Uint8Array): string {
	const groups: number[] = [];
	for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
	if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
		return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
	}
	let bestStart = -1;
	let bestLen = 1;
	for (let i = 0; i < 8;) {
		if (groups[i] !== 0) { i++; continue; }
		let j = i;
		while (j < 8 && groups[j] === 0) j++;
		if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
		i = j;
	}
	const hex = groups.map((g) => g.toString(16));
	if (bestStart < 0) return hex.join(':');
	return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
