/**
 * The capture file format (`twtrace record`), version 1. Everything a replay needs and nothing it
 * has to guess: the raw event records as the BPF program wrote them, every socket walk, and a
 * header that names the host, the kernel, the clock and the layout.
 *
 *   file    = magic(8) version(u16) flags(u16) headerBytes(u32) headerCrc32(u32) header(JSON, UTF-8)
 *             frame*
 *   frame   = type(u8) reserved(3) payloadBytes(u32) payloadCrc32(u32) payload
 *   EVENTS  = struct twt_event records (EVENT_SIZE each)
 *   WALK    = metaBytes(u32) meta(JSON: netns, takenAtUs, settings, listeners[, removed][, timeWaitOmitted][, timeWaitCounted][, openOnly]) [removed cookies(u64 each)]
 *             struct twt_sock records. With `removed` in meta (version 4), a change against the
 *             namespace's previous walk: the cookies gone, then the records new or changed
 *             (walk-table.ts); without, the whole table. With `timeWaitOmitted` (version 5), the
 *             table without its timewait sockets, which a capture of counts has counted. Version 6:
 *             struct twt_sock's slack_us (padding before, 0), so that a timer dates its socket's entry.
 *             With `timeWaitCounted` (version 7), the kernel left out the timewait sockets armed since
 *             counting began (their number): those armed before are in the table. With `openOnly`, an
 *             open-socket walk: the sockets processes held and the closes in flight, no timewait
 *             socket visited, `timeWaitCounted` the kernel's count of them. A reader that ignores it
 *             replays the same: such walks come only once a walk of the table left the namespace no
 *             timewait socket of its own (pipeline/open-walks.ts), so the removal a walk makes finds
 *             nothing to remove (version 8 still).
 *   COUNTS  = atUs(f64) keys(u32) encoding(u32) key(struct twt_count_key)* values
 *             (version 5): the kernel's counters' differences since the reading before, per key that
 *             changed, read at atUs (the agent's flight recorder keeps these instead of the records
 *             the kernel counted: docs/counting-in-the-kernel.md, step 3), in struct twt_count order.
 *             Values as float64s (encoding 0, versions 5 and 6), or from version 7 only the columns
 *             that moved, as varints (encoding 1): counts-frame.ts. From version 8, keys named by
 *             ids (encoding 2) that a KEYS frame before defines. A capture with such frames names
 *             the counters' layout in its header (countLayout).
 *   KEYS    = (id(u32) key(struct twt_count_key))* (version 8): the keys later counts frames name by id.
 *   END     = JSON trailer: why recording stopped, totals and losses. Missing: the file was cut short.
 *
 * Framing integers are little-endian. Records are in the recording host's byte order (header
 * byteOrder); a replay on a host of the other order is refused. Each payload carries a CRC-32, so
 * a flipped bit is an error and not a plausible, wrong report.
 *
 * A change to struct twt_event or struct twt_sock must raise CAPTURE_VERSION: the layout test
 * compares LAYOUT_FINGERPRINT with the generated layout for that reason.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import { crc32 } from 'node:zlib';
import { COUNT_FIELDS, COUNT_KEY_FIELDS, COUNT_KEY_SIZE, COUNT_SIZE, EVENT_FIELDS, EVENT_SIZE, SOCK_FIELDS, SOCK_SIZE, TASK_FIELDS, TASK_SIZE } from '../event/layout.generated.js';
import { parsePortList, portListText, type NetnsSettings } from '../facts/netns-settings.js';
import type { WalkRecord } from '../event/walk-record.js';
import type { WheelClock } from '../event/clock.js';
import { encodeCookies, WalkTable, type WalkDelta } from './walk-table.js';
import { encodeCountsPayload, encodeKeysPayload } from './counts-frame.js';

export { CaptureError } from './format-error.js';
export { COUNTS_ENTRY_BYTES, COUNTS_HEAD_BYTES } from './counts-frame.js';

/** PNG-style: a high byte, the name, CR LF, ^Z, LF: text-mode transfers and `type` are caught. */
export const MAGIC = Buffer.from([0x89, 0x54, 0x57, 0x54, 0x0d, 0x0a, 0x1a, 0x0a]);
export const CAPTURE_VERSION = 8;
/**
 * The record layouts version CAPTURE_VERSION was written with: a digest of every field's offset and
 * size (layoutFingerprint()). The layout test fails when they differ: raise CAPTURE_VERSION, then
 * set this to the new digest.
 */
export const LAYOUT_FINGERPRINT = '5765ce71efed6426';
/**
 * Earlier layouts a reader still takes, and why each reads right: the same offsets and sizes, a
 * field named since where there was padding (written as 0, which the new field reads as unknown).
 */
export const READABLE_LAYOUTS: Readonly<Record<string, string>> = {
	f15c04c86ccae1fa: 'versions 1 to 5: struct twt_sock\'s slack_us was padding (0: the wheel\'s slack not known)',
};
/**
 * Counters' layouts of earlier versions that this one reads (countLayout in the header), by how many
 * of today's columns (struct twt_count's u64s, in order) their rows hold: each added its column last,
 * so a row reads into the first ones and the rest stay 0.
 */
export const READABLE_COUNT_LAYOUTS: Readonly<Record<string, { columns: number; note: string }>> = {
	f52d7bedbe8e9151: { columns: 20, note: 'before time_wait_odd: their TIME_WAIT entries are spread over a reading\'s second (model/wheel.ts)' },
};
export const PREAMBLE_BYTES = 20;
export const FRAME_HEADER_BYTES = 12;
/** Bounds a reader accepts before allocating: a corrupt length must not ask for gigabytes. */
export const MAX_HEADER_BYTES = 1 << 20;
export const MAX_FRAME_BYTES = 256 << 20;

export const FrameType = { events: 1, walk: 2, end: 3, counts: 4, keys: 5 } as const;
export type FrameTypeName = keyof typeof FrameType;

export interface CaptureHeader {
	format: 'twtrace-capture';
	version: number;
	tool: string;
	host: { hostname: string; kernel: string; arch: string; byteOrder: 'LE' | 'BE' };
	/** ISO 8601, wall clock, when recording started. */
	startedAt: string;
	/** CLOCK_MONOTONIC µs at start, and wall-clock µs minus CLOCK_MONOTONIC µs (event ts → time of day). */
	clock: { startUs: number; epochOffsetUs: number };
	/** layoutFingerprint() of the recording twtrace. */
	layout: string;
	eventSize: number;
	sockSize: number;
	/** The filters the recording ran with (as given: an incomplete capture of the host is not mistaken for all of it). */
	filters: { pid?: number; comm?: string; port?: number; netns: number[]; family?: 4 | 6 };
	walkIntervalMs: number;
	/** Per network namespace walked at start: its sysctls, as the report's advice reads them. */
	namespaces: { netns: number; settings: SettingsJson }[];
	/** countLayoutFingerprint() of the recording twtrace, when the capture holds counts frames (version 5). */
	countLayout?: string;
	/**
	 * With countLayout: from when (CLOCK_MONOTONIC µs) its counts frames count every TIME_WAIT entry.
	 * Frames before clock.startUs are the window's history: the entries still held at its start.
	 */
	countsFromUs?: number;
	/**
	 * With countLayout: the kernel's timer-wheel clock (event/clock.ts), where it was known: a replay
	 * ends counted TIME_WAIT entries in the wheel's buckets, as the live model did (model/wheel.ts).
	 */
	wheel?: WheelClock;
}

export interface CaptureTrailer {
	/** CLOCK_MONOTONIC µs when recording stopped. */
	endUs: number;
	/** duration, interrupted (Ctrl-C), terminated (SIGTERM), max-size, stdout closed, … */
	reason: string;
	events: number;
	walks: number;
	/** As written; a reader takes whatever it holds through readDrops(). */
	drops: CaptureDrops;
	/** cgroup id → path, for the cgroups seen, resolved while they still existed. */
	cgroups?: Record<string, string>;
}

/** The loss and witness counters a capture's end frame keeps (the recording session's summary). */
export interface CaptureDrops {
	ringFull: number;
	mapFull: number;
	missedRuns: number;
	ownerMissing: number;
	decodeErrors: number;
	/** time_wait events the kernel never reported that walks delivered (recorded, flagged recovered). */
	walkMissed: number;
	/** Active closes the closing map could not take. */
	unwitnessed: number;
}

export const DROP_NAMES: readonly (keyof CaptureDrops)[] = ['ringFull', 'mapFull', 'missedRuns', 'ownerMissing', 'decodeErrors', 'walkMissed', 'unwitnessed'];

/** Just the counters a capture keeps, out of a session summary. */
export function captureDrops(s: CaptureDrops): CaptureDrops {
	return Object.fromEntries(DROP_NAMES.map((name) => [name, s[name]])) as unknown as CaptureDrops;
}

/**
 * The counters of an end frame, whatever it holds: a value that is not a count (negative, a
 * fraction, text, missing) is 0 here and named in `unreadable`, so the capture stays readable and
 * its report says which losses are unknown. Pure.
 */
export function readDrops(raw: unknown): { drops: CaptureDrops; unreadable: string[] } {
	const obj = typeof raw === 'object' && raw !== null ? raw as Record<string, unknown> : {};
	const drops = {} as CaptureDrops;
	const unreadable: string[] = [];
	for (const name of DROP_NAMES) {
		const v = obj[name];
		const isCount = typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
		drops[name] = isCount ? v : 0;
		if (!isCount) unreadable.push(`${name} ${JSON.stringify(v) ?? 'missing'}`);
	}
	return { drops, unreadable };
}

/** NetnsSettings as JSON: the reserved ports as the kernel prints them, not as a set. */
export type SettingsJson = Omit<NetnsSettings, 'reservedPorts'> & { reservedPorts: string };

export function settingsToJson(s: NetnsSettings): SettingsJson {
	return { ...s, reservedPorts: portListText(s.reservedPorts) };
}

export function settingsFromJson(j: SettingsJson): NetnsSettings {
	return { ...j, reservedPorts: parsePortList(j.reservedPorts) };
}

/** The header of a capture this twtrace writes (record, and the agent's flight recorder). */
export function captureHeader(o: Pick<CaptureHeader, 'startedAt' | 'clock' | 'filters' | 'walkIntervalMs' | 'namespaces'>): CaptureHeader {
	return {
		format: 'twtrace-capture',
		version: CAPTURE_VERSION,
		tool: `twtrace ${process.env.npm_package_version ?? '0.1.0'}`,
		host: { hostname: os.hostname(), kernel: os.release(), arch: os.arch(), byteOrder: os.endianness() },
		startedAt: o.startedAt,
		clock: o.clock,
		layout: layoutFingerprint(),
		eventSize: EVENT_SIZE,
		sockSize: SOCK_SIZE,
		filters: o.filters,
		walkIntervalMs: o.walkIntervalMs,
		namespaces: o.namespaces,
	};
}

export function encodePreamble(header: CaptureHeader): Buffer {
	const json = Buffer.from(JSON.stringify(header), 'utf8');
	const pre = Buffer.alloc(PREAMBLE_BYTES);
	MAGIC.copy(pre, 0);
	pre.writeUInt16LE(CAPTURE_VERSION, 8);
	pre.writeUInt16LE(0, 10);
	pre.writeUInt32LE(json.length, 12);
	pre.writeUInt32LE(crc32(json), 16);
	return Buffer.concat([pre, json]);
}

export function encodeFrame(type: FrameTypeName, payload: Uint8Array | readonly Uint8Array[]): Buffer {
	const parts = payload instanceof Uint8Array ? [payload] : payload;
	const length = parts.reduce((n, p) => n + p.byteLength, 0);
	let crc = 0;
	// zlib.crc32(empty, crc) returns 0, not crc (Node 20.20): empty parts are skipped.
	for (const p of parts) if (p.byteLength > 0) crc = crc32(p, crc);
	const head = Buffer.alloc(FRAME_HEADER_BYTES);
	head.writeUInt8(FrameType[type], 0);
	head.writeUInt32LE(length, 4);
	head.writeUInt32LE(crc, 8);
	return Buffer.concat([head, ...parts]);
}

/** A walk frame: the whole table, or with `delta` the change against the namespace's previous walk. */
export function encodeWalk(walk: Omit<WalkRecord, 'sockets'> & { sockets?: Uint8Array }, delta?: WalkDelta): Buffer {
	const meta = Buffer.from(JSON.stringify({
		netns: walk.netns, takenAtUs: walk.takenAtUs, settings: settingsToJson(walk.settings), listeners: walk.listeners,
		...(delta ? { removed: delta.removed.length } : {}),
		...(walk.timeWaitOmitted !== undefined ? { timeWaitOmitted: walk.timeWaitOmitted } : {}),
		...(walk.timeWaitCounted !== undefined ? { timeWaitCounted: walk.timeWaitCounted } : {}),
		...(walk.openOnly ? { openOnly: true } : {}),
	}), 'utf8');
	const len = Buffer.alloc(4);
	len.writeUInt32LE(meta.length, 0);
	return encodeFrame('walk', delta ? [len, meta, encodeCookies(delta.removed), delta.upserts.records] : [len, meta, walk.sockets ?? new Uint8Array()]);
}

/**
 * Encodes each namespace's walks as changes against its previous one, or whole when there is none
 * or when most of the table changed (a delta would then be as large). One per stream written.
 */
export class WalkEncoder {
	readonly #tables = new Map<number, WalkTable>();

	/** The frame for `walk`; `table`: its records by cookie, `delta` when the frame holds one. */
	encode(walk: WalkRecord): { frame: Buffer; table: WalkTable; delta: WalkDelta | undefined } {
		const table = WalkTable.fromRecords(walk.sockets);
		const previous = this.#tables.get(walk.netns);
		this.#tables.set(walk.netns, table);
		const delta = previous?.diff(table);
		const useDelta = delta !== undefined && delta.removed.length * 8 + delta.upserts.records.length < walk.sockets.byteLength / 2;
		return { frame: encodeWalk(walk, useDelta ? delta : undefined), table, delta: useDelta ? delta : undefined };
	}
}

/**
 * A counts frame: `keys` (COUNT_KEY_SIZE bytes each, as read from the kernel) and their differences
 * (`values`, COUNT_SIZE / 8 numbers each), read at `atUs` (counts-frame.ts: only the columns that
 * moved; with `ids`, the keys named by the ids a keys frame defines).
 */
export function encodeCounts(atUs: number, keys: Uint8Array, values: Float64Array, ids?: ArrayLike<number>): Buffer {
	return encodeFrame('counts', encodeCountsPayload(atUs, keys, values, ids));
}

/** A keys frame: the ids later counts frames name their keys by. */
export function encodeKeys(entries: readonly (readonly [id: number, key: Uint8Array])[]): Buffer {
	return encodeFrame('keys', encodeKeysPayload(entries));
}

export function encodeEnd(trailer: CaptureTrailer): Buffer {
	return encodeFrame('end', Buffer.from(JSON.stringify(trailer), 'utf8'));
}

/** A digest of the counters' layout (struct twt_count_key, struct twt_count) that counts frames carry. */
export function countLayoutFingerprint(): string {
	const text = JSON.stringify({ COUNT_KEY_SIZE, COUNT_KEY_FIELDS, COUNT_SIZE, COUNT_FIELDS });
	return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** A digest of the record layouts this build writes and reads (sizes, field names, offsets, sizes). */
export function layoutFingerprint(): string {
	const text = JSON.stringify({ EVENT_SIZE, EVENT_FIELDS, TASK_SIZE, TASK_FIELDS, SOCK_SIZE, SOCK_FIELDS });
	return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

