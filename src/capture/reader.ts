/**
 * Reads a capture back, checking everything before a byte of it reaches the model: magic, version,
 * layout, byte order, header fields, each frame's bounds and checksum, and the trailer. Any
 * failure is a CaptureError naming what is wrong and where; nothing else escapes (the fuzz test
 * holds it to that). A capture without its trailer is cut short: read it only when asked to
 * (`allowPartial`), and then it says so.
 */
import fs from 'node:fs';
import os from 'node:os';
import { EVENT_SIZE, SOCK_SIZE } from '../event/layout.generated.js';
import type { WalkRecord } from '../event/walk-record.js';
import { CAPTURE_VERSION, CaptureError, countLayoutFingerprint, FRAME_HEADER_BYTES, FrameType, layoutFingerprint, MAGIC, READABLE_COUNT_LAYOUTS, READABLE_LAYOUTS, MAX_FRAME_BYTES, MAX_HEADER_BYTES, PREAMBLE_BYTES, settingsFromJson, type CaptureHeader, type CaptureTrailer, type SettingsJson } from './format.js';
import { isCount, parseCountsPayload, parseKeysPayload } from './counts-frame.js';
import { isWheelClock } from '../event/clock.js';
import { crc32 } from 'node:zlib';
import { decodeCookies, WalkTable, type WalkDelta } from './walk-table.js';

export type CaptureItem =
	| { type: 'events'; records: Uint8Array; count: number }
	| { type: 'walk'; walk: WalkRecord }
	/** The kernel's counters' differences read at atUs: `keys` COUNT_KEY_SIZE bytes each, `values` COUNT_SIZE / 8 each. */
	| { type: 'counts'; atUs: number; keys: Buffer; values: Float64Array; count: number };

export interface Capture {
	header: CaptureHeader;
	items: CaptureItem[];
	/** Undefined when the capture was cut short (read with allowPartial). */
	trailer: CaptureTrailer | undefined;
	/** Why it is incomplete, when it is. */
	incomplete: string | undefined;
	bytes: number;
}

export interface ReadOptions {
	/** Accept a capture that ends early (no trailer, or a damaged last frame): keep what is whole. */
	allowPartial?: boolean;
}

const UNUSABLE_HINT = 'The file is not usable as a capture; nothing was read from it.';

/** Reads and checks a capture file; throws CaptureError naming the file. */
export function readCaptureFile(file: string, options: ReadOptions = {}): Capture {
	let data: Buffer;
	try {
		data = fs.readFileSync(file);
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		throw new CaptureError(code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory, not a capture' : (error as Error).message, { source: file, hint: UNUSABLE_HINT });
	}
	try {
		return parseCapture(data, options);
	} catch (error) {
		throw error instanceof CaptureError ? error.of(file, UNUSABLE_HINT) : error;
	}
}

export function parseCapture(data: Uint8Array, options: ReadOptions = {}): Capture {
	const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
	const header = parseHeader(buf);
	let at = PREAMBLE_BYTES + buf.readUInt32LE(12);
	const items: CaptureItem[] = [];
	let trailer: CaptureTrailer | undefined;
	let incomplete: string | undefined;
	let frame = 0;
	// Each namespace's table as of its last walk: a walk stored as a change applies to it.
	const tables = new Map<number, { sockets: Uint8Array; table?: WalkTable }>();
	// The counts keys the keys frames so far define, by id.
	const countKeys = new Map<number, Buffer>();
	while (at < buf.length) {
		frame++;
		const problem = frameProblem(buf, at);
		if (problem) {
			incomplete = `${problem} (frame ${frame}, byte ${at})`;
			break;
		}
		const type = buf.readUInt8(at);
		const length = buf.readUInt32LE(at + 4);
		const payload = buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
		try {
			if (trailer) throw new CaptureError('data after the end frame');
			if (type === FrameType.events) {
				if (length % EVENT_SIZE !== 0) throw new CaptureError(`an events frame of ${length} bytes is not a whole number of ${EVENT_SIZE}-byte records`);
				items.push({ type: 'events', records: payload, count: length / EVENT_SIZE });
			} else if (type === FrameType.walk) {
				const { walk, delta } = parseWalk(payload);
				if (delta) {
					const base = tables.get(walk.netns);
					if (!base) throw new CaptureError(`a walk of netns ${walk.netns} stored as a change, with no walk of it before`);
					const table = (base.table ?? WalkTable.fromRecords(base.sockets)).apply(delta);
					walk.sockets = table.walkOrder();
					tables.set(walk.netns, { sockets: walk.sockets, table });
				} else {
					tables.set(walk.netns, { sockets: walk.sockets });
				}
				items.push({ type: 'walk', walk });
			} else if (type === FrameType.counts) {
				if (header.countLayout === undefined) throw new CaptureError('a counts frame in a capture whose header names no counters\' layout');
				items.push(parseCounts(payload, countKeys, header.countLayout));
			} else if (type === FrameType.keys) {
				if (header.countLayout === undefined) throw new CaptureError('a keys frame in a capture whose header names no counters\' layout');
				parseKeysPayload(payload, countKeys);
			} else if (type === FrameType.end) {
				trailer = parseTrailer(payload);
			} else {
				throw new CaptureError(`unknown frame type ${type}`);
			}
		} catch (error) {
			if (!(error instanceof CaptureError)) throw error;
			// A frame whose checksum holds but whose content is wrong was written so: never partial.
			throw new CaptureError(`corrupt capture: ${error.message} (frame ${frame}, byte ${at})`, at);
		}
		at += FRAME_HEADER_BYTES + length;
	}
	if (trailer) {
		const events = items.reduce((n, i) => n + (i.type === 'events' ? i.count : 0), 0);
		const walks = items.filter((i) => i.type === 'walk').length;
		if (events !== trailer.events || walks !== trailer.walks) {
			throw new CaptureError(`corrupt capture: it holds ${events} events and ${walks} walks, its end frame says ${trailer.events} and ${trailer.walks}`);
		}
	}
	if (!trailer && !incomplete) incomplete = 'it has no end frame: recording was killed, or the file was cut short';
	if (incomplete && !options.allowPartial) {
		throw new CaptureError(`incomplete capture: ${incomplete}; ${items.length} whole frames before that. Report on them with --partial`, at);
	}
	return { header, items, trailer, incomplete, bytes: buf.length };
}

function parseHeader(buf: Buffer): CaptureHeader {
	if (buf.length === 0) throw new CaptureError('the file is empty: a recording that never wrote its header (killed at once, or the disk was full)', 0);
	if (buf.length < MAGIC.length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
		throw new CaptureError('not a twtrace capture (wrong magic): make one with `twtrace record -o FILE`', 0);
	}
	if (buf.length < PREAMBLE_BYTES) throw new CaptureError('truncated capture: the file ends inside its header', buf.length);
	const version = buf.readUInt16LE(8);
	if (version > CAPTURE_VERSION) {
		throw new CaptureError(`capture format version ${version} is newer than this twtrace reads (${CAPTURE_VERSION}): replay it with a newer twtrace`, 8);
	}
	if (version < 1) throw new CaptureError(`capture format version ${version} is not valid`, 8);
	if (buf.readUInt16LE(10) !== 0) throw new CaptureError('corrupt capture: the header\'s flags are not 0', 10);
	const length = buf.readUInt32LE(12);
	if (length > MAX_HEADER_BYTES) throw new CaptureError(`corrupt capture: a header of ${length} bytes`, 12);
	if (PREAMBLE_BYTES + length > buf.length) throw new CaptureError('truncated capture: the file ends inside its header', buf.length);
	const json = buf.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + length);
	if (crc32(json) !== buf.readUInt32LE(16)) throw new CaptureError('corrupt capture: the header fails its checksum', PREAMBLE_BYTES);
	let h: unknown;
	try {
		h = JSON.parse(json.toString('utf8'));
	} catch {
		throw new CaptureError('corrupt capture: the header is not JSON', PREAMBLE_BYTES);
	}
	const header = checkHeader(h);
	const byteOrder = os.endianness();
	if (header.host.byteOrder !== byteOrder) {
		throw new CaptureError(`the capture was made on a ${header.host.byteOrder === 'BE' ? 'big' : 'little'}-endian host; replay it on one of the same byte order`);
	}
	if ((header.layout !== layoutFingerprint() && !Object.hasOwn(READABLE_LAYOUTS, header.layout)) || header.eventSize !== EVENT_SIZE || header.sockSize !== SOCK_SIZE) {
		throw new CaptureError(`the capture's record layout (${header.layout}) is not this twtrace's (${layoutFingerprint()}): replay it with the twtrace version that recorded it (${header.tool})`);
	}
	if (header.countLayout !== undefined && header.countLayout !== countLayoutFingerprint() && !Object.hasOwn(READABLE_COUNT_LAYOUTS, header.countLayout)) {
		throw new CaptureError(`the capture's counters' layout (${header.countLayout}) is not this twtrace's (${countLayoutFingerprint()}): replay it with the twtrace version that recorded it (${header.tool})`);
	}
	return header;
}

/** Structural check of the header JSON: every field the replay and the report use. */
function checkHeader(h: unknown): CaptureHeader {
	const fail = (what: string): never => {
		throw new CaptureError(`corrupt capture: header ${what}`, PREAMBLE_BYTES);
	};
	if (!isObject(h) || h.format !== 'twtrace-capture') return fail('is not a twtrace capture header');
	const host = h.host;
	if (!isObject(host) || typeof host.hostname !== 'string' || typeof host.kernel !== 'string' || (host.byteOrder !== 'LE' && host.byteOrder !== 'BE')) return fail('host is malformed');
	if (typeof h.startedAt !== 'string' || Number.isNaN(Date.parse(h.startedAt))) return fail('startedAt is malformed');
	const clock = h.clock;
	if (!isObject(clock) || !isCount(clock.startUs) || !Number.isFinite(clock.epochOffsetUs)) return fail('clock is malformed');
	if (typeof h.layout !== 'string' || !isCount(h.eventSize) || !isCount(h.sockSize)) return fail('layout is malformed');
	if (!isObject(h.filters) || !Array.isArray(h.filters.netns)) return fail('filters are malformed');
	if (!isCount(h.walkIntervalMs)) return fail('walkIntervalMs is malformed');
	if (!Array.isArray(h.namespaces)) return fail('namespaces are malformed');
	if (h.countLayout !== undefined && typeof h.countLayout !== 'string') return fail('countLayout is malformed');
	if (h.countsFromUs !== undefined && !isCount(h.countsFromUs)) return fail('countsFromUs is malformed');
	if (h.wheel !== undefined && !isWheelClock(h.wheel)) return fail('wheel is malformed');
	for (const ns of h.namespaces) {
		if (!isObject(ns) || !isCount(ns.netns)) return fail('namespaces are malformed');
		checkSettings(ns.settings, fail);
	}
	return h as unknown as CaptureHeader;
}

function checkSettings(s: unknown, fail: (what: string) => never): asserts s is SettingsJson {
	if (!isObject(s) || !isObject(s.portRange) || !isPort(s.portRange.low) || !isPort(s.portRange.high) || s.portRange.low > s.portRange.high ||
		typeof s.reservedPorts !== 'string' || !isCount(s.finTimeoutSec)) fail('namespace settings are malformed');
	for (const k of ['maxTimeWaitBuckets', 'twReuse', 'twReuseDelayMs', 'twRecycle', 'timestamps', 'timeWaitOverflow'] as const) {
		if ((s as Record<string, unknown>)[k] !== undefined && !isCount((s as Record<string, unknown>)[k])) fail(`setting ${k} is malformed`);
	}
}

/** Why the frame at `at` cannot be read whole, or undefined. */
function frameProblem(buf: Buffer, at: number): string | undefined {
	if (at + FRAME_HEADER_BYTES > buf.length) return 'the file ends inside a frame header';
	// The frame header has no checksum of its own: its reserved bytes must be what the writer wrote.
	if (buf[at + 1] !== 0 || buf[at + 2] !== 0 || buf[at + 3] !== 0) return 'a frame header\'s reserved bytes are not 0';
	const length = buf.readUInt32LE(at + 4);
	if (length > MAX_FRAME_BYTES) return `a frame claims ${length} bytes`;
	if (at + FRAME_HEADER_BYTES + length > buf.length) return 'the file ends inside a frame';
	const payload = buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
	if (crc32(payload) !== buf.readUInt32LE(at + 8)) return 'a frame fails its checksum';
	return undefined;
}

function parseWalk(payload: Buffer): { walk: WalkRecord; delta: WalkDelta | undefined } {
	if (payload.length < 4) throw new CaptureError('a walk frame too short for its metadata');
	const metaBytes = payload.readUInt32LE(0);
	if (4 + metaBytes > payload.length) throw new CaptureError('a walk frame shorter than its metadata');
	let meta: unknown;
	try {
		meta = JSON.parse(payload.subarray(4, 4 + metaBytes).toString('utf8'));
	} catch {
		throw new CaptureError('walk metadata is not JSON');
	}
	const fail = (what: string): never => {
		throw new CaptureError(`walk ${what}`);
	};
	if (!isObject(meta) || !isCount(meta.netns) || !isCount(meta.takenAtUs) || !Array.isArray(meta.listeners)) return fail('metadata is malformed');
	checkSettings(meta.settings, fail);
	for (const l of meta.listeners) {
		if (!isObject(l) || !isPort(l.port) || !isCount(l.pid) || typeof l.comm !== 'string') fail('listeners are malformed');
	}
	if (meta.removed !== undefined && !isCount(meta.removed)) fail('metadata is malformed');
	if (meta.timeWaitOmitted !== undefined && !isCount(meta.timeWaitOmitted)) fail('metadata is malformed');
	if (meta.timeWaitCounted !== undefined && !isCount(meta.timeWaitCounted)) fail('metadata is malformed');
	if (meta.openOnly !== undefined && meta.openOnly !== true) fail('metadata is malformed');
	const removedBytes = meta.removed === undefined ? 0 : (meta.removed as number) * 8;
	if (4 + metaBytes + removedBytes > payload.length) fail('a walk frame shorter than its removed cookies');
	const sockets = payload.subarray(4 + metaBytes + removedBytes);
	if (sockets.length % SOCK_SIZE !== 0) fail(`sockets of ${sockets.length} bytes are not a whole number of ${SOCK_SIZE}-byte records`);
	const walk: WalkRecord = {
		netns: meta.netns as number,
		takenAtUs: meta.takenAtUs as number,
		settings: settingsFromJson(meta.settings as SettingsJson),
		listeners: meta.listeners as WalkRecord['listeners'],
		sockets,
		...(meta.timeWaitOmitted !== undefined ? { timeWaitOmitted: meta.timeWaitOmitted as number } : {}),
		...(meta.timeWaitCounted !== undefined ? { timeWaitCounted: meta.timeWaitCounted as number } : {}),
		...(meta.openOnly === true ? { openOnly: true } : {}),
	};
	if (meta.removed === undefined) return { walk, delta: undefined };
	const removed = decodeCookies(payload.subarray(4 + metaBytes, 4 + metaBytes + removedBytes));
	for (let i = 1; i < removed.length; i++) if (!(removed[i]! > removed[i - 1]!)) fail('removed cookies are not in ascending order');
	const upserts = WalkTable.fromRecords(sockets);
	if (upserts.size !== sockets.length / SOCK_SIZE) fail('changed sockets repeat a cookie');
	return { walk, delta: { removed, upserts } };
}

function parseCounts(payload: Buffer, countKeys: ReadonlyMap<number, Buffer>, countLayout: string): Extract<CaptureItem, { type: 'counts' }> {
	return { type: 'counts', ...parseCountsPayload(payload, countKeys, READABLE_COUNT_LAYOUTS[countLayout]?.columns) };
}

function parseTrailer(payload: Buffer): CaptureTrailer {
	let t: unknown;
	try {
		t = JSON.parse(payload.toString('utf8'));
	} catch {
		throw new CaptureError('the end frame is not JSON');
	}
	if (!isObject(t) || !isCount(t.endUs) || typeof t.reason !== 'string' || !isCount(t.events) || !isCount(t.walks)) {
		throw new CaptureError('the end frame is malformed');
	}
	// Loss counters never make a capture unreadable: readDrops() names the ones it cannot use.
	return t as unknown as CaptureTrailer;
}

function isObject(v: unknown): v is Record<string, unknown> {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isPort(v: unknown): v is number {
	return isCount(v) && v >= 1 && v <= 65535;
}
