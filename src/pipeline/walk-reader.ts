/**
 * Reading a socket walk (an iter/tcp iterator) a chunk at a time: each whole struct twt_sock goes to
 * the caller as it is read (a read may end inside one: its tail waits for the next). The kernel's
 * part runs off the main thread where the walk can (OpenedWalk.readAsync), and the event loop gets a
 * turn between chunks too, so that draining, snapshots, scrapes and signals keep their pace during a
 * walk of millions of sockets. Optionally keeps the raw records, up to a bound.
 */
import { SOCK_FIELDS, SOCK_SIZE } from '../event/layout.generated.js';
import { forEachSocket, TCP_TIME_WAIT, WALK_TRAILER_STATE, type SocketEntry } from '../event/sock.js';
import { HOST_LITTLE_ENDIAN } from '../event/host-order.js';
import { WALK_CHUNK_BYTES, type OpenedWalk } from '../tracer/namespaces.js';
import type { ListenerRecord, WalkRecord } from '../event/walk-record.js';

/**
 * Where a walk's wall time went, ms, added up over its chunks: reading the kernel's iterator (its
 * seq_file runs dump_tcp over each socket in the read), draining the ring before each chunk, handling
 * the chunk's sockets. The rest of the wall time the event loop ran other work between chunks.
 */
export interface WalkTime { readMs: number; drainMs: number; handleMs: number }

/** Awaits `f`, adding its wall time to `time.readMs`: a walk's reading done before it is opened (an open-socket walk's processes). The async twin of timed(). */
export async function timedAsync<T>(time: WalkTime, f: () => Promise<T>): Promise<T> {
	const at = performance.now();
	try {
		return await f();
	} finally {
		time.readMs += performance.now() - at;
	}
}

/** Runs `f`, adding its time to `time[key]`: for a walk's work done outside readWalk. */
export function timed<T>(time: WalkTime, key: keyof WalkTime, f: () => T): T {
	const at = performance.now();
	try {
		return f();
	} finally {
		time[key] += performance.now() - at;
	}
}

export interface WalkReading {
	/** Each socket, as a reused view: keep nothing of it. */
	each: (s: SocketEntry) => void;
	/** Before each chunk is handed over (the walk's own events are drained here). */
	beforeChunk?: () => void;
	/** Abandons the walk at its next chunk. */
	shouldStop?: () => boolean;
	/** Keep the raw records, up to this many bytes; past it none are kept (a walk too large to store). */
	keepBytes?: number;
	/**
	 * With keepBytes: false keeps all but the timewait sockets, and counts those (a flight recorder
	 * keeping the kernel's counts has them counted: pipeline/recorder.ts HISTORY_US).
	 */
	keepTimeWait?: boolean;
	/** Adds this walk's time to it. */
	time?: WalkTime;
}

/**
 * A walk read: its records' bytes, the records when kept, what was left out of its timewait sockets,
 * and whether it was an open-socket walk (WalkRecord.openOnly).
 */
export interface WalkRead { bytes: number; kept: Buffer | undefined; timeWaitOmitted?: number; timeWaitCounted?: number; openOnly?: boolean }

/**
 * Reads `w` to its end and closes it. Undefined when abandoned; else the bytes of records read, and
 * the records themselves when asked and within the bound.
 */
export async function readWalk(w: Pick<OpenedWalk, 'read' | 'readAsync' | 'close'>, r: WalkReading): Promise<WalkRead | undefined> {
	let kept: Buffer[] | undefined = r.keepBytes !== undefined ? [] : undefined;
	const keepTimeWait = r.keepTimeWait ?? true;
	let bytes = 0;
	let keptBytes = 0;
	let timeWaitOmitted = 0;
	let timeWaitCounted: number | undefined;
	const buf = Buffer.allocUnsafe(WALK_CHUNK_BYTES);
	let carry: Buffer | undefined;
	try {
		for (;;) {
			if (r.shouldStop?.()) return undefined;
			const readAt = performance.now();
			// Off the main thread where the walk can (the kernel's iterator runs in the read): then readMs is
			// the read's wall time, the event loop's other work during it included.
			const n = w.readAsync ? await w.readAsync(buf) : w.read(buf);
			const drainAt = performance.now();
			if (r.time) r.time.readMs += drainAt - readAt; // the read that finds the end counts too
			if (n === 0) break;
			r.beforeChunk?.();
			const handleAt = performance.now();
			const chunk = carry ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
			let whole = chunk.length - (chunk.length % SOCK_SIZE);
			carry = whole < chunk.length ? Buffer.from(chunk.subarray(whole)) : undefined;
			// The last record of a walk that left counted timewait sockets out says how many (bpf/twtrace.h).
			if (whole > 0 && chunk[whole - SOCK_SIZE + SOCK_FIELDS.state.offset] === WALK_TRAILER_STATE) {
				whole -= SOCK_SIZE;
				timeWaitCounted = Number(HOST_LITTLE_ENDIAN ? chunk.readBigUInt64LE(whole + SOCK_FIELDS.cookie.offset) : chunk.readBigUInt64BE(whole + SOCK_FIELDS.cookie.offset));
			}
			forEachSocket(chunk.subarray(0, whole), r.each);
			bytes += whole;
			if (r.time) {
				r.time.drainMs += handleAt - drainAt;
				r.time.handleMs += performance.now() - handleAt;
			}
			if (kept) {
				const { sockets: copy, timeWaitOmitted: omitted } = keepTimeWait ? { sockets: Buffer.from(chunk.subarray(0, whole)), timeWaitOmitted: 0 } : withoutTimeWait(chunk.subarray(0, whole));
				timeWaitOmitted += omitted;
				keptBytes += copy.length;
				kept.push(copy);
			}
			// Past the bound nothing more is copied, and what was is let go: the walk is kept as omitted.
			if (kept && keptBytes > r.keepBytes!) kept = undefined;
			await new Promise((resolve) => setImmediate(resolve));
		}
	} finally {
		w.close();
	}
	return { bytes, kept: kept ? Buffer.concat(kept) : undefined, ...(keepTimeWait ? {} : { timeWaitOmitted }), ...(timeWaitCounted !== undefined ? { timeWaitCounted } : {}) };
}

/**
 * The walk as it is kept (event/walk-record.ts): the owners of its `listening` ports that twtrace saw
 * listen(), `read`'s records if it kept them, else (`keepRaw`) how many bytes were not kept; what it
 * left out of its timewait sockets, counted.
 */
export function walkRecordOf(w: Pick<OpenedWalk, 'netns' | 'takenAtUs' | 'settings'>, listening: Iterable<number>, listenerOwner: (port: number) => Omit<ListenerRecord, 'port'> | undefined, read: WalkRead, keepRaw: boolean): WalkRecord {
	const listeners: ListenerRecord[] = [];
	for (const port of listening) {
		const owner = listenerOwner(port);
		if (owner) listeners.push({ port, ...owner });
	}
	const omitted = keepRaw && !read.kept ? { omittedBytes: read.bytes } : read.kept && read.timeWaitOmitted !== undefined ? { timeWaitOmitted: read.timeWaitOmitted } : {};
	const counted = read.timeWaitCounted !== undefined ? { timeWaitCounted: read.timeWaitCounted } : {};
	const openOnly = read.openOnly ? { openOnly: true } : {};
	return { netns: w.netns, takenAtUs: w.takenAtUs, settings: w.settings, listeners, sockets: read.kept ?? new Uint8Array(), ...omitted, ...counted, ...openOnly };
}

/** The records of `records` that are not timewait sockets, copied, and how many timewait ones were left out. */
export function withoutTimeWait(records: Uint8Array): { sockets: Buffer; timeWaitOmitted: number } {
	let timeWaitOmitted = 0;
	for (let at = 0; at < records.length; at += SOCK_SIZE) if (records[at + SOCK_FIELDS.state.offset] === TCP_TIME_WAIT) timeWaitOmitted++;
	const sockets = Buffer.allocUnsafe(records.length - timeWaitOmitted * SOCK_SIZE);
	let to = 0;
	for (let at = 0; at < records.length; at += SOCK_SIZE) {
		if (records[at + SOCK_FIELDS.state.offset] === TCP_TIME_WAIT) continue;
		sockets.set(records.subarray(at, at + SOCK_SIZE), to);
		to += SOCK_SIZE;
	}
	return { sockets, timeWaitOmitted };
}
