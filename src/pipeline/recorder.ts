/**
 * The agent's flight recorder: the last minutes of raw records and walks, kept in memory as capture
 * frames so that `report --last 10m` explains the minutes before an alert fired, and `record --last`
 * saves them. Bounded by bytes and by age: the oldest frames go first.
 *
 * A served window must stand alone: its reader has not seen what came before. So the recorder
 * keeps, besides the frames, each namespace's socket table as of its oldest frame (walks are held
 * as changes, walk-table.ts) and every task record (events name their task by id, and a task's
 * record is sent once, bpf/twtrace.bpf.c current_task()). A window then starts with the task
 * records and a whole walk of each namespace as of the window's start, followed by its frames.
 */
import { EVENT_FIELDS, EVENT_SIZE, EventKind, TASK_FIELDS } from '../event/layout.generated.js';
import { DROP_NAMES, encodeEnd, encodeFrame, encodePreamble, encodeWalk, settingsToJson, type CaptureDrops, type CaptureHeader } from '../capture/format.js';
import { WalkTable, type WalkDelta } from '../capture/walk-table.js';
import type { WalkRecord } from '../model/walk.js';

export interface RecorderOptions {
	/** Frames kept at most, in bytes (events and walk changes as stored). */
	maxBytes: number;
	/** Frames older than this are dropped. */
	maxAgeMs: number;
}

export interface RecorderSource {
	/** The capture header for a window starting at `startUs` (host, layout, filters, clock). */
	header(startUs: number): CaptureHeader;
	/** Losses so far (totals): a window's are the increase over it. */
	drops(): CaptureDrops;
	/** cgroup id → path, for the ids the window's events name. */
	cgroups(): Record<string, string>;
	/** Why the window ends where it does, for its trailer. */
	describe(): string;
}

type WalkMeta = Omit<WalkRecord, 'sockets'>;

type Item =
	| { type: 'events'; atUs: number; records: Buffer; count: number; drops: CaptureDrops }
	| { type: 'walk'; atUs: number; meta: WalkMeta; full?: WalkTable; delta?: WalkDelta; bytes: number };

/** Events are gathered into one frame for this long, or this many bytes. */
const CHUNK_US = 1_000_000;
const CHUNK_BYTES = 256 * 1024;
/** Task records kept (the kernel's own table holds 65,536). */
const MAX_TASKS = 65_536;

export class FlightRecorder {
	readonly #options: RecorderOptions;
	readonly #source: RecorderSource;
	readonly #items: Item[] = [];
	#head = 0; // items before it are dropped (compacted now and then)
	#bytes = 0;
	/** Each namespace's table and walk as of the oldest item kept. */
	readonly #front = new Map<number, { table: WalkTable; meta: WalkMeta }>();
	/** Each namespace's table as of its latest walk: the next walk is stored as a change against it. */
	readonly #current = new Map<number, WalkTable>();
	readonly #tasks = new Map<number, Buffer>();
	/** CLOCK_MONOTONIC µs of the oldest moment the recorder can still serve. */
	#frontUs: number;
	#frontDrops: CaptureDrops;
	#chunk: Buffer | undefined;
	#chunkBytes = 0;
	#chunkStartUs = 0;

	constructor(options: RecorderOptions, source: RecorderSource, nowUs: number) {
		this.#options = options;
		this.#source = source;
		this.#frontUs = nowUs;
		this.#frontDrops = source.drops();
	}

	/** Raw records (EVENT_SIZE each, task records among them) as drained. */
	addEvents(raw: Buffer, nowUs: number): void {
		for (let at = 0; at < raw.length; at += EVENT_SIZE) {
			if (raw[at + EVENT_FIELDS.kind.offset] !== EventKind.TASK) continue;
			const id = raw.readUInt32LE(at + TASK_FIELDS.id.offset);
			this.#tasks.delete(id); // re-inserted last: the map's order is the eviction order
			if (this.#tasks.size >= MAX_TASKS) this.#tasks.delete(this.#tasks.keys().next().value!);
			this.#tasks.set(id, Buffer.from(raw.subarray(at, at + EVENT_SIZE)));
		}
		let at = 0;
		while (at < raw.length) {
			if (!this.#chunk) [this.#chunk, this.#chunkBytes, this.#chunkStartUs] = [Buffer.allocUnsafe(CHUNK_BYTES), 0, nowUs];
			const n = Math.min(raw.length - at, CHUNK_BYTES - this.#chunkBytes);
			raw.copy(this.#chunk, this.#chunkBytes, at, at + n);
			this.#chunkBytes += n;
			at += n;
			if (this.#chunkBytes === CHUNK_BYTES) this.#seal(nowUs);
		}
	}

	/** A walk as LiveFeed delivers it (with its raw sockets). */
	addWalk(walk: WalkRecord, nowUs: number): void {
		this.#seal(nowUs); // events before the walk stay before it
		const { sockets, ...meta } = walk;
		const table = WalkTable.fromRecords(sockets);
		const previous = this.#current.get(walk.netns);
		this.#current.set(walk.netns, table);
		if (!previous) {
			this.#push({ type: 'walk', atUs: walk.takenAtUs, meta, full: table, bytes: table.records.length + table.cookies.byteLength });
			return;
		}
		const delta = previous.diff(table);
		this.#push({ type: 'walk', atUs: walk.takenAtUs, meta, delta, bytes: delta.upserts.records.length + delta.upserts.cookies.byteLength + delta.removed.byteLength });
	}

	/** Seals events gathered for long enough and drops what is too old or over the byte bound. */
	tick(nowUs: number): void {
		if (this.#chunk && nowUs - this.#chunkStartUs >= CHUNK_US) this.#seal(nowUs);
		this.#trim(nowUs);
	}

	stats(nowUs: number): { frames: number; bytes: number; maxBytes: number; spanSeconds: number; maxSeconds: number; firstUs: number } {
		return {
			frames: this.#items.length - this.#head, bytes: this.#bytes + this.#chunkBytes, maxBytes: this.#options.maxBytes,
			spanSeconds: Math.round((nowUs - this.#frontUs) / 1e5) / 10, maxSeconds: this.#options.maxAgeMs / 1000, firstUs: this.#frontUs,
		};
	}

	/** The last `lastMs` (all that is kept when undefined), as a whole capture file. */
	capture(lastMs: number | undefined, nowUs: number): Buffer {
		this.#seal(nowUs);
		const fromUs = Math.max(this.#frontUs, lastMs === undefined ? -Infinity : nowUs - lastMs * 1000);
		// The namespaces' tables as of the window's start: the front, with the walks before it applied.
		const base = new Map(this.#front);
		let drops = this.#frontDrops;
		let i = this.#head;
		for (; i < this.#items.length && this.#items[i]!.atUs < fromUs; i++) {
			const item = this.#items[i]!;
			if (item.type === 'events') drops = item.drops;
			else base.set(item.meta.netns, { table: applyWalk(base.get(item.meta.netns)?.table, item), meta: item.meta });
		}
		const header = this.#source.header(fromUs);
		header.namespaces = [...base.values()].map(({ meta }) => ({ netns: meta.netns, settings: settingsToJson(meta.settings) }));
		const parts: Buffer[] = [encodePreamble(header)];
		let events = 0;
		let walks = 0;
		if (this.#tasks.size) {
			parts.push(encodeFrame('events', [...this.#tasks.values()]));
			events += this.#tasks.size;
		}
		for (const { table, meta } of base.values()) {
			parts.push(encodeWalk({ ...meta, sockets: table.walkOrder() }));
			walks++;
		}
		const seen = new Set(base.keys());
		for (; i < this.#items.length; i++) {
			const item = this.#items[i]!;
			if (item.type === 'events') {
				parts.push(encodeFrame('events', item.records));
				events += item.count;
			} else {
				// A namespace's first walk in the window is whole unless the window starts with its table.
				const isFirst = !seen.has(item.meta.netns);
				seen.add(item.meta.netns);
				parts.push(item.full || isFirst ? encodeWalk({ ...item.meta, sockets: (item.full ?? applyWalk(undefined, item)).walkOrder() }) : encodeWalk(item.meta, item.delta));
				walks++;
			}
		}
		const now = this.#source.drops();
		const windowDrops = Object.fromEntries(DROP_NAMES.map((k) => [k, Math.max(0, now[k] - drops[k])])) as unknown as CaptureDrops;
		parts.push(encodeEnd({ endUs: nowUs, reason: this.#source.describe(), events, walks, drops: windowDrops, cgroups: this.#source.cgroups() }));
		return Buffer.concat(parts);
	}

	#seal(nowUs: number): void {
		if (!this.#chunk || this.#chunkBytes === 0) return;
		const records = Buffer.from(this.#chunk.subarray(0, this.#chunkBytes)); // exact size: the chunk's slack is not kept
		this.#chunk = undefined;
		this.#chunkBytes = 0;
		this.#push({ type: 'events', atUs: this.#chunkStartUs, records, count: records.length / EVENT_SIZE, drops: this.#source.drops() });
		this.#trim(nowUs);
	}

	#push(item: Item): void {
		this.#items.push(item);
		this.#bytes += item.type === 'events' ? item.records.length : item.bytes;
	}

	#trim(nowUs: number): void {
		const oldestUs = nowUs - this.#options.maxAgeMs * 1000;
		while (this.#head < this.#items.length) {
			const item = this.#items[this.#head]!;
			if (item.atUs >= oldestUs && this.#bytes <= this.#options.maxBytes) break;
			if (item.type === 'events') {
				this.#bytes -= item.records.length;
				this.#frontDrops = item.drops;
			} else {
				this.#bytes -= item.bytes;
				this.#front.set(item.meta.netns, { table: applyWalk(this.#front.get(item.meta.netns)?.table, item), meta: item.meta });
			}
			this.#items[this.#head++] = undefined as unknown as Item;
			const next = this.#items[this.#head];
			this.#frontUs = next ? next.atUs : nowUs;
		}
		if (this.#head > 1024 && this.#head * 2 > this.#items.length) this.#items.splice(0, this.#head), (this.#head = 0);
	}
}

function applyWalk(base: WalkTable | undefined, item: Extract<Item, { type: 'walk' }>): WalkTable {
	if (item.full) return item.full;
	return (base ?? WalkTable.EMPTY).apply(item.delta!);
}
