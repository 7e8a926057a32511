/** Builds `struct twt_event` records by hand, from the generated layout, for decoder and ring tests. */
import { EVENT_FIELDS as F, EVENT_SIZE } from '../../src/event/layout.generated.js';

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
	pid?: number;
	tid?: number;
	uid?: number;
	closerPid?: number;
	closerTid?: number;
	closerUid?: number;
	err?: number;
	side?: number;
	ownerSource?: number;
	substate?: number;
	oldState?: number;
	newState?: number;
	comm?: string;
	closerComm?: string;
	flags?: number;
	twSlackMs?: number;
}

/** Writes `r` at `offset` of `view` in the given byte order. */
export function writeRecord(view: DataView, offset: number, r: RawRecord, littleEndian = true): void {
	const le = littleEndian;
	const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, EVENT_SIZE);
	bytes.fill(0);
	view.setBigUint64(offset + F.ts_us.offset, r.tsUs ?? 0n, le);
	view.setBigUint64(offset + F.cookie.offset, r.cookie ?? 0n, le);
	view.setBigUint64(offset + F.cgroup_id.offset, r.cgroupId ?? 0n, le);
	view.setBigUint64(offset + F.lifetime_us.offset, r.lifetimeUs ?? 0n, le);
	bytes.set(r.saddr ?? [], F.saddr.offset);
	bytes.set(r.daddr ?? [], F.daddr.offset);
	view.setUint32(offset + F.netns.offset, r.netns ?? 0, le);
	view.setUint32(offset + F.pid.offset, r.pid ?? 0, le);
	view.setUint32(offset + F.tid.offset, r.tid ?? 0, le);
	view.setUint32(offset + F.uid.offset, r.uid ?? 0, le);
	view.setUint32(offset + F.closer_pid.offset, r.closerPid ?? 0, le);
	view.setUint32(offset + F.closer_tid.offset, r.closerTid ?? 0, le);
	view.setUint32(offset + F.closer_uid.offset, r.closerUid ?? 0, le);
	view.setInt32(offset + F.err.offset, r.err ?? 0, le);
	view.setUint16(offset + F.sport.offset, r.sport ?? 0, le);
	view.setUint16(offset + F.dport.offset, r.dport ?? 0, le);
	view.setUint16(offset + F.family.offset, r.family ?? 2, le);
	view.setUint8(offset + F.kind.offset, r.kind);
	view.setUint8(offset + F.side.offset, r.side ?? 0);
	view.setUint8(offset + F.owner_source.offset, r.ownerSource ?? 0);
	view.setUint8(offset + F.substate.offset, r.substate ?? 0);
	view.setUint8(offset + F.oldstate.offset, r.oldState ?? 0);
	view.setUint8(offset + F.newstate.offset, r.newState ?? 0);
	view.setUint8(offset + F.flags.offset, r.flags ?? 0);
	view.setUint16(offset + F.tw_slack_ms.offset, r.twSlackMs ?? 0, le);
	bytes.set(new TextEncoder().encode((r.comm ?? '').slice(0, 16)), F.comm.offset);
	bytes.set(new TextEncoder().encode((r.closerComm ?? '').slice(0, 16)), F.closer_comm.offset);
}

export function recordBuffer(r: RawRecord, littleEndian = true): ArrayBuffer {
	const buf = new ArrayBuffer(EVENT_SIZE);
	writeRecord(new DataView(buf), 0, r, littleEndian);
	return buf;
}
