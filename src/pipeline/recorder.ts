/**
 * The agent's flight recorder: the last minutes of raw records and walks, kept in memory as capture
 * frames so that `report --last 10m` explains the minutes before an alert fired, and `record --last`
 * saves them. Bounded by bytes and by age: the oldest frames go first.
 *
 * A served window must stand alone: its reader has not seen what came before. So the recorder
 * keeps, besides the frames, each namespace's last walk before its oldest frame, and every task
 * record (events name their task by id, and a task's record is sent once, bpf/twtrace.bpf.c
 * current_task()). A window then starts with the task records and that walk of each namespace,
 * followed by its frames.
 *
 * What it keeps of the events (`keeps`): with `counts` (the agent's default), the kernel's counters'
 * differences once a second (counts frames: docs/counting-in-the-kernel.md, step 3) and only the
 * records the counters do not stand for: task records and connect and bind failures (their errno and
 * target, victim by victim). Its bytes then follow the (owner, destination) pairs that are active,
 * not the connection rate: at 1,000 connections/s the records alone filled 64 MiB in about 4 minutes.
 * With `records`, every record, as `record` writes them: per-socket detail (exact lifetimes, each
 * socket's cookie for walks to match) at a record's bytes per transition.
 *
 * Nothing is computed when a walk arrives: the walk's records are kept as the kernel gave them (a
 * walk of a million sockets sorted or compared here would stall the agent's drain for a second:
 * the ring would overflow). Walks are therefore served whole; a capture file written by `record`
 * stores them as changes (capture/walk-table.ts).
 */
import { EVENT_FIELDS, EVENT_SIZE, EventKind, TASK_FIELDS } from '../event/layout.generated.js';
import { HOST_LITTLE_ENDIAN } from '../event/host-order.js';
import { countLayoutFingerprint, DROP_NAMES, encodeEnd, encodeFrame, encodePreamble, encodeWalk, settingsToJson, type CaptureDrops, type CaptureHeader } from '../capture/format.js';
import { CountsFrames } from './counts-frames.js';
import type { WalkRecord } from '../event/walk-record.js';
import { RecordStaging } from '../event/staging.js';
import type { RecordSink } from '../tracer/session.js';
import { withoutTimeWait } from './walk-reader.js';

export interface RecorderOptions {
	/** Bytes kept at most: events, walks, and each namespace's walk before the oldest frame. */
	maxBytes: number;
	/** Frames older than this are dropped. */
	maxAgeMs: number;
	/** What it keeps of the events: the kernel's counts and the records they do not stand for, or every record. */
	keeps?: RecorderKeeps;
}

export type RecorderKeeps = 'counts' | 'records';
export const RECORDER_KEEPS: readonly RecorderKeeps[] = ['counts', 'records'];

/**
 * A counts-keeping recorder serves, before a window, the counts of this long before it (the window's
 * history): the entries still held at its start, whoever made them, as no walk can say (a timewait
 * socket keeps no owner, kernel-facts §1.3). Longer than any timewait socket lives: TIME_WAIT's 60 s
 * and the wheel's slack, or a FIN_WAIT2 substate's tcp_fin_timeout, which tcp_time_wait() caps at
 * TCP_TIMEWAIT_LEN. For the same reason its walks after this long from its start leave out their
 * timewait sockets: sockets older than the recorder have expired by then, and the rest are counted.
 */
export const HISTORY_US = 65 * 1_000_000;

/** Kinds a counts-keeping recorder keeps records of: what the kernel's counters do not stand for. */
const KEPT_BESIDE_COUNTS = new Set<number>([EventKind.TASK, EventKind.CONNECT_FAIL, EventKind.BIND_FAIL]);

export interface RecorderSource {
	/** The capture header for a window starting at `startUs` (host, layout, filters, clock). */
	header(startUs: number): CaptureHeader;
	/** Losses so far (totals): a window's are the increase over it. */
	drops(): CaptureDrops;
	/** cgroup id → path, for the ids the window's events name. */
	cgroups(): Record<string, string>;
	/** Why the window ends where it does, for its trailer. */
	describe(): string;
	/** CLOCK_MONOTONIC µs now, for records kept one at a time (keep()): read once per chunk. */
	clockUs(): number;
}

type Item =
	| { type: 'events'; atUs: number; records: Buffer; count: number; drops: CaptureDrops }
	| { type: 'walk'; atUs: number; walk: WalkRecord }
	/** `frame`: the counts frame as a capture holds it (only the counters that moved: capture/counts-frame.ts), in a slab. */
	| { type: 'counts'; atUs: number; frame: Buffer };

/** Events are gathered into one frame for this long, or this many bytes: whole records (a frame holds no part of one). */
const CHUNK_US = 1_000_000;
export const CHUNK_BYTES = Math.floor((256 * 1024) / EVENT_SIZE) * EVENT_SIZE;

/**
 * The chunk of a recorder of `maxBytes`: CHUNK_BYTES, or a quarter of a smaller bound (whole
 * records, one at least), so that a sealed chunk fits the bound with room for others: a chunk
 * larger than the bound would be dropped as it is sealed, and the recorder would serve nothing.
 */
export function chunkBytesFor(maxBytes: number): number {
	return Math.min(CHUNK_BYTES, Math.max(1, Math.floor(maxBytes / 4 / EVENT_SIZE)) * EVENT_SIZE);
}
/** Task records kept (the kernel's own table holds 65,536). */
const MAX_TASKS = 65_536;

export class FlightRecorder implements RecordSink {
	readonly #options: RecorderOptions;
	readonly #source: RecorderSource;
	readonly #items: Item[] = [];
	#head = 0; // items before it are dropped (compacted now and then)
	#bytes = 0;
	/** Each namespace's last walk before the oldest item kept. */
	readonly #front = new Map<number, WalkRecord>();
	/** Bytes of the walks in #front: counted against maxBytes too. */
	#frontBytes = 0;
	readonly #tasks = new Map<number, Buffer>();
	/** Each namespace's latest settings, from every walk, kept or not: a window's header names them. */
	readonly #settings = new Map<number, WalkRecord['settings']>();
	#omittedWalks = 0;
	/** CLOCK_MONOTONIC µs of the oldest moment the recorder can still serve. */
	#frontUs: number;
	#frontDrops: CaptureDrops;
	/** The bound that dropped the latest frame dropped: why the recorder holds less than the agent's whole run. */
	#droppedBy: 'size' | 'age' | undefined;
	/** Events gathered for the next frame, since #chunkStartUs. */
	readonly #chunk: RecordStaging;
	#chunkStartUs = 0;
	readonly #keepsCounts: boolean;
	/** When the kernel began counting (the programs attached): no count is older. */
	readonly #countsFromUs: number;
	/** Counts frames dropped from the front, kept for HISTORY_US more: the history of the windows served. */
	readonly #history: Extract<Item, { type: 'counts' }>[] = [];
	/** Bytes of the frames in #history: counted against nothing, shown in stats(). */
	#historyBytes = 0;
	/** The counts of the second now open, and the ids its frames name keys by. */
	readonly #counts = new CountsFrames();

	/** `nowUs`: the recorder's start (its pipeline's model's, so that a window from it replays to the same rates); `countsFromUs`: counting's. */
	constructor(options: RecorderOptions, source: RecorderSource, nowUs: number, countsFromUs = nowUs) {
		this.#options = options;
		this.#keepsCounts = options.keeps === 'counts';
		this.#countsFromUs = countsFromUs;
		this.#chunk = new RecordStaging(chunkBytesFor(options.maxBytes));
		this.#source = source;
		this.#frontUs = nowUs;
		this.#frontDrops = source.drops();
	}

	/** What it keeps of the events. */
	get keeps(): RecorderKeeps {
		return this.#keepsCounts ? 'counts' : 'records';
	}

	/** Raw records (EVENT_SIZE each, task records among them) as drained. */
	addEvents(raw: Buffer, nowUs: number): void {
		for (let at = 0; at < raw.length; at += EVENT_SIZE) if (raw[at + EVENT_FIELDS.kind.offset] === EventKind.TASK) this.#keepTask(raw, at);
		if (this.#keepsCounts) {
			for (let at = 0; at < raw.length; at += EVENT_SIZE) if (KEPT_BESIDE_COUNTS.has(raw[at + EVENT_FIELDS.kind.offset]!)) this.#append(raw.subarray(at, at + EVENT_SIZE), nowUs);
		} else {
			this.#append(raw, nowUs);
		}
	}

	#append(raw: Buffer, nowUs: number): void {
		let at = 0;
		while (at < raw.length) {
			if (this.#chunk.bytes === 0) this.#chunkStartUs = nowUs;
			const n = Math.min(raw.length - at, this.#chunk.capacity - this.#chunk.bytes);
			raw.copy(this.#chunk.buffer, this.#chunk.bytes, at, at + n);
			this.#chunk.advance(n);
			at += n;
			if (this.#chunk.full) this.#seal(nowUs);
		}
	}

	/**
	 * One record, copied from ring memory into the chunk being filled: no batch buffer in between,
	 * nothing for the garbage collector (the agent's path; the session calls it as it drains).
	 */
	keep(ring: Uint32Array, offset: number): void {
		if (this.#keepsCounts && !KEPT_BESIDE_COUNTS.has(kindInRing(ring, offset))) return;
		const chunk = this.#chunk;
		if (chunk.bytes === 0) this.#chunkStartUs = this.#source.clockUs();
		const at = chunk.appendRecord(ring, offset);
		if (chunk.buffer[at + EVENT_FIELDS.kind.offset] === EventKind.TASK) this.#keepTask(chunk.buffer, at);
		if (chunk.full) this.#seal(this.#source.clockUs());
	}

	/** A task record, kept apart: a window's events may name tasks whose records came before it. */
	#keepTask(raw: Buffer, at: number): void {
		const id = HOST_LITTLE_ENDIAN ? raw.readUInt32LE(at + TASK_FIELDS.id.offset) : raw.readUInt32BE(at + TASK_FIELDS.id.offset);
		this.#tasks.delete(id); // re-inserted last: the map's order is the eviction order
		if (this.#tasks.size >= MAX_TASKS) this.#tasks.delete(this.#tasks.keys().next().value!);
		this.#tasks.set(id, Buffer.from(raw.subarray(at, at + EVENT_SIZE)));
	}

	/**
	 * A reading of the kernel's counters at `atUs` begins: addCounts() gives its keys. Readings of one
	 * second (the upkeep's, each scrape's) are summed into one frame, made once the second is over (or
	 * a window is served), and kept as a capture holds it: counts-frames.ts. Ignored unless it keeps
	 * counts.
	 */
	beginCounts(atUs: number, nowUs: number): void {
		if (!this.#keepsCounts) return;
		if (this.#counts.opensSecond(atUs)) this.#flushCounts(nowUs);
		this.#counts.begin(atUs);
	}

	/** One key's differences in the reading begun (count-bins.ts DeltaVisitor: `delta` is reused, copied). */
	addCounts(key: string, delta: Float64Array): void {
		if (this.#keepsCounts) this.#counts.add(key, delta);
	}

	/** The open second's counts, as a frame at its last reading. */
	#flushCounts(nowUs: number): void {
		const taken = this.#counts.take();
		if (!taken) return;
		this.#seal(nowUs); // failures before the reading stay before it
		this.#push({ type: 'counts', ...taken });
		this.#trim(nowUs);
	}

	/**
	 * A walk as LiveFeed delivers it (with its raw sockets): kept as it is. One too large to keep
	 * (omittedBytes) leaves only its settings: windows then model TIME_WAIT from their events.
	 */
	addWalk(walk: WalkRecord, nowUs: number): void {
		this.#settings.set(walk.netns, walk.settings);
		if (walk.omittedBytes !== undefined) {
			this.#omittedWalks++;
			return;
		}
		this.#seal(nowUs); // events before the walk stay before it
		const strip = walk.timeWaitOmitted === undefined && !this.keepsTimeWaitOf(walk.takenAtUs);
		this.#push({ type: 'walk', atUs: walk.takenAtUs, walk: strip ? { ...walk, ...withoutTimeWait(walk.sockets) } : walk });
		this.#trim(nowUs);
	}

	/**
	 * Whether a walk taken at `takenAtUs` is kept with its timewait sockets: always when keeping
	 * records; keeping counts, only within HISTORY_US of the start (sockets older than the recorder).
	 * The live feed asks before it reads a walk, so that it copies no more than is kept.
	 */
	keepsTimeWaitOf(takenAtUs: number): boolean {
		return !this.#keepsCounts || takenAtUs - this.#countsFromUs < HISTORY_US;
	}

	/** Walks too large to keep, since start. */
	get omittedWalks(): number {
		return this.#omittedWalks;
	}

	/** Seals events gathered for long enough and drops what is too old or over the byte bound. */
	tick(nowUs: number): void {
		if (this.#counts.overAt(nowUs)) this.#flushCounts(nowUs);
		if (this.#chunk.bytes > 0 && nowUs - this.#chunkStartUs >= CHUNK_US) this.#seal(nowUs);
		this.#trim(nowUs);
	}

	stats(nowUs: number): { frames: number; bytes: number; maxBytes: number; spanSeconds: number; maxSeconds: number; firstUs: number; droppedBy: 'size' | 'age' | null } {
		return {
			frames: this.#items.length - this.#head, bytes: this.#bytes + this.#frontBytes + this.#historyBytes + this.#counts.keyBytes + this.#chunk.bytes, maxBytes: this.#options.maxBytes,
			spanSeconds: Math.round((nowUs - this.#frontUs) / 1e5) / 10, maxSeconds: this.#options.maxAgeMs / 1000, firstUs: this.#frontUs,
			droppedBy: this.#droppedBy ?? null,
		};
	}

	/** The last `lastMs` (all that is kept when undefined), as a whole capture file. */
	capture(lastMs: number | undefined, nowUs: number): Buffer {
		this.#flushCounts(nowUs);
		this.#seal(nowUs);
		const fromUs = Math.max(this.#frontUs, lastMs === undefined ? -Infinity : nowUs - lastMs * 1000);
		// Each namespace's last walk before the window: the front's, then those of skipped items.
		const base = new Map(this.#front);
		let drops = this.#frontDrops;
		let i = this.#head;
		// A reading counts the second before it: one at the window's start is history, not within it.
		for (; i < this.#items.length && (this.#items[i]!.atUs < fromUs || (this.#items[i]!.type === 'counts' && this.#items[i]!.atUs === fromUs)); i++) {
			const item = this.#items[i]!;
			if (item.type === 'events') drops = item.drops;
			else if (item.type === 'walk') base.set(item.walk.netns, item.walk);
		}
		const header = this.#source.header(fromUs);
		// The window's history: the counts of the HISTORY_US before it, from frames dropped or skipped.
		const history: Extract<Item, { type: 'counts' }>[] = [];
		const countsFromUs = Math.max(this.#countsFromUs, fromUs - HISTORY_US);
		if (this.#keepsCounts) {
			header.countLayout = countLayoutFingerprint();
			header.countsFromUs = Math.round(countsFromUs);
			for (const item of this.#history) if (item.atUs > countsFromUs && item.atUs <= fromUs) history.push(item);
			for (let j = this.#head; j < i; j++) {
				const item = this.#items[j]!;
				if (item.type === 'counts' && item.atUs > countsFromUs) history.push(item);
			}
		}
		header.namespaces = [...this.#settings].map(([netns, settings]) => ({ netns, settings: settingsToJson(base.get(netns)?.settings ?? settings) }));
		const parts: Buffer[] = [encodePreamble(header)];
		let events = 0;
		let walks = 0;
		if (this.#tasks.size) {
			parts.push(encodeFrame('events', [...this.#tasks.values()]));
			events += this.#tasks.size;
		}
		for (const walk of base.values()) {
			parts.push(encodeWalk(walk));
			walks++;
		}
		const keys = this.#counts.keysFrame(); // before any counts frame names them
		if (keys) parts.push(keys);
		for (const item of history) parts.push(item.frame);
		for (; i < this.#items.length; i++) {
			const item = this.#items[i]!;
			if (item.type === 'events') {
				parts.push(encodeFrame('events', item.records));
				events += item.count;
			} else if (item.type === 'counts') {
				parts.push(item.frame);
			} else {
				parts.push(encodeWalk(item.walk));
				walks++;
			}
		}
		const now = this.#source.drops();
		const windowDrops = Object.fromEntries(DROP_NAMES.map((k) => [k, Math.max(0, now[k] - drops[k])])) as unknown as CaptureDrops;
		const omitted = this.#omittedWalks ? `; ${this.#omittedWalks} socket walks were too large to keep, so TIME_WAIT from before a window's first minute may be missing from it` : '';
		parts.push(encodeEnd({ endUs: nowUs, reason: this.#source.describe() + omitted, events, walks, drops: windowDrops, cgroups: this.#source.cgroups() }));
		return Buffer.concat(parts);
	}

	#seal(nowUs: number): void {
		// A quiet second's chunk is copied to its size (its slack is not kept), a fuller one kept as it is (RecordStaging).
		const records = this.#chunk.take();
		if (!records) return;
		this.#push({ type: 'events', atUs: this.#chunkStartUs, records, count: records.length / EVENT_SIZE, drops: this.#source.drops() });
		this.#trim(nowUs);
	}

	#push(item: Item): void {
		this.#items.push(item);
		this.#bytes += itemBytes(item);
	}

	#trim(nowUs: number): void {
		const oldestUs = nowUs - this.#options.maxAgeMs * 1000;
		// The oldest counts frame kept is the history's first, or none is older than the front.
		const pruneKeys = () => this.#counts.prune(this.#history[0]?.atUs ?? this.#frontUs);
		if (this.#counts.duePruning) pruneKeys();
		while (this.#head < this.#items.length) {
			const item = this.#items[this.#head]!;
			if (item.atUs >= oldestUs && this.#bytes + this.#frontBytes + this.#counts.keyBytes <= this.#options.maxBytes) break;
			// Over the byte bound: keys no kept frame names go before any frame does.
			if (item.atUs >= oldestUs && this.#counts.prunable) {
				pruneKeys();
				continue;
			}
			this.#droppedBy = item.atUs < oldestUs ? 'age' : 'size';
			this.#bytes -= itemBytes(item);
			if (item.type === 'events') {
				this.#frontDrops = item.drops;
				// Nothing refers to its records any more (a served window copied them): the next chunk fills them.
				this.#chunk.recycle(item.records);
			} else if (item.type === 'counts') {
				this.#history.push(item);
				this.#historyBytes += itemBytes(item);
			} else if (item.type === 'walk') {
				// It becomes its namespace's base: windows served from now on start from it.
				this.#frontBytes += item.walk.sockets.byteLength - (this.#front.get(item.walk.netns)?.sockets.byteLength ?? 0);
				this.#front.set(item.walk.netns, item.walk);
			}
			this.#items[this.#head++] = undefined as unknown as Item;
			const next = this.#items[this.#head];
			this.#frontUs = next ? next.atUs : nowUs;
		}
		if (this.#head > 1024 && this.#head * 2 > this.#items.length) this.#items.splice(0, this.#head), (this.#head = 0);
		let old = 0;
		while (old < this.#history.length && this.#history[old]!.atUs <= this.#frontUs - HISTORY_US) this.#historyBytes -= itemBytes(this.#history[old++]!);
		if (old) this.#history.splice(0, old);
	}
}

function itemBytes(item: Item): number {
	if (item.type === 'counts') return item.frame.byteLength + 64;
	return item.type === 'events' ? item.records.length : item.walk.sockets.byteLength + 512;
}

/** The kind of the record at byte `offset` of ring memory, read from its word (no view object per record). */
function kindInRing(ring: Uint32Array, offset: number): number {
	const at = offset + EVENT_FIELDS.kind.offset;
	const shift = HOST_LITTLE_ENDIAN ? 8 * (at & 3) : 8 * (3 - (at & 3));
	return (ring[at >>> 2]! >>> shift) & 0xff;
}
