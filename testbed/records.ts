/** Builds records by hand, from the generated layout, for decoder, ring, walk and pipeline tests: events, task records, walked sockets. */
import { EVENT_FIELDS as F, EVENT_SIZE, EventKind, SOCK_FIELDS, SOCK_SIZE, TASK_FIELDS as T } from '../src/event/layout.generated.js';

export interface RawRecord {
	kind: number;
	tsUs?: bigint;
	cookie?: bigint;
	cgroupId?: bigint;
	lifetimeUs?: bigint;
	family?: number;
	saddr?: number[];
	daddr?: number[];
	sport?: number;
	dport?: number;
	netns?: number;
	/** Task ids (struct twt_task): 0, none. */
	owner?: number;
	closer?: number;
	err?: number;
	side?: number;
	ownerSource?: number;
	substate?: number;
	oldState?: number;
	newState?: number;
	flags?: number;
	twSlackMs?: number;
}

export interface RawTask {
	id: number;
	pid: number;
	tid?: number;
	uid?: number;
	comm: string;
	tsUs?: bigint;
}

/** Writes the event `r` at `offset` of `view` in the given byte order. */
export function writeRecord(view: DataView, offset: number, r: RawRecord, littleEndian = true): void {
	const le = littleEndian;
	const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, EVENT_SIZE);
	bytes.fill(0);
	view.setUint8(offset + F.kind.offset, r.kind);
	view.setBigUint64(offset + F.ts_us.offset, r.tsUs ?? 0n, le);
	view.setBigUint64(offset + F.cookie.offset, r.cookie ?? 0n, le);
	view.setBigUint64(offset + F.cgroup_id.offset, r.cgroupId ?? 0n, le);
	view.setBigUint64(offset + F.lifetime_us.offset, r.lifetimeUs ?? 0n, le);
	bytes.set(r.saddr ?? [], F.saddr.offset);
	bytes.set(r.daddr ?? [], F.daddr.offset);
	view.setUint32(offset + F.netns.offset, r.netns ?? 0, le);
	view.setUint32(offset + F.owner.offset, r.owner ?? 0, le);
	view.setUint32(offset + F.closer.offset, r.closer ?? 0, le);
	view.setInt32(offset + F.err.offset, r.err ?? 0, le);
	view.setUint16(offset + F.sport.offset, r.sport ?? 0, le);
	view.setUint16(offset + F.dport.offset, r.dport ?? 0, le);
	view.setUint16(offset + F.family.offset, r.family ?? 2, le);
	view.setUint16(offset + F.tw_slack_ms.offset, r.twSlackMs ?? 0, le);
	view.setUint8(offset + F.side.offset, r.side ?? 0);
	view.setUint8(offset + F.owner_source.offset, r.ownerSource ?? 0);
	view.setUint8(offset + F.substate.offset, r.substate ?? 0);
	view.setUint8(offset + F.oldstate.offset, r.oldState ?? 0);
	view.setUint8(offset + F.newstate.offset, r.newState ?? 0);
	view.setUint8(offset + F.flags.offset, r.flags ?? 0);
}

/** Writes the task record `t` at `offset` of `view`. */
export function writeTask(view: DataView, offset: number, t: RawTask, littleEndian = true): void {
	const le = littleEndian;
	const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, EVENT_SIZE);
	bytes.fill(0);
	view.setUint8(offset + T.kind.offset, EventKind.TASK);
	view.setUint32(offset + T.id.offset, t.id, le);
	view.setBigUint64(offset + T.ts_us.offset, t.tsUs ?? 0n, le);
	view.setUint32(offset + T.pid.offset, t.pid, le);
	view.setUint32(offset + T.tid.offset, t.tid ?? t.pid, le);
	view.setUint32(offset + T.uid.offset, t.uid ?? 0, le);
	bytes.set(new TextEncoder().encode(t.comm.slice(0, 16)), T.comm.offset);
}

/** Records, each EVENT_SIZE bytes, in one buffer: tasks and events in the order given. */
export function recordsBuffer(records: readonly (RawRecord | RawTask)[], littleEndian = true): ArrayBuffer {
	const buf = new ArrayBuffer(EVENT_SIZE * records.length);
	const view = new DataView(buf);
	records.forEach((r, i) => ('kind' in r ? writeRecord(view, i * EVENT_SIZE, r, littleEndian) : writeTask(view, i * EVENT_SIZE, r, littleEndian)));
	return buf;
}

/** One event alone (its owner and closer ids refer to no task record). */
export function recordBuffer(r: RawRecord, littleEndian = true): ArrayBuffer {
	return recordsBuffer([r], littleEndian);
}

/** One struct twt_sock, as an iter/tcp walk writes it: a TIME_WAIT socket unless `state` says otherwise. */
export function sockRecord(s: { cookie: number; sport: number; netns?: number; saddr?: number[]; daddr?: number[]; dport?: number; state?: number; substate?: number; expiresUs?: number }): Buffer {
	const b = Buffer.alloc(SOCK_SIZE);
	b.writeBigUInt64LE(BigInt(s.cookie), SOCK_FIELDS.cookie.offset);
	b.writeBigUInt64LE(BigInt(s.expiresUs ?? 0), SOCK_FIELDS.expires_us.offset);
	b.writeUInt32LE(s.netns ?? 1, SOCK_FIELDS.netns.offset);
	b.writeUInt16LE(2, SOCK_FIELDS.family.offset); // AF_INET
	b.set(s.saddr ?? [10, 200, 0, 1], SOCK_FIELDS.saddr.offset);
	b.set(s.daddr ?? [10, 200, 0, 2], SOCK_FIELDS.daddr.offset);
	b.writeUInt16LE(s.sport, SOCK_FIELDS.sport.offset);
	b.writeUInt16LE(s.dport ?? 7000, SOCK_FIELDS.dport.offset);
	b.writeUInt8(s.state ?? 6, SOCK_FIELDS.state.offset);
	b.writeUInt8(s.state === undefined || s.state === 6 ? s.substate ?? 6 : 0, SOCK_FIELDS.substate.offset);
	return b;
}
