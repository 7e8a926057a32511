/**
 * A capture file written as a live pipeline runs (`record`): the raw records and every walk, frame
 * by frame as they arrive, bounded by a size; ended with its trailer (why it stopped, the losses,
 * the cgroups' paths) when the pipeline stops. A --comm recording keeps only that command's records.
 */
import { captureDrops, captureHeader, settingsToJson, type CaptureHeader } from '../capture/format.js';
import { CaptureWriter } from '../capture/writer.js';
import type { TwtEvent } from '../event/decode.js';
import { EVENT_FIELDS, EVENT_SIZE, EventKind } from '../event/layout.generated.js';
import type { WalkRecord } from '../event/walk-record.js';
import type { SessionSummary } from '../facts/losses.js';
import { blame } from '../model/attribution.js';
import type { LiveFeedHandlers } from './live-feed.js';

export interface CaptureSinkOptions {
	file: string;
	maxBytes: number;
	overwrite?: boolean;
	/** CLOCK_MONOTONIC µs and the ISO time recording started, and the wall-clock offset. */
	clock: { startUs: number; epochOffsetUs: number };
	startedAt: string;
	walkIntervalMs: number;
	/** Only the records blamed on this command name (--comm is applied in user space, not the kernel). */
	comm?: string;
	/** Called once when the file cannot take more: `--max-size` reached, or a write failed. */
	onFull: (reason: string) => void;
}

const MAX_CGROUPS = 10_000;

type Pending = { raw: Buffer; count: number } | { walk: WalkRecord };

export class CaptureSink {
	readonly #options: CaptureSinkOptions;
	#writer: CaptureWriter | undefined;
	/** What arrived before the file was opened (open() follows the pipeline's start). */
	readonly #pending: Pending[] = [];
	readonly #cgroupPaths = new Map<number, string | undefined>();
	#cgroupPath: ((id: number) => string | undefined) | undefined;
	/** The first write that failed: the file keeps what was written before it. */
	writeError: Error | undefined;

	constructor(options: CaptureSinkOptions) {
		this.#options = options;
	}

	/**
	 * What the pipeline hands over: the raw records of each batch, and each walk. `cgroupPath` is
	 * asked for each cgroup id when it is first seen (the cgroup may be gone by the end).
	 */
	handlers(cgroupPath: (id: number) => string | undefined): LiveFeedHandlers {
		this.#cgroupPath = cgroupPath;
		return {
			onEvents: (events, raw) => {
				if (!raw) return;
				for (const e of events) {
					if (e.cgroupId && !this.#cgroupPaths.has(e.cgroupId) && this.#cgroupPaths.size < MAX_CGROUPS) this.#cgroupPaths.set(e.cgroupId, cgroupPath(e.cgroupId));
				}
				// --comm is applied by the model, not the kernel: the capture keeps only matching owners' records.
				const comm = this.#options.comm;
				const kept = comm === undefined ? { raw, count: raw.length / EVENT_SIZE } : onlyComm(events, raw, comm);
				if (this.#writer) this.#guard(() => this.#writer!.writeEvents(kept.raw, kept.count));
				else this.#pending.push(kept);
			},
			onWalk: (walk) => {
				if (this.#writer) this.#guard(() => this.#writer!.writeWalk(walk));
				else this.#pending.push({ walk });
			},
		};
	}

	/**
	 * Creates the file (CaptureError when it cannot be: it exists, no room), its header naming the
	 * recording's `filters`, and writes what came before.
	 */
	open(filters: CaptureHeader['filters']): void {
		const o = this.#options;
		const header = captureHeader({
			startedAt: o.startedAt, clock: o.clock, filters, walkIntervalMs: o.walkIntervalMs,
			namespaces: this.#pending.flatMap((p) => ('walk' in p ? [{ netns: p.walk.netns, settings: settingsToJson(p.walk.settings) }] : [])),
		});
		this.#writer = new CaptureWriter(o.file, header, { maxBytes: o.maxBytes, overwrite: o.overwrite });
		for (const p of this.#pending.splice(0)) this.#guard(() => ('walk' in p ? this.#writer!.writeWalk(p.walk) : this.#writer!.writeEvents(p.raw, p.count)));
	}

	/** Ends the file with its trailer; what was written so far, or undefined when it was never opened. */
	close(summary: SessionSummary, endUs: number, reason: string): { events: number; walks: number; bytes: number } | undefined {
		const w = this.#writer;
		if (!w) return undefined;
		try {
			w.close({ endUs, reason, drops: captureDrops(summary), cgroups: this.#resolvedCgroups() });
		} catch (error) {
			this.writeError ??= error as Error;
		}
		return { events: w.events, walks: w.walks, bytes: w.bytes };
	}

	#guard(write: () => boolean): void {
		if (this.writeError) return;
		try {
			if (!write()) this.#options.onFull('max-size');
		} catch (error) {
			this.writeError = error as Error;
			this.#options.onFull(`write error: ${this.writeError.message}`);
		}
	}

	/** The paths known, retrying the ids not found when first seen. */
	#resolvedCgroups(): Record<string, string> {
		const out: Record<string, string> = {};
		for (const [id, known] of this.#cgroupPaths) {
			const p = known ?? this.#cgroupPath?.(id);
			if (p !== undefined) out[id] = p;
		}
		return out;
	}
}

/**
 * The records blamed (as the model blames them) on a process with this comm, and every task record
 * (cheap, and a later event may need it). `raw` holds the events in order, task records among them.
 */
function onlyComm(events: readonly TwtEvent[], raw: Buffer, comm: string): { raw: Buffer; count: number } {
	const parts: Buffer[] = [];
	let next = 0;
	for (let at = 0; at < raw.length; at += EVENT_SIZE) {
		const record = raw.subarray(at, at + EVENT_SIZE);
		if (record[EVENT_FIELDS.kind.offset] === EventKind.TASK) parts.push(record);
		else if (blame(events[next++]!).comm === comm) parts.push(record);
	}
	return { raw: Buffer.concat(parts), count: parts.length };
}
