/**
 * A capture played back on its own clock: the model is fed what the live run fed it (each drain's
 * batch of events, and each walk, in file order), up to a point in capture time that the caller
 * moves. `top --replay` asks it for the same SnapshotReply as a live pipeline; a report plays it to
 * the end. Deterministic: no clock but the capture's.
 */
import os from 'node:os';
import type { SnapshotQuery, SnapshotReply } from '../agent/wire.js';
import { countLayoutFingerprint, readDrops, settingsFromJson } from '../capture/format.js';
import type { Capture, CaptureItem } from '../capture/reader.js';
import { Decoder, isDecodeFailure, type TwtEvent } from '../event/decode.js';
import { COUNT_KEY_SIZE, EVENT_FIELDS, EVENT_SIZE } from '../event/layout.generated.js';
import { COUNT_COLUMNS, decodeCountKeyAt } from '../event/counts.js';
import { TaskTable } from '../event/tasks.js';
import { ChurnModel } from '../model/churn-model.js';
import { snapshot } from '../model/snapshot.js';
import { walkFromRecord } from '../model/walk.js';
import type { WalkRecord } from '../event/walk-record.js';

export interface ReplayOptions {
	/** Keep owners and destinations after they go idle (a report covers the whole capture). */
	keepIdle?: boolean;
	/** After the model took each batch of events (a frame, or the part of it up to the point reached). */
	onEvents?: (events: readonly TwtEvent[]) => void;
	/** After the model reconciled a walk. */
	onWalk?: (walk: WalkRecord) => void;
	/** After the model took a counts frame read at `atUs`. */
	onCounts?: (atUs: number) => void;
}

export class CaptureReplay {
	readonly model: ChurnModel;
	readonly startUs: number;
	/** The last moment the capture covers. */
	readonly endUs: number;
	readonly #capture: Capture;
	readonly #options: ReplayOptions;
	/** One for the whole capture: events refer to earlier frames' tasks. */
	readonly #tasks = new TaskTable();
	// Every frame is a view into the capture's one buffer: one decoder reads them all, in place.
	#decoder: Decoder | undefined;
	#decoderBuffer: ArrayBuffer | undefined;
	/** The next item, and the next record within it when it is an events frame. */
	#item = 0;
	#record = 0;
	#nowUs: number;
	#walks = 0;
	#decodeErrors = 0;

	constructor(capture: Capture, options: ReplayOptions = {}) {
		this.#capture = capture;
		this.#options = options;
		const { header, trailer } = capture;
		const { netns: _netns, ...filters } = header.filters;
		// The recording's filters apply to walked sockets as they did live (the kernel filtered the events).
		this.model = new ChurnModel(header.clock.startUs, { ...filters, keepIdle: options.keepIdle });
		// The settings at the start (port ranges decide the pools): a window from the agent may hold no walk.
		for (const ns of header.namespaces) this.model.setSettings(ns.netns, settingsFromJson(ns.settings));
		// A capture of the kernel's counts covers its span with them: walks then add only older sockets.
		if (header.countLayout !== undefined) {
			this.model.countFrom(header.countsFromUs ?? header.clock.startUs);
			// A capture in an earlier counters' layout does not say which TIME_WAIT entries went into odd buckets.
			if (header.wheel) this.model.setWheel(header.wheel, header.countLayout === countLayoutFingerprint());
		}
		this.startUs = header.clock.startUs;
		this.#nowUs = this.startUs;
		this.endUs = Math.max(trailer?.endUs ?? 0, lastTimeUs(capture.items, this.startUs));
	}

	/** Capture time the model has reached (CLOCK_MONOTONIC µs of the recording host). */
	get nowUs(): number {
		return this.#nowUs;
	}

	get ended(): boolean {
		return this.#item >= this.#capture.items.length && this.#nowUs >= this.endUs;
	}

	/** Records that could not be decoded, so far. */
	get decodeErrors(): number {
		return this.#decodeErrors;
	}

	/** Feeds the model everything up to `us` (never backwards), as the live run fed it: batches and walks. */
	advanceTo(us: number): void {
		const items = this.#capture.items;
		const target = Math.min(Math.max(us, this.#nowUs), this.endUs);
		while (this.#item < items.length) {
			const item = items[this.#item]!;
			if (item.type === 'walk') {
				if (item.walk.takenAtUs > target) break;
				this.model.reconcile(walkFromRecord(item.walk));
				this.#options.onWalk?.(item.walk);
				this.#walks++;
				this.#item++;
				continue;
			}
			if (item.type === 'counts') {
				if (item.atUs > target) break;
				this.#feedCounts(item);
				this.#item++;
				continue;
			}
			if (!this.#feedEvents(item, target)) break;
			this.#item++;
			this.#record = 0;
		}
		this.#nowUs = target;
		this.model.tick(target);
	}

	/** The events of `item` up to `target`, as one batch; true when the frame is done. */
	#feedEvents(item: Extract<CaptureItem, { type: 'events' }>, target: number): boolean {
		const buffer = item.records.buffer as ArrayBuffer;
		if (!this.#decoder || this.#decoderBuffer !== buffer) [this.#decoder, this.#decoderBuffer] = [new Decoder(buffer, this.#tasks), buffer];
		const events: TwtEvent[] = [];
		let done = true;
		for (; this.#record < item.count; this.#record++) {
			const e = this.#decoder.decode(item.records.byteOffset + this.#record * EVENT_SIZE, EVENT_SIZE);
			if (e === undefined) continue; // a task record, now in the table
			if (isDecodeFailure(e)) {
				this.#decodeErrors++;
				continue;
			}
			if (e.tsUs > target) {
				done = false;
				break;
			}
			events.push(e);
		}
		if (events.length) {
			this.model.ingest(events);
			this.#options.onEvents?.(events);
		}
		return done;
	}

	/**
	 * A counts frame: each key's differences, as the events they count would have been fed
	 * (ChurnModel.ingestCounts). Its keys name tasks by id, whose records came before in the capture.
	 */
	#feedCounts(item: Extract<CaptureItem, { type: 'counts' }>): void {
		// Frames up to the capture's start are its history (a reading counts the second before it): the entries still held when it starts.
		const history = item.atUs <= this.startUs;
		for (let i = 0; i < item.count; i++) {
			const key = decodeCountKeyAt(item.keys, i * COUNT_KEY_SIZE);
			const task = this.#tasks.get(key.blamed);
			this.model.ingestCounts(key, task, item.values.subarray(i * COUNT_COLUMNS, (i + 1) * COUNT_COLUMNS), item.atUs, history);
		}
		if (!history) this.#options.onCounts?.(item.atUs);
	}

	/** The model at the point reached, as a live pipeline answers it. */
	reply(query: SnapshotQuery): SnapshotReply {
		const { header, trailer } = this.#capture;
		const cgroups = trailer?.cgroups ?? {};
		const cgroupPath = (id: number) => cgroups[String(id)];
		const snap = snapshot(this.model, {
			by: query.by, sort: query.sort, nowUs: this.#nowUs, rateWindowUs: Math.max(query.windowMs, 1000) * 1000, filter: query.filter, view: query.view, cgroupPath,
			maxRows: query.maxRows, maxDestinations: query.maxDestinations, maxVictims: query.maxVictims,
		});
		const drops = trailer ? readDrops(trailer.drops).drops : readDrops({}).drops;
		return {
			snapshot: snap,
			epochOffsetUs: header.clock.epochOffsetUs,
			home: 0,
			drops: { ...drops, nestedRecovered: 0, decodeErrors: drops.decodeErrors + this.#decodeErrors },
			walks: { inProgress: false, completed: this.#walks, lastMs: undefined },
			unwalked: new Map(),
			cgroupNames: new Map(Object.entries(cgroups).map(([id, p]): [number, string] => [Number(id), p])),
		};
	}
}

/** The time of the capture's last event or walk. */
function lastTimeUs(items: readonly CaptureItem[], startUs: number): number {
	let last = startUs;
	for (const item of items) {
		if (item.type === 'walk') last = Math.max(last, item.walk.takenAtUs);
		else if (item.type === 'counts') last = Math.max(last, item.atUs);
		else if (item.count > 0) {
			const view = new DataView(item.records.buffer, item.records.byteOffset, item.records.byteLength);
			last = Math.max(last, Number(view.getBigUint64((item.count - 1) * EVENT_SIZE + EVENT_FIELDS.ts_us.offset, os.endianness() === 'LE')));
		}
	}
	return last;
}
