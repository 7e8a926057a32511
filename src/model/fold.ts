/**
 * The kernel's counting, mirrored: folds records (the ring's, a capture's) into the counters the BPF
 * programs keep in `counts` (count_event and count_sock_event in bpf/twtrace.bpf.c), key for key
 * and increment for increment. Counts from a live kernel and from a replayed capture then mean the
 * same thing; test/integration/counts.test.ts holds the two equal on a real run.
 */
import { COUNT_COLUMN, LIFETIME_BOUNDS_US, type CountTable } from '../event/counts.js';
import { COUNT_KEY_FIELDS, COUNT_KEY_SIZE, EVENT_FIELDS, EVENT_SIZE, EventFlag, EventKind, OwnerSource, Side } from '../event/layout.generated.js';
import { HOST_LITTLE_ENDIAN } from '../event/host-order.js';
import { TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT } from '../event/sock.js';
import { EADDRNOTAVAIL } from './victims.js';

const E = EVENT_FIELDS;
const K = COUNT_KEY_FIELDS;

/**
 * Folds every record of `records` (EVENT_SIZE each, host byte order) into `table`. Task records and
 * bind failures are not counted (a bind failure has no socket to key it by: it flows as an event).
 */
export function foldRecords(records: Uint8Array, table: CountTable): void {
	const b = Buffer.from(records.buffer, records.byteOffset, records.byteLength);
	const key = Buffer.alloc(COUNT_KEY_SIZE);
	for (let at = 0; at + EVENT_SIZE <= b.length; at += EVENT_SIZE) {
		const kind = b[at + E.kind.offset]!;
		if (kind < EventKind.CONNECT || kind > EventKind.CONNECT_FAIL) continue;
		keyOf(b, at, key);
		count(table.row(key.toString('hex')), b, at, kind);
	}
}

/** struct twt_count_key of the record at `at`, as count_sock_event builds it from the same values. */
function keyOf(b: Buffer, at: number, key: Buffer): void {
	key.fill(0);
	b.copy(key, K.cgroup_id.offset, at + E.cgroup_id.offset, at + E.cgroup_id.offset + 8);
	b.copy(key, K.saddr.offset, at + E.saddr.offset, at + E.saddr.offset + 16);
	b.copy(key, K.daddr.offset, at + E.daddr.offset, at + E.daddr.offset + 16);
	b.copy(key, K.netns.offset, at + E.netns.offset, at + E.netns.offset + 4);
	b.copy(key, K.family.offset, at + E.family.offset, at + E.family.offset + 2);
	const side = b[at + E.side.offset]!;
	// blamed_id_of(): the owner unless an accepted socket's closer is known (attribution.ts blame()).
	const source = b[at + E.owner_source.offset]!;
	const owned = source !== OwnerSource.NONE && (side === Side.CLIENT || source === OwnerSource.SYSCALL || readU32(b, at + E.closer.offset) === 0);
	const blamed = owned ? E.owner.offset : E.closer.offset;
	b.copy(key, K.blamed.offset, at + blamed, at + blamed + 4);
	// An accepted socket counts under its local address and port, whoever the peer (set_key_side).
	const port = side === Side.SERVER ? E.sport.offset : E.dport.offset;
	b.copy(key, K.port.offset, at + port, at + port + 2);
	if (side === Side.SERVER) key.fill(0, K.daddr.offset, K.daddr.offset + 16); // per service, not per peer
	key[K.side.offset] = side;
}

/**
 * count_event's increments for one record. The kernel counts a connection at its start (count_start),
 * for which no record is made; every start ends in exactly one transition out of SYN_SENT (a connect
 * or connect_fail record) or SYN_RECV (an accept, a reset, or an active_close of a child closed before
 * its handshake ended), so those records count the connection here. A connection that started before
 * the kernel counted, or still in its handshake, is where the two differ.
 */
function count(row: Float64Array, b: Buffer, at: number, kind: number): void {
	const C = COUNT_COLUMN;
	const oldState = b[at + E.oldstate.offset];
	if (oldState === TCP_SYN_SENT || oldState === TCP_SYN_RECV) row[C.connections]!++;
	switch (kind) {
		case EventKind.CONNECT_FAIL:
			row[C.connectFails]!++;
			if (readS32(b, at + E.err.offset) === EADDRNOTAVAIL) row[C.addrNotAvail]!++;
			return;
		case EventKind.TIME_WAIT: {
			// The record says which of the wheel's buckets the kernel counted it into (time_wait_timer()).
			const timeWait = b[at + E.substate.offset] === TCP_TIME_WAIT;
			row[timeWait ? C.timeWait : C.finWait2]!++;
			if (b[at + E.flags.offset]! & EventFlag.ODD_BUCKET) row[timeWait ? C.timeWaitOdd : C.finWait2Odd]!++;
			break;
		}
		case EventKind.RESET:
			row[C.resets]!++;
			break;
		default:
			return;
	}
	const lifetimeUs = Number(HOST_LITTLE_ENDIAN ? b.readBigUInt64LE(at + E.lifetime_us.offset) : b.readBigUInt64BE(at + E.lifetime_us.offset));
	if (lifetimeUs === 0) return;
	row[C.lifetimeSumUs]! += lifetimeUs;
	row[C.lifetimeCount]!++;
	const bucket = LIFETIME_BOUNDS_US.findIndex((bound) => lifetimeUs <= bound);
	if (bucket >= 0) row[C.lifetime + bucket]!++;
}

function readU32(b: Buffer, at: number): number {
	return HOST_LITTLE_ENDIAN ? b.readUInt32LE(at) : b.readUInt32BE(at);
}

function readS32(b: Buffer, at: number): number {
	return HOST_LITTLE_ENDIAN ? b.readInt32LE(at) : b.readInt32BE(at);
}
